/**
 * `acp sim`, `acp sim sweep` and `acp sim sweep merge`: the deterministic simulator from the
 * command line. A sweep runs on worker threads; `--shard i/n` runs the i-th of n disjoint slices
 * of its seeds and writes what `merge` needs, so a Kubernetes Indexed Job or a Slurm array runs a
 * sweep of any size across machines with no job system of ours. The
 * simulator itself is pure; this adapter adds what only the driving side may: the wall clock
 * (`wallMs`), files (`--report`), worker threads (`sweep --workers`), progress and exit codes.
 *
 * Exit codes: 0 nothing violated; 4 a safety violation; 5 a liveness failure (no convergence);
 * 6 the simulator itself crashed; 2 bad usage.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads"
import { Console, Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { renderReport } from "../../../sim/report.ts"
import {
  decodeSchedule,
  defaultSimOptions,
  type FaultName,
  faultNames,
  replayCommand,
  type SimOptions,
  unsafeFaultNames,
} from "../../../sim/scenario.ts"
import { shrink } from "../../../sim/shrink.ts"
import { isSafetyViolation, percentiles, type SimResult, simulate } from "../../../sim/world.ts"
import { progressOn } from "../progress.ts"

export const exitCodes = { ok: 0, usage: 2, safety: 4, liveness: 5, crash: 6 } as const

export class SimUsageError extends Schema.TaggedError<SimUsageError>()("SimUsageError", {
  message: Schema.String,
}) {}

const parseDurationMs = (text: string): number | undefined => {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(text.trim())
  if (match === null) return undefined
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "ms") as "ms" | "s" | "m" | "h"]
  return Number(match[1]) * scale
}

const parseFaults = (text: string): ReadonlyArray<FaultName> | string => {
  if (text === "all") return faultNames
  if (text === "none") return []
  const known: ReadonlyArray<string> = [...faultNames, ...unsafeFaultNames]
  const names = text.split(",").map((name) => name.trim())
  const unknown = names.filter((name) => !known.includes(name))
  return unknown.length > 0
    ? `unknown fault(s) ${unknown.join(", ")}; known: all, none, ${known.join(", ")}`
    : (names as Array<FaultName>)
}

const shared = {
  nodes: Flag.Int("nodes").pipe(
    Flag.withDescription("Simulated nodes"),
    Flag.withDefault(defaultSimOptions.nodes),
  ),
  domains: Flag.Int("domains").pipe(
    Flag.withDescription("L2 domains, joined by one relay each (default: drawn from the seed, 1 to 3)"),
    Flag.optional,
  ),
  duration: Flag.String("duration").pipe(
    Flag.withDescription("Virtual time of the faulty phase, e.g. 500ms, 30s, 10m"),
    Flag.withDefault("60s"),
  ),
  faults: Flag.String("faults").pipe(
    Flag.withDescription(`none, all, or a list of: ${[...faultNames, ...unsafeFaultNames].join(", ")}`),
    Flag.withDefault("all"),
  ),
  writes: Flag.Int("writes").pipe(
    Flag.withDescription("Cluster-wide writes per virtual second"),
    Flag.withDefault(200),
  ),
  systems: Flag.Int("systems").pipe(
    Flag.withDescription(
      "Virtual machines the cluster runs (most HA), with the hypervisor in the loop; 0: none (default: drawn from the seed, 0 to 12)",
    ),
    Flag.optional,
  ),
  canary: Flag.Boolean("canary").pipe(
    Flag.withDescription("Enable the deliberately wrong checker (must fail)"),
    Flag.withDefault(false),
  ),
  json: Flag.Boolean("json").pipe(
    Flag.withDescription("Print one JSON object on stdout"),
    Flag.withDefault(false),
  ),
}

interface SharedInput {
  readonly nodes: number
  readonly domains: Option.Option<number>
  readonly duration: string
  readonly faults: string
  readonly writes: number
  readonly systems: Option.Option<number>
  readonly canary: boolean
}

const toOptions = (
  seed: number,
  input: SharedInput,
  schedule: Option.Option<string>,
): Effect.Effect<SimOptions, SimUsageError> =>
  Effect.gen(function* () {
    const durationMs = parseDurationMs(input.duration)
    if (durationMs === undefined || durationMs < 100) {
      return yield* new SimUsageError({
        message: `--duration ${input.duration}: expected e.g. 500ms, 30s, 10m (at least 100ms)`,
      })
    }
    const faults = parseFaults(input.faults)
    if (typeof faults === "string")
      return yield* new SimUsageError({ message: `--faults ${input.faults}: ${faults}` })
    if (input.nodes < 1 || input.nodes > 5000)
      return yield* new SimUsageError({ message: `--nodes ${input.nodes}: expected 1..5000` })
    const domains = Option.getOrUndefined(input.domains)
    if (domains !== undefined && (domains < 1 || domains > input.nodes)) {
      return yield* new SimUsageError({
        message: `--domains ${domains}: expected 1..${input.nodes} (one relay per domain)`,
      })
    }
    if (input.writes < 0)
      return yield* new SimUsageError({ message: `--writes ${input.writes}: expected 0 or more` })
    const systems = Option.getOrUndefined(input.systems)
    if (systems !== undefined && (systems < 0 || systems > 10_000))
      return yield* new SimUsageError({ message: `--systems ${systems}: expected 0..10000` })
    const drawn = [
      ...(domains === undefined ? (["domains"] as const) : []),
      ...(systems === undefined ? (["systems"] as const) : []),
    ]
    const options: SimOptions = {
      ...defaultSimOptions,
      seed,
      nodes: input.nodes,
      domains: domains ?? 1,
      durationMs,
      faults,
      writesPerSec: input.writes,
      systems: systems ?? 0,
      canary: input.canary,
      ...(drawn.length > 0 ? { drawn } : {}),
    }
    if (Option.isNone(schedule)) return options
    const decoded = yield* Effect.try({
      try: () => decodeSchedule(schedule.value),
      catch: (error) =>
        new SimUsageError({ message: `--schedule: not a schedule printed by acp sim (${String(error)})` }),
    })
    return { ...options, schedule: decoded }
  })

export const classify = (result: SimResult): keyof typeof exitCodes => {
  if (result.violations.some((violation) => violation.checker === "crash")) return "crash"
  if (result.violations.some(isSafetyViolation)) return "safety"
  if (result.violations.length > 0) return "liveness"
  return "ok"
}

export const summarise = (result: SimResult, wallMs: number) => ({
  seed: result.seed,
  nodes: result.nodes,
  domains: result.domains,
  virtualMs: result.virtualMs,
  wallMs,
  events: result.events,
  datagramsDelivered: result.datagramsDelivered,
  datagramsDropped: result.datagramsDropped,
  changesWritten: result.changesWritten,
  changesApplied: result.changesApplied,
  acknowledgedWrites: result.acknowledgedWrites,
  commitsRefused: result.commitsRefused,
  crashesInStep: result.crashesInStep,
  replays: result.replays,
  snapshotsInstalled: result.snapshotsInstalled,
  nacksSent: result.nacksSent,
  traceHash: result.traceHash,
  converged: result.converged,
  convergenceMs: result.convergenceMs,
  violations: result.violations,
  pending: result.pending,
  replay: result.replay,
  primaryChanges: result.primaryChanges,
  failoverMs: result.failoverMs,
  hypervisor: result.hypervisor,
  storage: result.storage,
  alarmsRaised: result.alarmsRaised,
  falseAlarms: result.falseAlarms,
  fences: result.fences,
  primaries: result.primaries,
  health: result.health,
  scenario: result.scenario,
})

const runCommand = Command.make(
  "sim",
  {
    ...shared,
    seed: Flag.Int("seed").pipe(
      Flag.withDescription("The seed: the same seed gives the same run, byte for byte"),
      Flag.withDefault(1),
    ),
    report: Flag.String("report").pipe(
      Flag.withDescription("Write an HTML timeline of the run to this file"),
      Flag.optional,
    ),
    shrink: Flag.Boolean("shrink").pipe(
      Flag.withDescription("If the run fails, shrink it to a minimal fault schedule"),
      Flag.withDefault(false),
    ),
    shrinkTrials: Flag.Int("shrink-trials").pipe(
      Flag.withDescription("With --shrink: how many candidate runs at most (each a full replay)"),
      Flag.withDefault(200),
    ),
    schedule: Flag.String("schedule").pipe(
      Flag.withDescription("Replay with this fault schedule (printed by --shrink)"),
      Flag.optional,
    ),
  },
  (input) =>
    Effect.gen(function* () {
      const options = yield* toOptions(input.seed, input, input.schedule)
      const started = performance.now()
      const result = simulate(options)
      const wallMs = Math.round(performance.now() - started)
      const outcome = classify(result)
      if (Option.isSome(input.report)) {
        writeFileSync(input.report.value, renderReport(result))
        if (!input.json) yield* Console.error(`report: ${input.report.value}`)
      }
      let shrunk: ReturnType<typeof shrink> | undefined
      if (input.shrink && outcome !== "ok") {
        const progress = progressOn(process.stderr, !input.json)
        const trials = Math.max(1, input.shrinkTrials)
        shrunk = shrink(options, result, trials, (step) =>
          progress.update(
            `shrinking: trial ${step.trial}${step.accepted ? `, kept: ${step.description}` : ""}`,
            step.trial / trials,
          ),
        )
        progress.done()
      }
      if (input.json) {
        const shrinkReport =
          shrunk === undefined
            ? {}
            : {
                shrunk: {
                  checker: shrunk.checker,
                  trials: shrunk.trials,
                  schedule: shrunk.minimal,
                  replay: shrunk.result.replay,
                },
              }
        yield* Console.log(JSON.stringify({ ...summarise(result, wallMs), ...shrinkReport }))
      } else {
        const ratio = wallMs > 0 ? Math.round(result.virtualMs / wallMs) : result.virtualMs
        yield* Console.log(
          `seed ${result.seed}: ${result.nodes} nodes, ${result.domains} domain(s), ${result.virtualMs} ms virtual in ${wallMs} ms (${ratio}x)`,
        )
        yield* Console.log(
          `  ${result.changesWritten} changes written, ${result.acknowledgedWrites} acknowledged, ${result.commitsRefused} commits refused by a full disk, ${result.datagramsDelivered} datagrams delivered, ${result.datagramsDropped} dropped, ${result.snapshotsInstalled} snapshots`,
        )
        yield* Console.log(
          `  ${result.converged ? `converged ${result.convergenceMs} ms after the heal` : "did NOT converge"}; traceHash ${result.traceHash}`,
        )
        const failover = result.failoverMs
        yield* Console.log(
          `  monitor: ${result.primaryChanges} primary change(s), failover ${failover.samples === 0 ? "not measured (the primary never failed)" : `p50 ${failover.p50} ms, p99 ${failover.p99} ms, max ${failover.max} ms over ${failover.samples}`}; ${result.alarmsRaised} alarm(s) raised, ${result.fences} fence(s)`,
        )
        const hypervisor = result.hypervisor
        if (hypervisor.systems > 0) {
          const moved = hypervisor.failoverMs
          yield* Console.log(
            `  hypervisor: ${hypervisor.systems} systems, ${hypervisor.driverCalls} driver calls, ${hypervisor.haActions} HA placement(s); HA failover after a node crash ${moved.samples === 0 ? "not measured (no HA system was on a crashed node)" : `p50 ${moved.p50} ms, p99 ${moved.p99} ms, max ${moved.max} ms over ${moved.samples}`}${hypervisor.restartedInPlace > 0 ? `; ${hypervisor.restartedInPlace} restarted in place` : ""}`,
          )
          yield* Console.log(
            `  storage: ${result.storage.calls} driver calls, ${result.storage.volumes} volume(s) on the hosts' disks at the end`,
          )
        }
        if (result.health !== null) {
          const reasons = result.health.cluster.reasons.map((reason) => `-${reason.points}: ${reason.reason}`)
          yield* Console.log(
            `  health ${result.health.cluster.score}/100${reasons.length > 0 ? ` (${reasons.join("; ")})` : ""}`,
          )
        }
        for (const violation of result.violations.slice(0, 10)) {
          yield* Console.log(`  VIOLATION ${violation.checker} at ${violation.atMs} ms: ${violation.message}`)
        }
        for (const line of result.pending.slice(0, 10)) yield* Console.log(`  pending: ${line}`)
        if (outcome !== "ok") yield* Console.log(`  replay: ${result.replay}`)
        if (shrunk !== undefined) {
          yield* Console.log(
            `  shrunk in ${shrunk.trials} trials to ${shrunk.minimal.events.length} fault event(s) (from ${shrunk.original.events.length}): ${JSON.stringify(shrunk.minimal)}`,
          )
          yield* Console.log(`  replay the minimal run: ${shrunk.result.replay}`)
        }
      }
      process.exitCode = exitCodes[outcome]
    }).pipe(
      Effect.catchTag("SimUsageError", (error) =>
        Effect.sync(() => {
          process.stderr.write(`acp sim: ${error.message}\n`)
          process.exitCode = exitCodes.usage
        }),
      ),
    ),
).pipe(Command.withDescription("Run one deterministic cluster simulation and check its invariants"))

// ---- sweep -------------------------------------------------------------------------------------

export interface SweepJob {
  readonly acpSweepWorker: true
  readonly seeds: ReadonlyArray<number>
  readonly options: Omit<SimOptions, "seed">
}

export interface SweepOutcome {
  readonly seed: number
  readonly outcome: keyof typeof exitCodes
  readonly traceHash: string
  readonly violations: SimResult["violations"]
  readonly replay: string
  readonly wallMs: number
  /** From each node crash to each of its HA systems running elsewhere (virtual ms). */
  readonly haFailoverSamplesMs: ReadonlyArray<number>
}

