/**
 * `acp vortex`: the fault harness on real node processes (adapters/vortex/harness.ts). Prints
 * the seed and every option (so the run can be replayed), the faults as they start, and at the
 * end the figures and every violation; exits 1 on a violation, keeping the nodes' logs and the
 * history.
 */
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { percentiles } from "../../../core/percentile.ts"
import { checkHistory, type Figures, type History, type Violation } from "../../vortex/checks.ts"
import { defaultBounds, runVortex } from "../../vortex/harness.ts"
import { type FaultKind, faultKinds } from "../../vortex/schedule.ts"
import { CliError } from "../client.ts"
import { jsonFlag } from "../target.ts"

const seconds = (ms: number | null) => (ms === null ? "-" : `${(ms / 1000).toFixed(1)} s`)

/** The figures and the violations of a run, as lines. */
const report = (
  result: { readonly figures: Figures; readonly violations: ReadonlyArray<Violation> },
  say: (line: string) => void,
) => {
  const figures = result.figures
  const failovers = percentiles(figures.failovers.map((failover) => failover.ms))
  const elections = percentiles(figures.elections.map((election) => election.ms))
  say(
    `writes: ${figures.writes.ok} acknowledged, ${figures.writes.refused} refused, ${figures.writes.unknown} unknown`,
  )
  say(
    `faults: ${
      Object.entries(figures.faults)
        .map(([kind, count]) => `${kind} ${count}`)
        .join(", ") || "none"
    }`,
  )
  say(
    `HA failovers: ${failovers.samples} (p50 ${seconds(failovers.p50)}, max ${seconds(failovers.max)}); new primaries: ${elections.samples} (p50 ${seconds(elections.p50)}, max ${seconds(elections.max)}); converged ${seconds(figures.convergenceMs)} after the heal`,
  )
  say(
    `decisions: ${figures.decisions.answered} answered, ${figures.decisions.unknown} without a known outcome; ${figures.decisions.verdict === "Linearizable" ? "linearizable" : figures.decisions.verdict === "Inconclusive" ? "linearizability inconclusive (the search bound was spent)" : "not linearizable"}`,
  )
  say(`violations: ${result.violations.length === 0 ? "none" : result.violations.length}`)
  for (const violation of result.violations) say(`  ${violation.check}: ${violation.message}`)
}

/** `--check DIR`: the checkers again on a kept run's history (after a checker changed, say). */
const recheck = (dir: string, json: boolean) =>
  Effect.gen(function* () {
    const path = resolve(dir, "history.json")
    const history = yield* Effect.try({
      try: () => JSON.parse(readFileSync(path, "utf8")) as History,
      catch: (error) =>
        new CliError({ message: `--check: cannot read ${path}: ${(error as Error).message}` }),
    })
    // A run recorded before the harness had a decision client has no decisions: none to judge.
    const result = checkHistory({ ...history, decisions: history.decisions ?? [] }, defaultBounds)
    if (json) yield* Console.log(JSON.stringify({ seed: history.seed, ...result }))
    else report(result, (line) => console.log(line))
    if (result.violations.length > 0)
      return yield* new CliError({
        message: `seed ${history.seed}: ${result.violations.length} violation(s)`,
      })
  })

export const vortexCommand = Command.make(
  "vortex",
  {
    seed: Flag.Int("seed").pipe(
      Flag.withDescription("The seed of the fault schedule and the workload (default: drawn, and printed)"),
      Flag.optional,
    ),
    nodes: Flag.Int("nodes").pipe(
      Flag.withDescription("Real node processes (default 3)"),
      Flag.withDefault(3),
    ),
    duration: Flag.Int("duration").pipe(
      Flag.withDescription("Seconds of faults and workload (default 60); convergence is waited for after"),
      Flag.withDefault(60),
    ),
    basePort: Flag.Int("base-port").pipe(
      Flag.withDescription("First of the ports the run uses (nodes, APIs, agents, link proxies)"),
      Flag.withDefault(23_000),
    ),
    dir: Flag.String("dir").pipe(
      Flag.withDescription("Where the run keeps data, logs and the history (default ./vortex-<seed>)"),
      Flag.optional,
    ),
    faults: Flag.String("faults").pipe(
      Flag.withDescription(
        `Fault kinds, comma-separated (default all: ${faultKinds.join(",")}); "none" for none`,
      ),
      Flag.optional,
    ),
    check: Flag.String("check").pipe(
      Flag.withDescription("Run nothing: judge a kept run's history again (its directory)"),
      Flag.optional,
    ),
    keep: Flag.Boolean("keep").pipe(
      Flag.withDescription("Keep the run's directory even when it passes"),
      Flag.withDefault(false),
    ),
    json: jsonFlag,
  },
  (args) =>
    Effect.gen(function* () {
      if (Option.isSome(args.check)) return yield* recheck(args.check.value, args.json)
      const seed = Option.getOrElse(args.seed, () => randomBytes(4).readUInt32BE(0) % 1_000_000_000)
      const asked = Option.getOrElse(args.faults, () => faultKinds.join(","))
      const kinds = asked === "none" ? [] : asked.split(",").map((kind) => kind.trim())
      const unknown = kinds.filter((kind) => !(faultKinds as ReadonlyArray<string>).includes(kind))
      if (unknown.length > 0)
        return yield* new CliError({
          message: `--faults: unknown kind(s) ${unknown.join(", ")}; expected some of ${faultKinds.join(", ")}`,
        })
      if (args.nodes < 3 || args.nodes > 7)
        return yield* new CliError({ message: `--nodes ${args.nodes}: expected 3..7` })
      if (args.duration < 10)
        return yield* new CliError({ message: `--duration ${args.duration}: at least 10 s` })
      const dir = resolve(Option.getOrElse(args.dir, () => `vortex-${seed}`))
      const say = args.json
        ? (line: string) => process.stderr.write(`${line}\n`)
        : (line: string) => console.log(line)
      say(
        `acp vortex --seed ${seed} --nodes ${args.nodes} --duration ${args.duration} --base-port ${args.basePort} --faults ${kinds.length === 0 ? "none" : kinds.join(",")} --dir ${dir}`,
      )
      const result = yield* Effect.tryPromise({
        try: () =>
          runVortex({
            seed,
            nodes: args.nodes,
            durationMs: args.duration * 1000,
            basePort: args.basePort,
            dir,
            bundle: process.argv[1]!,
            kinds: kinds as ReadonlyArray<FaultKind>,
            keep: args.keep,
            bounds: defaultBounds,
            say,
          }),
        catch: (error) => new CliError({ message: `vortex: ${(error as Error).message}` }),
      })
      if (args.json) yield* Console.log(JSON.stringify({ seed, ...result }))
      else {
        if (result.skipped.length > 0) say(`not injected on this machine: ${result.skipped.join("; ")}`)
        report(result, say)
        if (result.kept) say(`logs and history in ${result.dir}`)
        say(
          `replay: acp vortex --seed ${seed} --nodes ${args.nodes} --duration ${args.duration} --faults ${kinds.join(",") || "none"}`,
        )
      }
      if (result.violations.length > 0)
        return yield* new CliError({ message: `seed ${seed}: ${result.violations.length} violation(s)` })
    }),
).pipe(
  Command.withDescription(
    "Run real node processes under a seeded schedule of faults (network, kill, pause, full disk, clock, replay) and check what clients saw",
  ),
)
