/**
 * The hypervisor as a service of its node (`core/node/service.ts`): the hypervisor core fed the
 * view its node's store holds (an HA system where the decision log places it) and the authority
 * its monitor gives, its driver calls handed to the VMM port, and, on the primary, the HA round,
 * whose decisions go to the log. The real node and the simulator plug in this one object; only
 * the VMM behind the port differs.
 */

import type { DecisionCommand } from "../decision/state.ts"
import type { ServiceWrite } from "../node/pending.ts"
import type { ServiceContext, ServiceCore, ServicePorts, ServiceStep } from "../node/service.ts"
import { pinsOf, specReader } from "../storage/disks.ts"
import { type HaAction, haActions, withPlacements } from "./ha.ts"
import {
  defaultHypervisorTimings,
  type HypervisorConfig,
  HypervisorNode,
  type Output,
  type SystemMetaValue,
  type SystemSpecValue,
} from "./hypervisor.ts"
import { defaultSchedulerPolicy } from "./scheduler.ts"
import { decodeValue, encodeValue } from "./values.ts"
import { systemsIn, viewIn } from "./view.ts"

type Effect = ServicePorts["hypervisor"]["effect"]

export interface HypervisorServiceConfig {
  readonly volumeDir: string
  readonly consoleDir?: string
  readonly haFenceMs?: number
  readonly stopTimeoutMs?: number
  /** Extra wait the primary adds to the fence bound: message delay, drift, a tick. */
  readonly haMarginMs?: number
  /** How often the primary looks for HA systems to move. */
  readonly haEveryMs?: number
  /**
   * A planted bug for the simulator (never set by a real node): the host believes it always has a
   * primary's contact and is never fenced, like a host without a watchdog.
   */
  readonly withoutFence?: boolean
}

const reads: ReadonlySet<string> = new Set(["system", "task", "storage-pool", "storage-volume"])
/** How long the primary waits for a decision it proposed before it proposes the same one again. */
const proposalPatienceMs = 2_000

const storeReader = (context: ServiceContext) => ({
  list: context.store.list,
  metaOf: context.store.metaOf,
})

/** The decision an HA action asks of the log, conditional on the epoch the primary saw. */
const commandOf = (action: Exclude<HaAction, { readonly _tag: "Stranded" }>): DecisionCommand =>
  action._tag === "Unplace"
    ? { _tag: "Unplace", system: action.system, expect: action.expect }
    : {
        _tag: "Place",
        system: action.system,
        node: action._tag === "Move" ? action.to : action.node,
        expect: action.expect,
      }

/** The store's view with every HA system where the decision log places it (nowhere, unplaced). */
const placedView = (context: ServiceContext) => {
  const view = viewIn(context.self, storeReader(context))
  return { ...view, systems: withPlacements(view.systems, context.decided.placements) }
}