export const runSeed = (options: Omit<SimOptions, "seed">, seed: number): SweepOutcome => {
  const started = performance.now()
  const result = simulate({ ...options, seed })
  return {
    seed,
    outcome: classify(result),
    traceHash: result.traceHash,
    violations: result.violations.slice(0, 3),
    replay: result.replay,
    wallMs: Math.round(performance.now() - started),
    haFailoverSamplesMs: result.hypervisor.failoverSamplesMs,
  }
}

const parseSeeds = (text: string): ReadonlyArray<number> | undefined => {
  const match = /^(\d+)\.\.(\d+)$/.exec(text.trim())
  if (match === null) return undefined
  const from = Number(match[1])
  const to = Number(match[2])
  if (to < from || to - from > 1_000_000) return undefined
  return Array.from({ length: to - from + 1 }, (_, index) => from + index)
}

const sweepCommand = Command.make(
  "sweep",
  {
    ...shared,
    seeds: Flag.String("seeds").pipe(Flag.withDescription("A range of seeds, e.g. 1..500")),
    workers: Flag.Int("workers").pipe(
      Flag.withDescription("Worker threads (default: one per core)"),
      Flag.withDefault(availableParallelism()),
    ),
    shard: Flag.String("shard").pipe(
      Flag.withDescription(
        "i/n: run only the i-th (from 0) of n disjoint slices of the seeds, e.g. $JOB_COMPLETION_INDEX/100",
      ),
      Flag.optional,
    ),
    out: Flag.String("out").pipe(
      Flag.withDescription("Also write the shard's result, for `acp sim sweep merge`, to this file"),
      Flag.optional,
    ),
    failFast: Flag.Boolean("fail-fast").pipe(
      Flag.withDescription("Hand out no seed after the first failure (the seeds running finish)"),
      Flag.withDefault(false),
    ),
    seedLimit: Flag.String("seed-limit").pipe(
      Flag.withDescription("Wall time a seed may take, e.g. 60s; beyond it the seed is stopped and fails"),
      Flag.optional,
    ),
  },
  (input) =>
    Effect.gen(function* () {
      const range = parseSeeds(input.seeds)
      if (range === undefined)
        return yield* new SimUsageError({
          message: `--seeds ${input.seeds}: expected a range such as 1..500`,
        })
      const shard = Option.isSome(input.shard) ? parseShard(input.shard.value) : { index: 0, count: 1 }
      if (shard === undefined)
        return yield* new SimUsageError({
          message: `--shard ${Option.getOrElse(input.shard, () => "")}: expected i/n with 0 <= i < n, e.g. 3/100`,
        })
      const seeds = sliceOf(range, shard)
      const seedLimitMs = Option.isSome(input.seedLimit) ? parseDurationMs(input.seedLimit.value) : undefined
      if (Option.isSome(input.seedLimit) && (seedLimitMs === undefined || seedLimitMs <= 0))
        return yield* new SimUsageError({
          message: `--seed-limit ${input.seedLimit.value}: expected a duration such as 60s`,
        })
      const { seed: _seed, ...options } = yield* toOptions(0, input, Option.none())
      const started = performance.now()
      const outcomes = yield* Effect.promise(() =>
        runSweep(seeds, options, {
          workers: Math.max(1, input.workers),
          progress: !input.json,
          failFast: input.failFast,
          seedLimitMs,
        }),
      )
      const wallMs = Math.round(performance.now() - started)
      const result: ShardResult = {
        acpSweepShard: 1,
        seeds: input.seeds.trim(),
        shard,
        options,
        wallMs,
        outcomes: outcomes.map((outcome) => ({
          seed: outcome.seed,
          outcome: outcome.outcome,
          traceHash: outcome.traceHash,
          ...(outcome.outcome === "ok" ? {} : { violations: outcome.violations, replay: outcome.replay }),
          ...(outcome.haFailoverSamplesMs.length === 0
            ? {}
            : { haFailoverSamplesMs: outcome.haFailoverSamplesMs }),
        })),
      }
      if (Option.isSome(input.out)) writeFileSync(input.out.value, `${JSON.stringify(result)}\n`)
      if (Option.isSome(input.shard) && input.json) {
        yield* Console.log(JSON.stringify(result))
        process.exitCode = exitCodes[worstOf(outcomes)]
        return
      }
      const failing = outcomes.filter((outcome) => outcome.outcome !== "ok")
      const haFailoverMs = percentiles(outcomes.flatMap((outcome) => outcome.haFailoverSamplesMs))
      if (input.json) {
        yield* Console.log(
          JSON.stringify({
            seeds: seeds.length,
            ran: outcomes.length,
            failing: failing.length,
            wallMs,
            ...(haFailoverMs.samples > 0 ? { haFailoverMs } : {}),
            failures: failing,
          }),
        )
      } else {
        yield* Console.log(
          `${outcomes.length === seeds.length ? `${seeds.length} seeds` : `${outcomes.length} of ${seeds.length} seeds (stopped at the first failure)`} in ${wallMs} ms: ${failing.length} failing`,
        )
        if (haFailoverMs.samples > 0 || Option.getOrElse(input.systems, () => 0) > 0)
          yield* Console.log(
            `  HA failover after a node crash: ${haFailoverMs.samples === 0 ? "no sample" : `p50 ${haFailoverMs.p50} ms, p99 ${haFailoverMs.p99} ms, max ${haFailoverMs.max} ms over ${haFailoverMs.samples} systems`}`,
          )
        for (const failure of failing) {
          yield* Console.log(
            `  seed ${failure.seed} (${failure.outcome}): ${failure.violations[0]?.message ?? ""}`,
          )
          yield* Console.log(`    replay: ${failure.replay}`)
        }
      }
      process.exitCode = exitCodes[worstOf(outcomes)]
    }).pipe(
      Effect.catchTag("SimUsageError", (error) =>
        Effect.sync(() => {
          process.stderr.write(`acp sim sweep: ${error.message}\n`)
          process.exitCode = exitCodes.usage
        }),
      ),
    ),
).pipe(
  Command.withDescription("Run a range of seeds on worker threads, with progress, and list the failing ones"),
)

