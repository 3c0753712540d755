/**
 * What an operator's request on a system writes to the CDB: the system's new desired state (or
 * its deletion) and a task, owned by the node the system is on, that records the work. Pure:
 * the API calls it with the current spec and writes what it returns, in one batch.
 */
import { Result } from "effect"
import { decodeObjectId, notFoundMessage, unknownNodeMessage } from "../model/validate.ts"
import type { SystemSpecValue, TaskSpecValue } from "./hypervisor.ts"

export const systemOperations = [
  "start",
  "stop",
  "reboot",
  "suspend",
  "resume",
  "destroy",
  "attach",
  "detach",
  "migrate",
] as const
export type SystemOperation = (typeof systemOperations)[number]

export interface OperationRequest {
  readonly system: string
  readonly spec: SystemSpecValue | undefined
  readonly operation: string
  readonly parameters: Readonly<Record<string, string>>
  readonly nowMs: number
  /** Nodes a system may be migrated to. */
  readonly nodes: ReadonlyArray<string>
  /** The nodes that can act now (alive, not fenced); a task for any other would only wait. */
  readonly live: ReadonlyArray<string>
  /**
   * Whether the store the spec was read from is caught up with a majority (`Authority.caughtUp`).
   * An operation that writes the spec back writes all of it: from a stale store it would undo
   * what it has not seen — a migration, say, after which the system ran on two nodes (found by
   * the simulator, seed 3000397: a start through a node cut off for 20 s). Such operations are
   * refused there, as Proxmox VE keeps a node without quorum read-only.
   */
  readonly inSync: boolean
}

export type OperationPlan = {
  /** The system's new spec, `null` to delete it, `undefined` to leave it. */
  readonly system: SystemSpecValue | null | undefined
  readonly task: TaskSpecValue
}

export interface OperationRefused {
  readonly reason:
    | "no-such-system"
    | "unknown-operation"
    | "invalid"
    | "not-placed"
    | "node-unavailable"
    | "not-in-sync"
  readonly message: string
}

export const newTask = (
  operation: string,
  system: string,
  owner: string,
  parameters: Readonly<Record<string, string>>,
  nowMs: number,
): TaskSpecValue => ({
  operation: `hypervisor.${operation}`,
  target: { kind: "system", id: system },
  owner: owner as TaskSpecValue["owner"],
  parameters: { ...parameters },
  state: "queued",
  log: [{ atMs: nowMs, line: `${operation} requested` }],
  createdMs: nowMs,
})

export const planOperation = (request: OperationRequest): OperationPlan | OperationRefused => {
  const { spec, system, operation, parameters } = request
  if (!(systemOperations as ReadonlyArray<string>).includes(operation))
    return {
      reason: "unknown-operation",
      message: `unknown operation ${operation}; known: ${systemOperations.join(", ")}`,
    }
  if (spec === undefined) return { reason: "no-such-system", message: notFoundMessage("system", system) }
  if (spec.node === undefined) return { reason: "not-placed", message: `system ${system} is on no node` }
  const task = newTask(operation, system, spec.node, parameters, request.nowMs)
  if (!request.live.includes(spec.node)) {
    // Deleting needs nothing of the node: once back, it removes a domain no spec places there.
    if (operation === "destroy")
      return {
        system: null,
        task: {
          ...task,
          state: "succeeded",
          log: [
            ...task.log,
            {
              atMs: request.nowMs,
              line: `${spec.node} cannot act now: ${system} is deleted from the cluster; ${spec.node} removes its domain when it is back`,
            },
          ],
        },
      }
    return {
      reason: "node-unavailable",
      message: `system ${system} is on ${spec.node}, which cannot act now (not alive, or fenced): ${operation} would only wait`,
    }
  }
  const invalid = (message: string): OperationRefused => ({ reason: "invalid", message })
  const writesSpec = ["start", "resume", "stop", "suspend", "attach"].includes(operation)
  if (writesSpec && !request.inSync)
    return {
      reason: "not-in-sync",
      message: `this node's store is not caught up with a majority (it may lack newer changes to ${system}): retry shortly, or ask another node`,
    }
  switch (operation as SystemOperation) {
    case "start":
    case "resume":
      return { system: { ...spec, desired: "running" }, task }
    case "stop":
      return { system: { ...spec, desired: "stopped" }, task }
    case "suspend":
      return { system: { ...spec, desired: "paused" }, task }
    case "reboot":
      return { system: undefined, task }
    case "destroy":
      return { system: null, task }
    case "attach": {
      const volume = parameters.volume
      if (volume === undefined || Result.isFailure(decodeObjectId("storage-volume", volume)))
        return invalid("attach needs --volume <id>")
      if (spec.disks.some((disk) => disk.volume === volume))
        return invalid(`volume ${volume} is already attached to ${system}`)
      const disk = {
        volume: volume as (typeof spec.disks)[number]["volume"],
        bus: "virtio" as const,
        boot: false,
      }
      return { system: { ...spec, disks: [...spec.disks, disk] }, task }
    }
    case "detach": {
      const volume = parameters.volume
      if (volume === undefined) return invalid("detach needs --volume <id>")
      if (!spec.disks.some((disk) => disk.volume === volume))
        return invalid(`volume ${volume} is not attached to ${system}`)
      // The disk stays in the spec until the node has detached it, so its device name is known.
      return { system: undefined, task }
    }
    case "migrate": {
      const to = parameters.to
      if (to === undefined) return invalid("migrate needs --to <node>")
      if (to === spec.node) return invalid(`system ${system} is already on ${to}`)
      if (!request.nodes.includes(to)) return invalid(unknownNodeMessage(to, request.nodes))
      if (parameters.live === "true")
        return invalid(
          "live migration is not supported by this cluster's driver; migrate cold (without --live)",
        )
      return { system: undefined, task }
    }
  }
}