export const hypervisorService =
  (settings: HypervisorServiceConfig) =>
  (self: string, startMs: number): ServiceCore<"hypervisor"> => {
    const config: HypervisorConfig = {
      ...defaultHypervisorTimings,
      self,
      volumeDir: settings.volumeDir,
      ...(settings.consoleDir === undefined ? {} : { consoleDir: settings.consoleDir }),
      ...(settings.haFenceMs === undefined ? {} : { haFenceMs: settings.haFenceMs }),
      ...(settings.stopTimeoutMs === undefined ? {} : { stopTimeoutMs: settings.stopTimeoutMs }),
    }
    const core = new HypervisorNode(config, startMs)
    /** The decisions this primary proposed and has not seen decided: "system@expect" → when. */
    const proposed = new Map<string, number>()
    const split = (outputs: ReadonlyArray<Output>): ServiceStep<Effect> => {
      const writes: Array<ServiceWrite> = []
      const effects: Array<Effect> = []
      const events: Array<ServiceStep<Effect>["events"][number]> = []
      let deadlineMs = Number.POSITIVE_INFINITY
      for (const output of outputs) {
        switch (output._tag) {
          case "Call":
          case "Observe":
            effects.push(output)
            break
          case "WriteMeta":
            writes.push({ op: "meta", kind: "system", id: output.system, value: encodeValue(output.meta) })
            break
          case "WriteTask":
            writes.push({ op: "put", kind: "task", id: output.id, value: encodeValue(output.spec) })
            break
          case "WriteSpec":
            events.push({
              level: "info",
              kind: "spec-by-node",
              message: "system spec updated by its node",
              detail: { system: output.system, to: output.spec.node ?? "" },
            })
            writes.push({ op: "put", kind: "system", id: output.system, value: encodeValue(output.spec) })
            break
          case "ArmDeadline":
            deadlineMs = output.atMs
            break
        }
      }
      return { writes, effects, events, deadlineMs }
    }
    return {
      reads,
      primaryEveryMs: settings.haEveryMs ?? 250,
      step: (input, context) => {
        const authority = settings.withoutFence
          ? { leaderContactMs: context.nowMs, fenced: false }
          : {
              leaderContactMs: context.authority.leaderContactMs,
              fenced: context.authority.fenced,
              caughtUp: context.authority.decisionsCaughtUp,
            }
        const coreInput =
          input._tag === "ViewChanged" ? { _tag: "ViewChanged" as const, view: placedView(context) } : input
        return split(core.handle(coreInput, context.nowMs, authority))
      },
      /**
       * On the primary: place new HA systems, move those of nodes that have certainly stopped
       * them, release holds, retire placements of systems gone — each a decision for the log —
       * and mirror what is decided into the systems' specs.
       */
      primaryRound: (context) => {
        const none = { writes: [], effects: [], events: [], deadlineMs: Number.POSITIVE_INFINITY }
        if (!context.authority.isPrimary || !context.authority.decisionsCaughtUp) return none
        const placements = context.decided.placements
        const systems = systemsIn(storeReader(context))
        const stored = new Map(context.store.list("system").map((entry) => [entry.id, entry.value]))
        const retired = Object.keys(placements).filter((id) => {
          if (!stored.has(id)) return false
          const spec = decodeValue<SystemSpecValue>(stored.get(id) ?? undefined)
          return spec === undefined || !spec.ha
        })
        let pins: ReturnType<typeof pinsOf> | undefined
        const actions = haActions({
          nowMs: context.nowMs,
          self,
          primarySinceMs: context.authority.primarySinceMs,
          systems,
          placements,
          retired,
          metaOf: (system, node) =>
            decodeValue<SystemMetaValue>(
              context.store.metaOf("system", system).find((slot) => slot.node === node)?.value,
            ),
          lastHeardMs: context.authority.lastHeardMs,
          nodes: context.nodes(),
          timings: {
            haFenceMs: config.haFenceMs,
            quorumWindowMs: context.authority.quorumWindowMs,
            marginMs: settings.haMarginMs ?? 500,
          },
          policy: defaultSchedulerPolicy,
          pins: (system) => {
            pins ??= pinsOf(specReader(context.store.list))
            return pins.get(system)
          },
        })
        const writes: Array<ServiceWrite> = []
        const events: Array<ServiceStep<Effect>["events"][number]> = []
        const proposals: Array<DecisionCommand> = []
        for (const [key, atMs] of proposed)
          if (context.nowMs - atMs >= proposalPatienceMs) proposed.delete(key)
        for (const action of actions) {
          if (action._tag === "Stranded") {
            events.push({
              level: "warning",
              kind: "ha-stranded",
              message: "HA system stranded",
              detail: { system: action.system, from: action.from, reason: action.reason },
            })
            continue
          }
          const key = `${action.system}@${action.expect}`
          if (proposed.has(key)) continue
          proposed.set(key, context.nowMs)
          proposals.push(commandOf(action))
          if (action._tag === "Place" || action._tag === "Unplace") continue
          events.push({
            level: "warning",
            kind: "ha-move",
            message: action._tag === "Move" ? "HA: restarting system elsewhere" : "HA: releasing held system",
            detail:
              action._tag === "Move"
                ? { system: action.system, from: action.from, to: action.to, reason: action.reason }
                : {
                    system: action.system,
                    node: action.node,
                    ...(action.reason === undefined ? {} : { reason: action.reason }),
                  },
          })
        }
        // The specs mirror what is decided (for the API and CLI, and a system no longer HA),
        // from a caught-up store only, as a client writes: a mirror written before this store has
        // an earlier primary's can carry the older version (a clock stepped back) and lose to
        // that stale mirror (sim seed 9300830: epochs 11-16 undone by epochs 1-8 for 250 ms).
        for (const { id, spec } of context.authority.caughtUp ? systems : []) {
          const placement = placements[id]
          if (!spec.ha || placement === undefined) continue
          if (spec.node === placement.node && (spec.epoch ?? 0) === placement.epoch) continue
          const mirrored = {
            ...spec,
            node: placement.node as SystemSpecValue["node"] & string,
            epoch: placement.epoch,
          }
          writes.push({ op: "put", kind: "system", id, value: encodeValue(mirrored) })
        }
        return { writes, effects: [], events, deadlineMs: Number.POSITIVE_INFINITY, proposals }
      },
    }
  }
