/**
 * What one simulation run is: the options a person gives, and everything the seed draws from
 * them ("swarm" testing: which faults are on and how hard, which workload). The fault schedule
 * is plain data, so a run can be replayed with a schedule given explicitly, and shrunk.
 */
import { Result } from "effect"
import { Base64Url } from "effect/encoding"
import { defaultCdbConfig } from "../core/cdb/node.ts"
import { defaultElectionTimings } from "../core/monitor/election.ts"
import { Prng } from "./prng.ts"
import { noVmmFaults, type SimVmmFaults } from "./vmm.ts"

export const faultNames = [
  "loss",
  "duplication",
  "reordering",
  "partition",
  "asymmetric",
  "flapping",
  "crash",
  "drift",
  "guest",
  "disk-full",
  "replay",
  "service-failure",
  "stay-down",
  "clock-step",
] as const
/** Faults the design does not promise to survive: never in "all", only asked for by name, to show the checkers catch them. */
/** "no-fence": hosts keep running HA systems without a primary's contact, like a host without a watchdog. */
/** "ignore-refused-commit": a driver that carries out a step whose commit its full disk refused (acknowledges, sends). */
/** "no-replay-window": receivers take every authenticated datagram, seen before or not (the window off). */
/** "no-service-alarm": nodes whose failing services count neither in health nor in alarms. */
/**
 * "drift-beyond-bound": for a window, the primary's clock runs 30% slow and every other 30% fast
 * (600 times the bound the leases are computed for), and the primary is cut off from them.
 */
export const unsafeFaultNames = [
  "fsync-lie",
  "no-fence",
  "ignore-refused-commit",
  "no-replay-window",
  "no-service-alarm",
  "drift-beyond-bound",
] as const
export type FaultName = (typeof faultNames)[number] | (typeof unsafeFaultNames)[number]

export interface SimOptions {
  readonly seed: number
  readonly nodes: number
  readonly domains: number
  /** Virtual time of the safety phase (faults on, writes on). */
  readonly durationMs: number
  readonly faults: ReadonlyArray<FaultName>
  /** Cluster-wide writes per virtual second. */
  readonly writesPerSec: number
  /** After the heal, how long the cluster may take to converge. */
  readonly livenessBoundMs: number
  /** Turn on the deliberately wrong checker, which must fail. */
  readonly canary: boolean
  /** Replaces the drawn schedule (replay of a shrunk run). */
  readonly schedule?: Schedule
  /** Overrides the CDB's timings (a large cluster digests less often). */
  readonly timings?: Timings
  /** Overrides the monitor's election timings (to choose the defaults from simulation). */
  readonly electionTimings?: ElectionTimings
  /** Virtual machines the cluster runs (most of them HA); 0 leaves the hypervisor out. */
  readonly systems?: number
  /** Events a run may take per node and virtual second (default `eventsPerNodeSecond` in world.ts). */
  readonly eventBudget?: number
  /**
   * What the seed draws instead of the options (`drawnTopology`): the number of L2 domains and
   * of systems, so a plain sweep covers relays and the hypervisor too. Resolved before a run, so
   * its replay command names what was drawn.
   */
  readonly drawn?: ReadonlyArray<"domains" | "systems">
  /**
   * Stop the run at the first violation of this checker (the shrinker's candidates: what is
   * asked is only whether they still fail the same way, not what comes after).
   */
  readonly stopAt?: string
}

export interface ElectionTimings {
  readonly heartbeatMs: number
  readonly leaseMs: number
  readonly electionJitterMs: number
  readonly maxDriftPpm: number
  readonly quorumWindowMs: number
}

export interface Timings {
  readonly heartbeatMs: number
  readonly suspectAfterMs: number
  readonly deadAfterMs: number
}

export const defaultSimOptions = {
  nodes: 5,
  domains: 1,
  durationMs: 60_000,
  faults: faultNames,
  writesPerSec: 200,
  livenessBoundMs: 60_000,
  canary: false,
  systems: 0,
} as const

export interface Rates {
  readonly lossPermille: number
  readonly duplicatePermille: number
  /** Extra random delay per datagram, which reorders them. */
  readonly jitterUs: number
}

