/**
 * The systems endpoints: create (with the scheduler's decision, or only the decision on a dry
 * run), operations (each one a task owned by the system's node) and the serial console. The
 * decisions are the core's (`scheduler.ts`, `requests.ts`); this file reads the CDB and writes
 * what they return, in one batch.
 */
import { Effect, Result } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import type { SystemSpecValue } from "../../core/hypervisor/hypervisor.ts"
import { newTask, planOperation } from "../../core/hypervisor/requests.ts"
import {
  type Decision,
  defaultSchedulerPolicy,
  liveNodes,
  place,
  placedSystems,
  requestFor,
} from "../../core/hypervisor/scheduler.ts"
import {
  decodeObjectId,
  decodeObjectPart,
  notFoundMessage,
  unknownNodeMessage,
} from "../../core/model/validate.ts"
import { admitOperation, admitSystemDisks, checkDisks, planDisks } from "../../core/storage/disks.ts"
import { json, parse, systemsOf } from "../node/hypervisor.ts"
import type { RunningNode } from "../node/node.ts"
import {
  AcpApi,
  ConsoleUnavailable,
  InvalidObject,
  ObjectNotFound,
  OperationRefused,
  Unplaceable,
} from "./definition.ts"
import { Node } from "./node.ts"
import { storageReader, view, writeFailed } from "./server.ts"

let taskSerial = 0
/** A task id unique in the cluster: the node, the time and a counter. */
const taskId = (node: string, nowMs: number, operation: string) =>
  `${operation}-${nowMs.toString(36)}-${node}-${(++taskSerial).toString(36)}`.slice(0, 63)

/** An operator's spec with the defaults a user would expect filled in. */
const withDefaults = (id: string, input: unknown): unknown => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return input
  return {
    name: id,
    disks: [],
    nics: [],
    ha: false,
    desired: "running",
    placement: { affinity: [], antiAffinity: [] },
    epoch: 0,
    ...input,
  }
}

/** One line naming why: each reason with its nodes ("n1, n2: hypervisor backing-off: …"). */
const unplaceableMessage = (id: string, decision: Extract<Decision, { _tag: "Unplaceable" }>) => {
  const nodesByReason = new Map<string, Array<string>>()
  for (const verdict of decision.verdicts)
    nodesByReason.set(verdict.reason, [...(nodesByReason.get(verdict.reason) ?? []), verdict.node])
  const reasons = [...nodesByReason].map(([reason, nodes]) => `${nodes.join(", ")}: ${reason}`).join("; ")
  return `no node can take ${id}: ${decision.reason}${reasons === "" ? "" : ` (${reasons})`}`
}

const specOf = (node: RunningNode, id: string) => parse<SystemSpecValue>(node.get("system", id)?.value)

