/**
 * Storage as a service of its node (`core/node/service.ts`): the storage core fed the pools and
 * volumes its node's store holds, its driver calls handed to the storage port, its meta written
 * by the node. The real node and the simulator plug in this one object; only the driver behind
 * the port differs.
 */
import type { SystemSpecValue } from "../hypervisor/hypervisor.ts"
import { decodeValue, encodeValue } from "../hypervisor/values.ts"
import type { ServiceWrite } from "../node/pending.ts"
import type { ServiceContext, ServiceCore, ServicePorts, ServiceStep } from "../node/service.ts"
import {
  type DeviceSpecValue,
  defaultStorageTimings,
  type Output,
  type ShareSpecValue,
  type SnapshotSpecValue,
  type StorageConfig,
  StorageNode,
  type StoragePoolSpecValue,
  type StorageTaskValue,
  type StorageVolumeSpecValue,
  type View,
} from "./storage.ts"

type Effect = ServicePorts["storage"]["effect"]

export interface StorageServiceConfig {
  /** Where a pool with no path of its own lives on this node. */
  readonly poolRoot: string
  readonly observeEveryMs?: number
  readonly retryMs?: number
}

const reads: ReadonlySet<string> = new Set([
  "storage-pool",
  "storage-volume",
  "storage-snapshot",
  "storage-device",
  "storage-share",
  "system",
  "task",
])

/** What the store holds of storage, as the core reads it (`self`: the node whose tasks it runs). */
export const storageViewOf = (store: ServiceContext["store"], self?: string): View => {
  const decoded = <A>(kind: string) =>
    store.list(kind).flatMap((entry) => {
      const spec = decodeValue<A>(entry.value)
      return spec === undefined ? [] : [{ id: entry.id, spec }]
    })
  const inUse = new Set<string>()
  const active = new Set<string>()
  for (const { spec } of decoded<SystemSpecValue>("system"))
    for (const disk of spec.disks ?? []) {
      inUse.add(disk.volume)
      if (spec.desired !== "stopped") active.add(disk.volume)
    }
  return {
    pools: decoded<StoragePoolSpecValue>("storage-pool"),
    volumes: decoded<StorageVolumeSpecValue>("storage-volume"),
    deleted: (volume) => store.deleted("storage-volume", volume),
    inUse,
    active,
    snapshots: decoded<SnapshotSpecValue>("storage-snapshot"),
    devices: decoded<DeviceSpecValue>("storage-device"),
    shares: decoded<ShareSpecValue>("storage-share"),
    snapshotDeleted: (snapshot) => store.deleted("storage-snapshot", snapshot),
    tasks: decoded<StorageTaskValue>("task").filter(
      ({ spec }) =>
        spec.owner === self &&
        spec.operation.startsWith("storage.") &&
        (spec.state === "queued" || spec.state === "running"),
    ),
  }
}

export const storageService =
  (settings: StorageServiceConfig) =>
  (self: string, startMs: number): ServiceCore<"storage"> => {
    const config: StorageConfig = {
      ...defaultStorageTimings,
      self,
      poolRoot: settings.poolRoot,
      ...(settings.observeEveryMs === undefined ? {} : { observeEveryMs: settings.observeEveryMs }),
      ...(settings.retryMs === undefined ? {} : { retryMs: settings.retryMs }),
    }
    const core = new StorageNode(config, startMs)
    const split = (outputs: ReadonlyArray<Output>): ServiceStep<Effect> => {
      const writes: Array<ServiceWrite> = []
      const effects: Array<Effect> = []
      let deadlineMs = Number.POSITIVE_INFINITY
      for (const output of outputs) {
        switch (output._tag) {
          case "Call":
          case "Observe":
          case "ObserveDevices":
          case "ApplyShares":
            effects.push(output)
            break
          case "WriteShareMeta":
            writes.push({
              op: "meta",
              kind: "storage-share",
              id: output.share,
              value: encodeValue(output.meta),
            })
            break
          case "WriteDevice":
            writes.push({
              op: "put",
              kind: "storage-device",
              id: output.device,
              value: encodeValue(output.spec),
            })
            break
          case "WriteDeviceMeta":
            writes.push({
              op: "meta",
              kind: "storage-device",
              id: output.device,
              value: encodeValue(output.meta),
            })
            break
          case "WritePoolMeta":
            writes.push({
              op: "meta",
              kind: "storage-pool",
              id: output.pool,
              value: encodeValue(output.meta),
            })
            break
          case "WriteVolumeMeta":
            writes.push({
              op: "meta",
              kind: "storage-volume",
              id: output.volume,
              value: encodeValue(output.meta),
            })
            break
          case "WriteSnapshotMeta":
            writes.push({
              op: "meta",
              kind: "storage-snapshot",
              id: output.snapshot,
              value: encodeValue(output.meta),
            })
            break
          case "WriteTask":
            writes.push({ op: "put", kind: "task", id: output.id, value: encodeValue(output.spec) })
            break
          case "ArmDeadline":
            deadlineMs = output.atMs
            break
        }
      }
      return { writes, effects, events: [], deadlineMs }
    }
    return {
      reads,
      step: (input, context) =>
        split(
          core.handle(
            input._tag === "ViewChanged"
              ? { _tag: "ViewChanged", view: storageViewOf(context.store, self) }
              : input,
            context.nowMs,
          ),
        ),
    }
  }