export type FaultEvent =
  | {
      readonly kind: "partition"
      readonly atMs: number
      readonly durationMs: number
      readonly side: ReadonlyArray<number>
      /**
       * A node that still reaches both sides (Jepsen's "bridge"): connectivity that is not
       * transitive, as when one link between two switches fails and a dual-homed host sits on both.
       */
      readonly bridge?: number
    }
  | { readonly kind: "asymmetric"; readonly atMs: number; readonly durationMs: number; readonly node: number }
  | {
      readonly kind: "flapping"
      readonly atMs: number
      readonly durationMs: number
      readonly node: number
      readonly periodMs: number
    }
  | { readonly kind: "crash"; readonly atMs: number; readonly durationMs: number; readonly node: number }
  /**
   * The node's host dies for good: it never comes back, not even at the heal. The others must
   * converge on what the survivors hold of its changes, and move its HA systems.
   */
  | { readonly kind: "stay-down"; readonly atMs: number; readonly durationMs: number; readonly node: number }
  /** An adversary plays back datagrams it captured earlier, to any node, as if from anywhere. */
  | { readonly kind: "replay"; readonly atMs: number; readonly durationMs: number }
  /**
   * The node's host restarts and its hypervisor service cannot start for the window (libvirt
   * missing or unreachable): its supervisor backs off, its health and the primary's alarms say so.
   * Drawn only for runs with systems.
   */
  | {
      readonly kind: "service-failure"
      readonly atMs: number
      readonly durationMs: number
      readonly node: number
    }
  /**
   * Unsafe: the primary of the moment runs slow and the others fast, far beyond the drift bound,
   * and the primary is cut off from them for the window (fault "drift-beyond-bound").
   */
  | { readonly kind: "drift-beyond-bound"; readonly atMs: number; readonly durationMs: number }
  /**
   * The node's wall clock is stepped by `stepMs` (forwards or backwards, 1–30 s) for the window,
   * then stepped back (as NTP or an operator would): its hybrid clocks and its seals read the
   * stepped clock; the monotonic clock its leases and timeouts run on does not move.
   */
  | {
      readonly kind: "clock-step"
      readonly atMs: number
      readonly durationMs: number
      readonly node: number
      readonly stepMs: number
    }
  /** The node's store refuses every commit (ENOSPC, EIO) for the window: its driver must refuse too. */
  | { readonly kind: "disk-full"; readonly atMs: number; readonly durationMs: number; readonly node: number }
  | {
      readonly kind: "fsync-lie"
      readonly atMs: number
      readonly durationMs: number
      readonly node: number
      readonly lose: number
    }

export interface Schedule {
  readonly rates: Rates
  /** Clock drift of each node in parts per million. */
  readonly driftPpm: ReadonlyArray<number>
  readonly events: ReadonlyArray<FaultEvent>
}

export interface Workload {
  /** Share of writes that go to a small set of keys every node writes. */
  readonly hotPermille: number
  readonly deletePermille: number
  readonly metaPermille: number
  /** Every so often a node writes a burst of this many changes at once. */
  readonly burstSize: number
  readonly statsStorm: boolean
  readonly keySpace: number
  readonly valueBytes: number
}

export interface Scenario {
  readonly options: SimOptions
  readonly schedule: Schedule
  readonly workload: Workload
  /** The guests' faults (fault "guest"): every simulated host's VMM draws from these rates. */
  readonly guests: SimVmmFaults
  /**
   * The CDB's flow-control window (`maxUnconfirmedChanges`) for this run: the default for half
   * the seeds, a small one for the rest, so a writer meets the window (and the flow checker can
   * see whether it holds) within a run's minute, not only in the sync benchmark.
   */
  readonly flowWindow: number
  /**
   * How long the simulated driver lets datagrams queue before it takes them all in one step
   * (`handleAll`, one commit), as the real one drains its socket: 0 (one step per datagram) for
   * half the seeds.
   */
  readonly driverBatchUs: number
  /**
   * How many of its own changes each node keeps to repair others from (`retainChanges`): the
   * default for half the seeds, a short log for the rest, so that a node behind by more is
   * repaired by snapshot (on a lossy link too) within a run's minute.
   */
  readonly retainChanges: number
}

const has = (options: SimOptions, fault: FaultName) => options.faults.includes(fault)

/**
 * The options with what they leave to the seed drawn (`drawn`): one L2 domain for half the
 * seeds, two or three for the rest (one relay each); no systems for a quarter, else 4 to 12.
 * From a generator of its own, so nothing else a seed draws changes with it.
 */
export const drawnTopology = (options: SimOptions): SimOptions => {
  if (options.drawn === undefined) return options
  const { drawn, ...rest } = options
  const draw = Prng.labelled(options.seed, "topology")
  const domains = draw.pick([1, 1, 2, 3])
  const systems = draw.pick([0, 4, 8, 12])
  return {
    ...rest,
    ...(drawn.includes("domains") ? { domains: Math.min(domains, options.nodes) } : {}),
    ...(drawn.includes("systems") ? { systems } : {}),
  }
}

