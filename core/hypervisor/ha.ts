/**
 * High availability, as the primary decides it: a pure function from what the primary knows
 * (systems, their nodes' meta, when it last heard each node, since when it is primary) to new
 * placements. Only a primary with a valid lease calls it.
 *
 * When is a lost node certainly no longer running its HA systems? A node stops them once no
 * leased primary that hears it has pinged it for `haFenceMs` (`hypervisor.ts`). This primary's
 * pings name the node only while it heard the node within `quorumWindowMs`; an earlier
 * primary's leased pings all left before this primary was elected. So after
 * `max(lastHeard + quorumWindowMs, primarySince) + haFenceMs + marginMs` (this primary's clock;
 * the margin covers message delay, clock drift and one tick) the node has stopped them, and they
 * may start elsewhere.
 *
 * The primary also releases systems a live node holds (after a fence, or at its boot) by
 * raising their epoch: the node starts them again only for an epoch newer than its hold.
 */
import type { SystemMetaValue, SystemSpecValue } from "./hypervisor.ts"
import { type NodeCapacity, place, placedSystems, requestFor, type SchedulerPolicy } from "./scheduler.ts"

export interface HaTimings {
  readonly haFenceMs: number
  readonly quorumWindowMs: number
  readonly marginMs: number
}

export interface HaInput {
  readonly nowMs: number
  readonly self: string
  readonly primarySinceMs: number
  readonly systems: ReadonlyArray<{ readonly id: string; readonly spec: SystemSpecValue }>
  /** The meta slot the node a system is placed on wrote for it, if any. */
  readonly metaOf: (system: string, node: string) => SystemMetaValue | undefined
  readonly lastHeardMs: (node: string) => number
  readonly nodes: ReadonlyArray<NodeCapacity>
  readonly timings: HaTimings
  readonly policy: SchedulerPolicy
}

export type HaAction =
  | {
      readonly _tag: "Move"
      readonly system: string
      readonly from: string
      readonly to: string
      readonly spec: SystemSpecValue
      readonly reason: string
    }
  | {
      readonly _tag: "Release"
      readonly system: string
      readonly node: string
      readonly spec: SystemSpecValue
      /** Why, where it is not the plain release of a held system. */
      readonly reason?: string
    }
  | { readonly _tag: "Stranded"; readonly system: string; readonly from: string; readonly reason: string }

/** When the primary may restart a lost node's HA systems elsewhere (its own clock). */
export const certainlyStoppedAtMs = (
  input: Pick<HaInput, "primarySinceMs" | "lastHeardMs" | "timings">,
  node: string,
): number =>
  Math.max(input.lastHeardMs(node) + input.timings.quorumWindowMs, input.primarySinceMs) +
  input.timings.haFenceMs +
  input.timings.marginMs

/**
 * Whether a node's store is recent enough to act on placements: it knows of no gap, and it has
 * received a digest from a majority (itself included) since `sinceMs`, so it has applied every
 * change those nodes had when they sent it. Two uses, both found by the simulator:
 * - the primary places systems only with digests from a majority since it took office (a
 *   primary elected with a stale store, its L2 domain's relay flapping, released a system
 *   another node already ran; seed 1105);
 * - a node starts an HA system only with digests from a majority within the last few
 *   heartbeats (a node back from a partition applied a release of a system to itself, started
 *   it, and only then applied the move of that system elsewhere; seed 5138).
 */
export const storeInSync = (input: {
  readonly self: string
  readonly members: ReadonlyArray<string>
  readonly sinceMs: number
  readonly gaps: number
  readonly digestHeardMs: (node: string) => number
}): boolean =>
  input.gaps === 0 &&
  input.members.filter((member) => member === input.self || input.digestHeardMs(member) >= input.sinceMs)
    .length >=
    Math.floor(input.members.length / 2) + 1