/** The worst outcome among a sweep's seeds: a crash of the simulator, then safety, then liveness. */
const worstOf = (
  outcomes: ReadonlyArray<{ readonly outcome: keyof typeof exitCodes }>,
): keyof typeof exitCodes =>
  outcomes.some((outcome) => outcome.outcome === "crash")
    ? "crash"
    : outcomes.some((outcome) => outcome.outcome === "safety")
      ? "safety"
      : outcomes.some((outcome) => outcome.outcome !== "ok")
        ? "liveness"
        : "ok"

const parseShard = (text: string): { readonly index: number; readonly count: number } | undefined => {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim())
  if (match === null) return undefined
  const index = Number(match[1])
  const count = Number(match[2])
  return count >= 1 && index < count ? { index, count } : undefined
}

/** The seeds of one shard: every n-th of the range from its index (slow seeds spread over the shards). */
const sliceOf = (seeds: ReadonlyArray<number>, shard: { readonly index: number; readonly count: number }) =>
  seeds.filter((_, position) => position % shard.count === shard.index)

/** What one shard of a sweep writes: every seed it ran, with its outcome and trace; details for failures. */
export interface ShardResult {
  readonly acpSweepShard: 1
  readonly seeds: string
  readonly shard: { readonly index: number; readonly count: number }
  readonly options: Omit<SimOptions, "seed">
  readonly wallMs: number
  readonly outcomes: ReadonlyArray<{
    readonly seed: number
    readonly outcome: keyof typeof exitCodes
    readonly traceHash: string
    readonly violations?: SimResult["violations"]
    readonly replay?: string
    readonly haFailoverSamplesMs?: ReadonlyArray<number>
  }>
}