/** Draws the fault schedule and the workload from the seed. */
export const drawScenario = (options: SimOptions): Scenario => {
  const root = new Prng(options.seed)
  const faults = root.fork("faults")
  const work = root.fork("workload")
  const rates: Rates = {
    lossPermille: has(options, "loss") ? faults.pick([0, 5, 20, 50, 150, 300]) : 0,
    duplicatePermille: has(options, "duplication") ? faults.pick([0, 10, 50, 100]) : 0,
    jitterUs: has(options, "reordering") ? faults.pick([0, 500, 2_000, 10_000, 40_000]) : 0,
  }
  // Drift comes from a generator of its own, up to the bound the leases are computed for (and at
  // exactly the bound for a quarter of the nodes): drawn within ±200 ppm as it once was, a lease
  // computed without its margin passed hundreds of seeds. The values once drawn here are still
  // drawn, so every other fault of a seed stays what it was.
  const bound = (options.electionTimings ?? defaultElectionTimings).maxDriftPpm
  // Not a fork of the root: that would take a draw from it and move every later fork.
  const drift = Prng.labelled(options.seed, "drift")
  const driftPpm = Array.from({ length: options.nodes }, () => {
    if (!has(options, "drift")) return 0
    faults.between(-200, 200)
    return drift.chance(250) ? drift.pick([-bound, bound]) : drift.between(-bound, bound)
  })
  const events: Array<FaultEvent> = []
  const duration = options.durationMs
  const window = () => {
    const atMs = faults.between(0, Math.max(0, duration - 1000))
    return {
      atMs,
      durationMs: faults.between(200, Math.max(200, Math.floor(Math.min(duration - atMs, duration / 3)))),
    }
  }
  const count = (fault: FaultName, most: number) => (has(options, fault) ? faults.between(0, most) : 0)
  // Half the partitions have a bridge (from a generator of its own: the rest stays as drawn).
  const bridges = Prng.labelled(options.seed, "bridge")
  for (let index = count("partition", 3); index > 0; index--) {
    const side = Array.from({ length: options.nodes }, (_, node) => node).filter(() => faults.chance(500))
    if (side.length > 0 && side.length < options.nodes) {
      const bridge = options.nodes >= 3 && bridges.chance(500) ? bridges.below(options.nodes) : undefined
      events.push({ kind: "partition", ...window(), side, ...(bridge === undefined ? {} : { bridge }) })
    }
  }
  for (let index = count("asymmetric", 2); index > 0; index--) {
    events.push({ kind: "asymmetric", ...window(), node: faults.below(options.nodes) })
  }
  for (let index = count("flapping", 2); index > 0; index--) {
    events.push({
      kind: "flapping",
      ...window(),
      node: faults.below(options.nodes),
      periodMs: faults.pick([100, 400, 1500]),
    })
  }
  for (let index = count("crash", 3); index > 0; index--) {
    events.push({ kind: "crash", ...window(), node: faults.below(options.nodes) })
  }
  // A process killed and restarted by its supervisor at once (systemd's Restart=always): down
  // for less than a lease, it must keep the promises it made before (a voter that voted again at
  // once could elect a second primary while the first one's lease ran). A generator of its own.
  // The adversary restarts a partition's bridge while the side without the primary campaigns:
  // the bridge's vote is what that side lacks.
  const quick = Prng.labelled(options.seed, "quick-restart")
  if (has(options, "crash")) {
    for (let index = quick.between(0, 2); index > 0; index--)
      events.push({
        kind: "crash",
        atMs: quick.between(0, Math.max(0, duration - 1000)),
        durationMs: quick.between(20, 1_000),
        node: quick.below(options.nodes),
      })
    // A crash loop: the bridge restarted one to three times while the partition lasts.
    for (const partition of events.filter((event) => event.kind === "partition"))
      if (partition.bridge !== undefined && partition.durationMs > 2_000)
        for (let restart = quick.between(1, 3); restart > 0; restart--)
          events.push({
            kind: "crash",
            atMs: partition.atMs + quick.between(1_500, Math.min(partition.durationMs, 8_000)),
            durationMs: quick.between(20, 500),
            node: partition.bridge,
          })
  }
  for (let index = count("fsync-lie", 1) + (has(options, "fsync-lie") ? 1 : 0); index > 0; index--) {
    events.push({
      kind: "fsync-lie",
      ...window(),
      node: faults.below(options.nodes),
      lose: faults.between(1, 20),
    })
  }
  // Each drawn from a generator of its own, so the other faults of a seed stay what they were.
  // An unsafe fault that needs the safe one's windows gets at least one.
  const windows = (
    label: string,
    fault: FaultName,
    unsafe: FaultName,
    minMs: number,
    share: number,
    perNode: boolean,
  ) => {
    const draw = root.fork(label)
    const forced = has(options, unsafe)
    const count = has(options, fault) || forced ? draw.between(forced ? 1 : 0, 2) : 0
    return Array.from({ length: count }, () => {
      const atMs = draw.between(0, Math.max(0, duration - 1000))
      const durationMs = draw.between(
        minMs,
        Math.max(minMs, Math.floor(Math.min(duration - atMs, duration / share))),
      )
      return { atMs, durationMs, node: perNode ? draw.below(options.nodes) : -1 }
    })
  }
  for (const window of windows("disk", "disk-full", "ignore-refused-commit", 200, 4, true))
    events.push({ kind: "disk-full", ...window })
  for (const { atMs, durationMs } of windows("replay", "replay", "no-replay-window", 500, 3, false))
    events.push({ kind: "replay", atMs, durationMs })
  // Only when asked for by name: no safe fault draws these windows.
  if (has(options, "drift-beyond-bound"))
    for (const { atMs, durationMs } of windows(
      "beyond",
      "drift-beyond-bound",
      "drift-beyond-bound",
      3_000,
      3,
      false,
    ))
      events.push({ kind: "drift-beyond-bound", atMs, durationMs })
  // At most one node, so a majority stays (a run of fewer than three nodes has none to lose);
  // never a relay of a cluster of several domains: its domain would be cut off for good (a
  // domain has one relay, and nothing takes its place yet).
  const lost = root.fork("stay-down")
  const relays = options.domains > 1 ? options.domains : 0
  if (has(options, "stay-down") && options.nodes >= 3 && options.nodes > relays && lost.chance(400))
    events.push({
      kind: "stay-down",
      atMs: lost.between(0, Math.max(0, duration - 1000)),
      durationMs: 0,
      node: relays + lost.below(options.nodes - relays),
    })
  const step = root.fork("clock-step")
  for (const window of windows("clock-step", "clock-step", "clock-step", 1_000, 2, true))
    events.push({
      kind: "clock-step",
      ...window,
      stepMs: (step.chance(500) ? -1 : 1) * step.between(1_000, 30_000),
    })
  if ((options.systems ?? 0) > 0)
    for (const window of windows("service", "service-failure", "service-failure", 2_000, 3, true))
      events.push({ kind: "service-failure", ...window })
  events.sort((left, right) => left.atMs - right.atMs)
  const workload: Workload = {
    hotPermille: work.pick([0, 100, 500]),
    deletePermille: work.pick([0, 50, 200]),
    metaPermille: work.pick([0, 100, 300]),
    burstSize: work.pick([0, 20, 100]),
    statsStorm: work.chance(300),
    keySpace: work.pick([50, 500, 5000]),
    valueBytes: work.pick([16, 64, 200]),
  }
  const guest = root.fork("guest")
  const guests: SimVmmFaults = has(options, "guest")
    ? {
        startFailurePermille: guest.pick([0, 50, 200]),
        crashPermillePerSecond: guest.pick([0, 5, 30]),
        slowShutdownPermille: guest.pick([0, 200, 600]),
        slowShutdownUs: guest.pick([1_000_000, 5_000_000, 40_000_000]),
        ignoreShutdownPermille: guest.pick([0, 100, 400]),
      }
    : noVmmFaults
  const flowWindow = Prng.labelled(options.seed, "flow").pick([
    defaultCdbConfig.maxUnconfirmedChanges,
    defaultCdbConfig.maxUnconfirmedChanges,
    256,
    48,
  ])
  const driverBatchUs = Prng.labelled(options.seed, "batch").pick([0, 0, 300, 2_000])
  const retainChanges = Prng.labelled(options.seed, "retain").pick([
    defaultCdbConfig.retainChanges,
    defaultCdbConfig.retainChanges,
    512,
    128,
  ])
  return {
    options,
    schedule: options.schedule ?? { rates, driftPpm, events },
    workload,
    guests,
    flowWindow,
    driverBatchUs,
    retainChanges,
  }
}

/** The command that replays a run exactly. */
export const replayCommand = (options: SimOptions): string => {
  const parts = [
    "npx acp sim",
    `--seed ${options.seed}`,
    `--nodes ${options.nodes}`,
    `--domains ${options.domains}`,
    `--duration ${options.durationMs}ms`,
    `--faults ${options.faults.length === 0 ? "none" : options.faults.join(",")}`,
    `--writes ${options.writesPerSec}`,
    // Always named: left out, a replay would draw it from the seed (`drawnTopology`).
    `--systems ${options.systems ?? 0}`,
  ]
  if (options.canary) parts.push("--canary")
  if (options.schedule !== undefined) parts.push(`--schedule ${encodeSchedule(options.schedule)}`)
  return parts.join(" ")
}

/** A schedule as URL-safe base64 of its JSON (unpadded), so it pastes into a shell unquoted. */
export const encodeSchedule = (schedule: Schedule): string => Base64Url.encode(JSON.stringify(schedule))

export const decodeSchedule = (text: string): Schedule => {
  const decoded = Base64Url.decodeString(text)
  if (Result.isFailure(decoded)) throw new Error(`schedule: not base64url: ${decoded.failure.message}`)
  return JSON.parse(decoded.success) as Schedule
}
