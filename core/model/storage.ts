/** Storage devices, pools, volumes and shares (seed 000's Storage object with its sub-types). */
import { Schema } from "effect"
import { storagePoolLifecycle, storageVolumeLifecycle } from "../lifecycle/tables.ts"
import { PoolDrivers, VolumeFormats } from "../ports/storage.ts"
import { DiskBus } from "./compute.ts"
import { NodeId, StorageDeviceId, StoragePoolId, StorageVolumeId } from "./ids.ts"
import { Bytes, Count, Name } from "./quantities.ts"

export const StorageDeviceSpec = Schema.Struct({
  name: Name,
  node: NodeId,
  path: Schema.String.check(Schema.isPattern(/^\/dev\//, { message: "Expected a device path under /dev/" })),
  medium: Schema.Literals(["hdd", "ssd", "nvme", "partition", "loop"]),
})
export const StorageDeviceMeta = Schema.Struct({
  state: Schema.Literals(["online", "offline", "failed"]),
  model: Schema.optionalKey(Schema.String),
  serial: Schema.optionalKey(Schema.String),
  rotational: Schema.optionalKey(Schema.Boolean),
  /** SMART's overall health, where the node can read it. */
  smart: Schema.optionalKey(Schema.Literals(["passed", "failed", "unknown"])),
  sizeBytes: Schema.optionalKey(Bytes),
})
export const StorageDeviceStats = Schema.Struct({ sizeBytes: Bytes, readBytes: Bytes, writeBytes: Bytes })

export const PoolCapabilitiesSchema = Schema.Struct({
  snapshot: Schema.Boolean,
  clone: Schema.Boolean,
  thin: Schema.Boolean,
  shared: Schema.Boolean,
  onlineResize: Schema.Boolean,
})

export const StoragePoolSpec = Schema.Struct({
  name: Name,
  driver: Schema.Literals(PoolDrivers),
  /** A local pool lives on one node; a shared pool is reachable from every node. */
  node: Schema.optionalKey(NodeId),
  shared: Schema.Boolean,
  devices: Schema.Array(StorageDeviceId),
  /** Where its volumes live on the node (default: the pool's id under the node's pool directory). */
  path: Schema.optionalKey(
    Schema.String.check(Schema.isPattern(/^\/[^\0]*$/, { message: "Expected an absolute path" })),
  ),
  /** How far the volumes' sizes may add up beyond the pool's capacity (1: not at all). */
  overcommit: Schema.optionalKey(Schema.Number.check(Schema.isBetween({ minimum: 1, maximum: 100 }))),
  /** What holds it, for a node whose pools go through libvirt: `fs`, a block device or image; `netfs`, `host:/export`. */
  source: Schema.optionalKey(Schema.String.check(Schema.isMinLength(1))),
})
export const StoragePoolMeta = Schema.Struct({
  state: Schema.Literals(storagePoolLifecycle.states),
  /** What the pool can do (from its type: `core/ports/storage.ts`). */
  capabilities: Schema.optionalKey(PoolCapabilitiesSchema),
  /** Where it is on the node. */
  path: Schema.optionalKey(Schema.String),
  /** Image files in it that no volume in the store names (left alone, for the operator). */
  orphans: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Why it is not active, when it is not. */
  detail: Schema.optionalKey(Schema.String),
})
export const StoragePoolStats = Schema.Struct({
  capacityBytes: Bytes,
  allocationBytes: Bytes,
  availableBytes: Bytes,
})

export const StorageVolumeSpec = Schema.Struct({
  name: Name,
  pool: StoragePoolId,
  sizeBytes: Bytes.check(Schema.isGreaterThan(0)),
  format: Schema.Literals(VolumeFormats),
  /** A volume cloned from another (of the same pool) keeps a reference to it. */
  source: Schema.optionalKey(StorageVolumeId),
  /** May be a disk of several systems at once (a cluster filesystem's volume); default: one. */
  shareable: Schema.optionalKey(Schema.Boolean),
})
export const StorageVolumeMeta = Schema.Struct({
  state: Schema.Literals(storageVolumeLifecycle.states),
  /** The path a hypervisor on the pool's node opens. */
  path: Schema.optionalKey(Schema.String),
  /** The size the guest sees now. */
  capacityBytes: Schema.optionalKey(Bytes),
  /** Why it is not available, when it is not. */
  detail: Schema.optionalKey(Schema.String),
})
export const StorageVolumeStats = Schema.Struct({ allocationBytes: Bytes, snapshots: Count })

/** A point-in-time copy of a volume's content, named after its id inside the volume (qcow2). */
export const StorageSnapshotSpec = Schema.Struct({
  name: Name,
  volume: StorageVolumeId,
})
export const StorageSnapshotMeta = Schema.Struct({
  state: Schema.Literals(["creating", "available", "failed"]),
  /** Why it is not available, when it is not. */
  detail: Schema.optionalKey(Schema.String),
})
export const StorageSnapshotStats = Schema.Struct({ sizeBytes: Bytes })

export const StorageShareSpec = Schema.Struct({
  name: Name,
  pool: StoragePoolId,
  protocol: Schema.Literals(["nfs", "smb", "iscsi"]),
  /** A directory inside the pool (made by its node); "" for the pool's own. */
  path: Schema.String.check(
    Schema.isPattern(/^(?!.*(^|\/)\.\.(\/|$))[^\0]*$/, {
      message: "Expected a path inside the pool (no '..')",
    }),
  ),
  /** Addresses, networks (CIDR) or host names that may mount it; nobody else can. */
  clients: Schema.Array(
    Schema.String.check(
      Schema.isPattern(/^[A-Za-z0-9.:*/_-]+$/, {
        message: "Expected an address, a network (CIDR) or a host name",
      }),
    ),
  ).check(Schema.isMinLength(1, { message: "Expected at least one client" })),
  access: Schema.optionalKey(Schema.Literals(["rw", "ro"])),
})
export const StorageShareMeta = Schema.Struct({
  state: Schema.Literals(["exported", "unexported", "failed"]),
  path: Schema.optionalKey(Schema.String),
  /** How a client names it: the NFSv4 path on the pool's node. */
  export: Schema.optionalKey(Schema.String),
  detail: Schema.optionalKey(Schema.String),
})
export const StorageShareStats = Schema.Struct({
  readBytes: Bytes,
  writeBytes: Bytes,
  clientsConnected: Count,
})

/** A disk asked for with a new system (`--disk`): a new volume in a pool, a volume, or a clone. */
export const SystemDiskRequest = Schema.Struct({
  pool: Schema.optionalKey(StoragePoolId),
  volume: Schema.optionalKey(StorageVolumeId),
  clone: Schema.optionalKey(StorageVolumeId),
  sizeBytes: Schema.optionalKey(Bytes),
  format: Schema.optionalKey(Schema.Literals(VolumeFormats)),
  bus: Schema.optionalKey(DiskBus),
  boot: Schema.optionalKey(Schema.Boolean),
})