/**
 * Combines the shards of one sweep: they must be of the same seeds and options, disjoint, and
 * together cover every seed; otherwise it names what does not fit.
 */
export const mergeShards = (
  shards: ReadonlyArray<{ readonly file: string; readonly result: ShardResult }>,
):
  | {
      readonly _tag: "Merged"
      readonly seeds: number
      readonly outcomes: ShardResult["outcomes"]
      readonly wallMs: number
    }
  | { readonly _tag: "Mismatch"; readonly message: string } => {
  const first = shards[0]
  if (first === undefined) return { _tag: "Mismatch", message: "no shard given" }
  const range = parseSeeds(first.result.seeds) ?? []
  const options = JSON.stringify(first.result.options)
  for (const { file, result } of shards) {
    if (result.seeds !== first.result.seeds)
      return {
        _tag: "Mismatch",
        message: `${file} swept ${result.seeds}, ${first.file} ${first.result.seeds}`,
      }
    if (result.shard.count !== first.result.shard.count)
      return {
        _tag: "Mismatch",
        message: `${file} is a shard of ${result.shard.count}, ${first.file} of ${first.result.shard.count}`,
      }
    if (JSON.stringify(result.options) !== options)
      return { _tag: "Mismatch", message: `${file} ran other options than ${first.file}` }
  }
  const bySeed = new Map<
    number,
    { readonly file: string; readonly outcome: ShardResult["outcomes"][number] }
  >()
  for (const { file, result } of shards)
    for (const outcome of result.outcomes) {
      const seen = bySeed.get(outcome.seed)
      if (seen !== undefined)
        return { _tag: "Mismatch", message: `seed ${outcome.seed} is in both ${seen.file} and ${file}` }
      bySeed.set(outcome.seed, { file, outcome })
    }
  const missing = range.filter((seed) => !bySeed.has(seed))
  if (missing.length > 0) {
    const shardsMissing = [...new Set(missing.map((seed) => range.indexOf(seed) % first.result.shard.count))]
    return {
      _tag: "Mismatch",
      message: `${missing.length} of ${range.length} seeds missing (from shard(s) ${shardsMissing.slice(0, 10).join(", ")}${shardsMissing.length > 10 ? ", …" : ""})`,
    }
  }
  return {
    _tag: "Merged",
    seeds: range.length,
    outcomes: range.map((seed) => bySeed.get(seed)!.outcome),
    wallMs: shards.reduce((sum, shard) => sum + shard.result.wallMs, 0),
  }
}

