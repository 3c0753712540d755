/**
 * High availability, as the primary decides it: a pure function from what the primary knows
 * (systems, their placements in the decision log, their nodes' meta, when it last heard each
 * node, since when it is primary) to decisions for the log. Only a primary with a valid lease
 * and a caught-up decision log calls it.
 *
 * Where an HA system runs is decided by the decision log (`core/decision/state.ts`): a placement
 * is a node and an epoch, the fencing token, committed by a majority before its node acts on it
 * (the CDB's `spec.node` and `spec.epoch` only mirror it). Every decision here is conditional on
 * the epoch the primary saw (`expect`): one made on a stale view, or proposed twice, is refused.
 * The window that claims and waits once only narrowed — a placement written by a primary that only
 * its target saw, that primary lost, and a new one deciding without it — is closed: a placement
 * not committed is acted on by no one, and a committed one is in every later primary's log.
 *
 * When is a lost node certainly no longer running its HA systems? A node stops them once no
 * leased primary that hears it has pinged it for `haFenceMs` (`hypervisor.ts`). This primary's
 * pings name the node only while it heard the node within `quorumWindowMs`; an earlier
 * primary's leased pings all left before this primary was elected. So after
 * `max(lastHeard + quorumWindowMs, primarySince) + haFenceMs + marginMs` (this primary's clock;
 * the margin covers message delay, clock drift and one tick) the node has stopped them, and they
 * may be placed elsewhere. The log cannot replace this wait: a node cut off from every primary
 * cannot learn of a decision, only run out of authority.
 *
 * The primary also releases systems a live node holds (after a fence, or at its boot) by placing
 * them again on that node: the node starts them again only for an epoch newer than its hold.
 */
import type { Placement } from "../decision/state.ts"
import type { SystemMetaValue, SystemSpecValue } from "./hypervisor.ts"
import {
  type NodeCapacity,
  type Pin,
  place,
  placedSystems,
  requestFor,
  type SchedulerPolicy,
} from "./scheduler.ts"

export interface HaTimings {
  readonly haFenceMs: number
  readonly quorumWindowMs: number
  readonly marginMs: number
}

export interface HaInput {
  readonly nowMs: number
  readonly self: string
  readonly primarySinceMs: number
  /** The systems as the store holds them (`spec.node` of an HA system: where it is to be placed first). */
  readonly systems: ReadonlyArray<{ readonly id: string; readonly spec: SystemSpecValue }>
  /** The decision log's placements. */
  readonly placements: Readonly<Record<string, Placement>>
  /** Systems with a placement whose spec is deleted or no longer HA: their placements go. */
  readonly retired: ReadonlyArray<string>
  /** The meta slot the node a system is placed on wrote for it, if any. */
  readonly metaOf: (system: string, node: string) => SystemMetaValue | undefined
  readonly lastHeardMs: (node: string) => number
  readonly nodes: ReadonlyArray<NodeCapacity>
  readonly timings: HaTimings
  readonly policy: SchedulerPolicy
  /** The node a system's disks pin it to (a local storage pool's), if any. */
  readonly pins?: (system: string) => Pin | undefined
}

/** What the primary proposes; each is conditional on the placement's epoch it saw (`expect`, 0: none). */
export type HaAction =
  | {
      readonly _tag: "Place"
      readonly system: string
      readonly node: string
      readonly expect: 0
      readonly reason: string
    }
  | {
      readonly _tag: "Move"
      readonly system: string
      readonly from: string
      readonly to: string
      readonly expect: number
      readonly reason: string
    }
  | {
      readonly _tag: "Release"
      readonly system: string
      readonly node: string
      readonly expect: number
      /** Why, where it is not the plain release of a held system. */
      readonly reason?: string
    }
  | { readonly _tag: "Unplace"; readonly system: string; readonly expect: number }
  | { readonly _tag: "Stranded"; readonly system: string; readonly from: string; readonly reason: string }

/** The systems as the decision log places them: an HA system's node and epoch are its placement's. */
export const withPlacements = <System extends { readonly id: string; readonly spec: SystemSpecValue }>(
  systems: ReadonlyArray<System>,
  placements: Readonly<Record<string, Placement>>,
): Array<System> =>
  systems.map((system) => {
    if (!system.spec.ha) return system
    const placement = placements[system.id]
    const { node: _node, epoch: _epoch, ...spec } = system.spec
    return {
      ...system,
      spec: placement === undefined ? spec : { ...spec, node: placement.node, epoch: placement.epoch },
    } as System
  })

/** When the primary may restart a lost node's HA systems elsewhere (its own clock). */
export const certainlyStoppedAtMs = (
  input: Pick<HaInput, "primarySinceMs" | "lastHeardMs" | "timings">,
  node: string,
): number =>
  Math.max(input.lastHeardMs(node) + input.timings.quorumWindowMs, input.primarySinceMs) +
  input.timings.haFenceMs +
  input.timings.marginMs

export const haActions = (input: HaInput): ReadonlyArray<HaAction> => {
  const actions: Array<HaAction> = []
  for (const system of input.retired) {
    const placement = input.placements[system]
    if (placement !== undefined) actions.push({ _tag: "Unplace", system, expect: placement.epoch })
  }
  // An HA system the log has not placed yet goes where the store says (the scheduler chose it).
  for (const { id, spec } of input.systems)
    if (spec.ha && spec.node !== undefined && input.placements[id] === undefined)
      actions.push({ _tag: "Place", system: id, node: spec.node, expect: 0, reason: "a new HA system" })
  const systems = withPlacements(input.systems, input.placements)
  const placed = placedSystems(systems)
  /** A move, which later placements in the same round see. */
  const move = (id: string, from: string, epoch: number, to: string, reason: string) => {
    actions.push({ _tag: "Move", system: id, from, to, expect: epoch, reason })
    const index = placed.findIndex((system) => system.id === id)
    if (index >= 0) placed[index] = { ...placed[index]!, node: to }
  }
  const sorted = [...systems].sort((left, right) => (left.id < right.id ? -1 : 1))
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
          : place(requestFor(id, spec, input.pins?.(id)), [target], others, input.policy)
      if (decision._tag === "Placed") {
        move(id, node, epoch, to, `migration: ${node} has stopped it`)
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
          expect: epoch,
          reason: `migration to ${to} failed: ${decision.reason}`,
        })
        continue
      }
    }
    if (heard) {
      if (meta?.held === true && (meta.epoch ?? 0) === epoch)
        actions.push({ _tag: "Release", system: id, node, expect: epoch })
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
    const decision = place(requestFor(id, spec, input.pins?.(id)), candidates, placed, input.policy)
    if (decision._tag === "Unplaceable") {
      actions.push({ _tag: "Stranded", system: id, from: node, reason: decision.reason })
      continue
    }
    move(
      id,
      node,
      epoch,
      decision.node,
      `${node} not heard for ${input.nowMs - input.lastHeardMs(node)} ms: it has certainly stopped its HA systems`,
    )
  }
  return actions
}