export const haActions = (input: HaInput): ReadonlyArray<HaAction> => {
  // A new primary places nothing until every node's authority from the previous primary has run
  // out: that primary may have placed a system, on its side of a partition, in a write this one
  // has never seen (its lease ended before this one began, so by primarySince + haFenceMs every
  // node it gave authority to has stopped its HA systems). Found by the simulator, seed 5178: a
  // new primary released a system to its own node while the old one's target still ran it.
  if (input.nowMs < input.primarySinceMs + input.timings.haFenceMs + input.timings.marginMs) return []
  const actions: Array<HaAction> = []
  const placed = placedSystems(input.systems)
  /** A move, which later placements in the same round see. */
  const move = (id: string, spec: SystemSpecValue, to: string, reason: string) => {
    actions.push({
      _tag: "Move",
      system: id,
      from: spec.node!,
      to,
      spec: { ...spec, node: to as NonNullable<SystemSpecValue["node"]>, epoch: (spec.epoch ?? 0) + 1 },
      reason,
    })
    const index = placed.findIndex((system) => system.id === id)
    if (index >= 0) placed[index] = { ...placed[index]!, node: to }
  }
  const sorted = [...input.systems].sort((left, right) => (left.id < right.id ? -1 : 1))
  for (const { id, spec } of sorted) {
    if (!spec.ha || spec.desired === "stopped" || spec.node === undefined) continue
    const node = spec.node
    const epoch = spec.epoch ?? 0
    const heard = node === input.self || input.nowMs - input.lastHeardMs(node) <= input.timings.quorumWindowMs
    const meta = input.metaOf(id, node)
    // A cold migration: the node has stopped and undefined it, and asks for it to be placed on `to`.
    const to = meta?.handoverTo
    const target = to === undefined ? undefined : input.nodes.find((candidate) => candidate.id === to)
    if (to !== undefined && (meta?.epoch ?? 0) === epoch) {
      const others = placed.filter((system) => system.id !== id)
      const decision =
        target === undefined
          ? ({ _tag: "Unplaceable", reason: `${to} is no member` } as const)
          : place(requestFor(id, spec), [target], others, input.policy)
      if (decision._tag === "Placed") {
        move(id, spec, to, `migration: ${node} has stopped it`)
        continue
      }
      // The target cannot take it (it died after the migration was asked for, say): the system
      // goes back to the node that stopped it, which starts it again. Left as it was, it stayed
      // stopped for good (found with the fault "stay-down": a migration to the lost node).
      if (heard) {
        actions.push({
          _tag: "Release",
          system: id,
          node,
          spec: { ...spec, epoch: epoch + 1 },
          reason: `migration to ${to} failed: ${decision.reason}`,
        })
        continue
      }
    }
    if (heard) {
      if (meta?.held === true && (meta.epoch ?? 0) === epoch)
        actions.push({ _tag: "Release", system: id, node, spec: { ...spec, epoch: epoch + 1 } })
      continue
    }
    if (input.nowMs < certainlyStoppedAtMs(input, node)) continue
    // Only where this primary hears the node now: a node it has not heard within the quorum
    // window is as lost for taking systems as for keeping them (the CDB's view, by relayed
    // digests, may still call it alive). Without this the primary moved a system back and forth
    // between two nodes it heard from neither (seed 1000200: vm7 between n2 and n5, every round).
    const candidates = input.nodes.map((candidate) =>
      candidate.id === node ||
      (candidate.id !== input.self &&
        input.nowMs - input.lastHeardMs(candidate.id) > input.timings.quorumWindowMs)
        ? { ...candidate, alive: false }
        : candidate,
    )
    const decision = place(requestFor(id, spec), candidates, placed, input.policy)
    if (decision._tag === "Unplaceable") {
      actions.push({ _tag: "Stranded", system: id, from: node, reason: decision.reason })
      continue
    }
    move(
      id,
      spec,
      decision.node,
      `${node} not heard for ${input.nowMs - input.lastHeardMs(node)} ms: it has certainly stopped its HA systems`,
    )
  }
  return actions
}