const mergeCommand = Command.make(
  "merge",
  {
    files: Argument.String("file").pipe(
      Argument.withDescription(
        "The shards' results (written by `sweep --shard i/n --out` or printed by `--json`)",
      ),
      Argument.variadic({ min: 1 }),
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("Print the merged result as JSON"),
      Flag.withDefault(false),
    ),
  },
  ({ files, json }) =>
    Effect.gen(function* () {
      const shards: Array<{ file: string; result: ShardResult }> = []
      for (const file of files) {
        const text = yield* Effect.try({
          try: () => readFileSync(file, "utf8"),
          catch: (error) =>
            new SimUsageError({ message: `cannot read ${file}: ${(error as Error).message}` }),
        })
        const result = yield* Effect.try({
          try: () => JSON.parse(text) as ShardResult,
          catch: () => new SimUsageError({ message: `${file} is not JSON` }),
        })
        if (result.acpSweepShard !== 1 || !Array.isArray(result.outcomes))
          return yield* new SimUsageError({ message: `${file} is not a shard of \`acp sim sweep --shard\`` })
        shards.push({ file, result })
      }
      const merged = mergeShards(shards)
      if (merged._tag === "Mismatch") return yield* new SimUsageError({ message: merged.message })
      const failing = merged.outcomes.filter((outcome) => outcome.outcome !== "ok")
      const haFailoverMs = percentiles(
        merged.outcomes.flatMap((outcome) => outcome.haFailoverSamplesMs ?? []),
      )
      if (json)
        yield* Console.log(
          JSON.stringify({
            seeds: merged.seeds,
            shards: shards.length,
            failing: failing.length,
            wallMs: merged.wallMs,
            ...(haFailoverMs.samples > 0 ? { haFailoverMs } : {}),
            failures: failing,
          }),
        )
      else {
        yield* Console.log(
          `${merged.seeds} seeds from ${shards.length} shards (${(merged.wallMs / 1000).toFixed(0)} s of shard time): ${failing.length} failing`,
        )
        if (haFailoverMs.samples > 0)
          yield* Console.log(
            `  HA failover after a node crash: p50 ${haFailoverMs.p50} ms, p99 ${haFailoverMs.p99} ms, max ${haFailoverMs.max} ms over ${haFailoverMs.samples} systems`,
          )
        for (const failure of failing) {
          yield* Console.log(
            `  seed ${failure.seed} (${failure.outcome}): ${failure.violations?.[0]?.message ?? ""}`,
          )
          yield* Console.log(`    replay: ${failure.replay ?? ""}`)
        }
      }
      process.exitCode = exitCodes[worstOf(merged.outcomes)]
    }).pipe(
      Effect.catchTag("SimUsageError", (error) =>
        Effect.sync(() => {
          process.stderr.write(`acp sim sweep merge: ${error.message}\n`)
          process.exitCode = exitCodes.usage
        }),
      ),
    ),
).pipe(
  Command.withDescription("Combine the shards of one sweep (`sweep --shard i/n`) and list the failing seeds"),
)

