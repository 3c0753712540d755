/**
 * The fault harness's schedule: one seed draws every fault, when it starts, what it does and how
 * long it lasts, before the run begins (so a replay by seed gets the same schedule; the timing of
 * the real processes under it is not the seed's to decide). Faults come in rounds, as Jepsen's
 * nemesis does them: one or two faults, then quiet, then the next round; at most one process
 * fault at a time, so a majority always has its processes. Which node a fault hits is drawn as a
 * choice ("the primary", or the k-th of the nodes it may hit) that the harness resolves when the
 * fault starts.
 */
import { Prng } from "../../core/random.ts"

export const faultKinds = [
  "partition",
  "one-way",
  "lossy",
  "kill",
  "pause",
  "disk-full",
  "restart-full",
  "clock",
  "replay",
] as const
export type FaultKind = (typeof faultKinds)[number]

const processKinds: ReadonlySet<FaultKind> = new Set(["kill", "pause", "restart-full"])

/** A clock step comes this long into its round, which stays quiet for `clockWatchMs` after it. */
export const clockLeadMs = 4_000
export const clockWatchMs = 8_000

/** Whom a fault hits: the primary when it starts, or the `pick`-th (modulo) of the nodes it may hit. */
export type Target = { readonly _tag: "primary" } | { readonly _tag: "any"; readonly pick: number }

export interface Fault {
  readonly atMs: number
  readonly kind: FaultKind
  readonly durationMs: number
  readonly target: Target
  /** partition: which nodes are on the first side (by index, a proper non-empty subset). */
  readonly side?: ReadonlyArray<number>
  /** lossy: the links' faults. */
  readonly loss?: {
    readonly lossPermille: number
    readonly delayMs: number
    readonly jitterMs: number
    readonly duplicatePermille: number
  }
  /** clock: the step of the target's wall clock, in seconds (either way). */
  readonly stepS?: number
  /** kill, pause: also replay the victim's captured datagrams while it is silent (the outside finding). */
  readonly replayVictim?: boolean
}

export interface ScheduleOptions {
  readonly seed: number
  readonly nodes: number
  /** When faults may start (after the warm-up) and when the last must have ended. */
  readonly fromMs: number
  readonly untilMs: number
  readonly kinds: ReadonlyArray<FaultKind>
}

const targetOf = (random: Prng, primaryPermille: number): Target =>
  random.chance(primaryPermille) ? { _tag: "primary" } : { _tag: "any", pick: random.below(1_000) }

const drawFault = (random: Prng, kind: FaultKind, atMs: number, nodes: number): Fault => {
  switch (kind) {
    case "partition": {
      const size = random.between(1, nodes - 1)
      const order = Array.from({ length: nodes }, (_, index) => index)
      for (let index = order.length - 1; index > 0; index--) {
        const other = random.below(index + 1)
        ;[order[index], order[other]] = [order[other]!, order[index]!]
      }
      return {
        atMs,
        kind,
        durationMs: random.between(3_000, 10_000),
        target: { _tag: "any", pick: 0 },
        side: order.slice(0, size).sort((left, right) => left - right),
      }
    }
    case "one-way":
      return { atMs, kind, durationMs: random.between(3_000, 10_000), target: targetOf(random, 500) }
    case "lossy":
      return {
        atMs,
        kind,
        durationMs: random.between(4_000, 12_000),
        target: { _tag: "any", pick: 0 },
        loss: {
          lossPermille: random.between(50, 300),
          delayMs: random.between(0, 15),
          jitterMs: random.between(0, 40),
          duplicatePermille: random.between(0, 100),
        },
      }
    case "kill":
      return {
        atMs,
        kind,
        durationMs: random.between(2_000, 15_000),
        target: targetOf(random, 500),
        replayVictim: random.chance(500),
      }
    case "pause":
      return {
        atMs,
        kind,
        // Longer than a lease. Those under the nodes' watchdog (3.7 s: one in ten) wake, and a
        // primary must find itself deposed; the others are killed by their watchdog first.
        durationMs: random.between(3_000, 10_000),
        target: targetOf(random, 500),
        replayVictim: random.chance(500),
      }
    case "disk-full":
    case "restart-full":
      return { atMs, kind, durationMs: random.between(4_000, 12_000), target: targetOf(random, 300) }
    case "clock":
      // A round of its own: quiet for `clockLeadMs`, the step, then `clockWatchMs` of quiet in
      // which the step must change nothing (no election, no fence).
      return {
        atMs,
        kind,
        durationMs: clockLeadMs + clockWatchMs,
        target: targetOf(random, 500),
        stepS: (random.chance(500) ? 1 : -1) * random.between(1, 30),
      }
    case "replay":
      return { atMs, kind, durationMs: random.between(3_000, 10_000), target: targetOf(random, 700) }
  }
}

/** The faults of a run, in start order. */
export const drawSchedule = (options: ScheduleOptions): ReadonlyArray<Fault> => {
  const random = Prng.labelled(options.seed, "vortex")
  const faults: Array<Fault> = []
  if (options.kinds.length === 0) return faults
  let atMs = options.fromMs
  for (;;) {
    atMs += random.between(1_000, 3_000)
    const count = random.chance(300) ? 2 : 1
    const round: Array<Fault> = []
    for (let index = 0; index < count; index++) {
      const kind = random.pick(options.kinds)
      if (processKinds.has(kind) && round.some((fault) => processKinds.has(fault.kind))) continue
      if (round.some((fault) => fault.kind === "clock") || (kind === "clock" && round.length > 0)) continue
      round.push(drawFault(random, kind, atMs + index * random.between(0, 1_000), options.nodes))
    }
    // The last round may outlast the run: the harness cuts it short, so the heal comes while
    // faults are on, not after a quiet spell.
    if (atMs >= options.untilMs) break
    faults.push(...round.filter((fault) => fault.atMs < options.untilMs))
    atMs = Math.max(...round.map((fault) => fault.atMs + fault.durationMs))
  }
  return faults
}

/** A fault as the harness prints it. */
export const describeFault = (fault: Fault): string => {
  const target = fault.target._tag === "primary" ? "primary" : `node#${fault.target.pick}`
  const details =
    fault.kind === "partition"
      ? `side ${fault.side?.join(",")}`
      : fault.kind === "lossy"
        ? `loss ${fault.loss?.lossPermille}‰ delay ${fault.loss?.delayMs}+${fault.loss?.jitterMs} ms dup ${fault.loss?.duplicatePermille}‰`
        : fault.kind === "clock"
          ? `${target} ${fault.stepS! > 0 ? "+" : ""}${fault.stepS} s after ${clockLeadMs / 1000} s, then watched`
          : fault.replayVictim === true
            ? `${target} (its datagrams replayed while silent)`
            : target
  return `${(fault.atMs / 1000).toFixed(1)}s ${fault.kind} ${details}${fault.durationMs > 0 ? ` for ${(fault.durationMs / 1000).toFixed(1)}s` : ""}`
}