export const SystemsHandlers = HttpApiBuilder.group(AcpApi, "systems", (handlers) =>
  Effect.gen(function* () {
    const node = yield* Node
    return handlers
      .handle("create", ({ params, payload }) =>
        Effect.gen(function* () {
          const decoded = decodeObjectPart("system", "spec", withDefaults(params.id, payload.spec))
          if (Result.isFailure(decoded))
            return yield* new InvalidObject({
              message: decoded.failure.message,
              issues: decoded.failure.issues,
            })
          const checked = decodeObjectId("system", params.id)
          if (Result.isFailure(checked))
            return yield* new InvalidObject({
              message: checked.failure.message,
              issues: checked.failure.issues,
            })
          if (node.get("system", params.id) !== undefined && payload.dryRun !== true)
            return yield* new InvalidObject({
              message: `system ${params.id} exists`,
              issues: [{ path: "id", message: "already taken" }],
            })
          const requested = decoded.success as SystemSpecValue
          // Its disks: new volumes and clones planned, every disk checked, the node they pin it to.
          const store = storageReader(node)
          const plan = planDisks(store, params.id, requested.disks, payload.disks ?? [])
          if ("reason" in plan) return yield* new OperationRefused(plan)
          const spec: SystemSpecValue = { ...requested, disks: plan.disks }
          const refusal = admitSystemDisks(store, params.id, spec, plan.volumes)
          if (refusal !== undefined) return yield* new OperationRefused(refusal)
          const disks = checkDisks(store, params.id, spec.disks, plan.volumes)
          const pin = "pin" in disks ? disks.pin : undefined
          const nodes = node.capacities()
          if (spec.node !== undefined && !nodes.some((candidate) => candidate.id === spec.node))
            return yield* new InvalidObject({
              message: unknownNodeMessage(
                spec.node,
                nodes.map((candidate) => candidate.id),
              ),
              issues: [{ path: "spec.node", message: "not a member of the cluster" }],
            })
          // A node the operator chose is held to the same rules as the scheduler's choice.
          const decision = place(
            requestFor(params.id, spec, pin),
            spec.node === undefined ? nodes : nodes.filter((candidate) => candidate.id === spec.node),
            placedSystems(systemsOf(node)),
            defaultSchedulerPolicy,
          )
          if (payload.dryRun === true) return { decision }
          if (decision._tag === "Unplaceable")
            return yield* new Unplaceable({
              message: unplaceableMessage(params.id, decision),
              decision,
            })
          const placedSpec = { ...spec, node: decision.node as NonNullable<SystemSpecValue["node"]> }
          const nowMs = Date.now()
          const id = taskId(node.id, nowMs, "create")
          const task = newTask("create", params.id, decision.node, { desired: spec.desired }, nowMs)
          yield* node
            .write([
              ...plan.volumes.map((volume) => ({
                op: "put" as const,
                kind: "storage-volume",
                id: volume.id,
                value: json(volume.spec),
              })),
              { op: "put", kind: "system", id: params.id, value: json(placedSpec) },
              { op: "put", kind: "task", id, value: json(task) },
            ])
            .pipe(Effect.mapError(writeFailed))
          return { decision, system: view(node, node.get("system", params.id)!), task: id }
        }),
      )
      .handle("operate", ({ params, payload }) =>
        Effect.gen(function* () {
          const nowMs = Date.now()
          const id = taskId(node.id, nowMs, params.operation)
          const plan = planOperation({
            system: params.id,
            spec: specOf(node, params.id),
            operation: params.operation,
            parameters: payload,
            nowMs,
            nodes: node.status().members.map((member) => member.id),
            live: liveNodes(node.capacities()),
            inSync: node.inSync(),
          })
          const storageRule = admitOperation(
            storageReader(node),
            params.id,
            specOf(node, params.id),
            params.operation,
            payload,
          )
          if (storageRule !== undefined && !("reason" in plan && plan.reason === "no-such-system"))
            return yield* new OperationRefused(storageRule)
          if ("reason" in plan) {
            if (plan.reason === "no-such-system")
              return yield* new ObjectNotFound({ kind: "system", id: params.id, message: plan.message })
            return yield* new OperationRefused({ reason: plan.reason, message: plan.message })
          }
          const writes: Array<Parameters<RunningNode["write"]>[0][number]> = []
          if (plan.system === null) writes.push({ op: "delete", kind: "system", id: params.id, value: null })
          else if (plan.system !== undefined)
            writes.push({ op: "put", kind: "system", id: params.id, value: json(plan.system) })
          writes.push({ op: "put", kind: "task", id, value: json(plan.task) })
          yield* node.write(writes).pipe(Effect.mapError(writeFailed))
          return { task: id }
        }),
      )
      .handle("console", ({ params }) =>
        Effect.gen(function* () {
          const spec = specOf(node, params.id)
          if (spec === undefined)
            return yield* new ObjectNotFound({
              kind: "system",
              id: params.id,
              message: notFoundMessage("system", params.id),
            })
          if (spec.node !== node.id)
            return yield* new ConsoleUnavailable({
              message: `system ${params.id} runs on ${spec.node ?? "no node"}; ask that node (/v1/nodes/${spec.node ?? "?"}/v1/systems/${params.id}/console)`,
            })
          const read = node.console
          if (read === undefined)
            return yield* new ConsoleUnavailable({
              message: "the hypervisor service is not running on this node",
            })
          return yield* read(params.id, 64 * 1024).pipe(
            Effect.mapError((error) => new ConsoleUnavailable({ message: error.message })),
          )
        }),
      )
  }),
)