/** How a sweep runs its seeds: worker threads, progress, stop at the first failure, a wall limit per seed. */
interface SweepRun {
  readonly workers: number
  readonly progress: boolean
  readonly failFast: boolean
  /** Wall ms a seed may take before its worker is stopped and the seed counted as failing. */
  readonly seedLimitMs: number | undefined
}

/** A seed stopped at its wall limit: a liveness failure, with the command that replays it. */
const timedOut = (options: Omit<SimOptions, "seed">, seed: number, limitMs: number): SweepOutcome => ({
  seed,
  outcome: "liveness",
  traceHash: "",
  violations: [{ checker: "time-limit", message: `took more than ${limitMs} ms of wall time`, atMs: 0 }],
  replay: replayCommand({ ...options, seed }),
  wallMs: limitMs,
  haFailoverSamplesMs: [],
})

/**
 * Hands seeds out to workers one at a time, so a slow seed does not hold up a whole share; prints
 * each failure (with its replay) as it happens; with `failFast` hands out no seed after the first.
 */
const runSweep = (
  seeds: ReadonlyArray<number>,
  options: Omit<SimOptions, "seed">,
  run: SweepRun,
): Promise<Array<SweepOutcome>> =>
  new Promise((resolve, reject) => {
    const outcomes: Array<SweepOutcome> = []
    let next = 0
    let running = 0
    let stopped = false
    const bar = progressOn(process.stderr, run.progress)
    const draw = () => {
      const width = 30
      const done = Math.round((outcomes.length / seeds.length) * width)
      const failing = outcomes.filter((outcome) => outcome.outcome !== "ok").length
      bar.update(
        `[${"#".repeat(done)}${".".repeat(width - done)}] ${outcomes.length}/${seeds.length} seeds, ${failing} failing`,
        outcomes.length / seeds.length,
      )
    }
    const record = (outcome: SweepOutcome) => {
      outcomes.push(outcome)
      if (outcome.outcome !== "ok") {
        bar.note(`seed ${outcome.seed} (${outcome.outcome}): ${outcome.violations[0]?.message ?? ""}`)
        bar.note(`  replay: ${outcome.replay}`)
        if (run.failFast) stopped = true
      }
      draw()
    }
    const spawn = () => {
      const worker = new Worker(new URL(import.meta.url), { workerData: { acpSweepWorker: true } })
      running++
      let limit: ReturnType<typeof setTimeout> | undefined
      let current: number | undefined
      const feed = () => {
        if (stopped || next >= seeds.length) {
          void worker.terminate()
          return
        }
        current = seeds[next++]!
        const job: SweepJob = { acpSweepWorker: true, seeds: [current], options }
        worker.postMessage(job)
        if (run.seedLimitMs !== undefined) {
          const seed = current
          const limitMs = run.seedLimitMs
          limit = setTimeout(() => {
            // The seed runs on: stop its worker, count it, and go on with a fresh one.
            current = undefined
            record(timedOut(options, seed, limitMs))
            void worker.terminate()
            if (!stopped && next < seeds.length) spawn()
          }, limitMs)
        }
      }
      worker.on("message", (outcome: SweepOutcome) => {
        if (limit !== undefined) clearTimeout(limit)
        if (current !== outcome.seed) return
        current = undefined
        record(outcome)
        feed()
      })
      worker.on("error", reject)
      worker.on("exit", () => {
        if (limit !== undefined) clearTimeout(limit)
        running--
        if (running === 0) {
          bar.done()
          resolve(outcomes.sort((left, right) => left.seed - right.seed))
        }
      })
      feed()
    }
    for (let index = 0; index < Math.min(run.workers, seeds.length); index++) spawn()
    if (seeds.length === 0) resolve([])
  })

export const simCommand = runCommand.pipe(
  Command.withSubcommands([sweepCommand.pipe(Command.withSubcommands([mergeCommand]))]),
)

// A sweep worker re-enters this module (from source, or from the bundle, which is one file) and
// serves jobs; the main thread never gets here with workerData set.
if (!isMainThread && (workerData as { acpSweepWorker?: boolean } | null)?.acpSweepWorker === true) {
  parentPort?.on("message", (job: SweepJob) => {
    for (const seed of job.seeds) parentPort?.postMessage(runSeed(job.options, seed))
  })
}
