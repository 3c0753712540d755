/** Storage devices, pools, volumes and shares (seed 000's Storage object with its sub-types). */
import { Schema } from "effect"
import { storagePoolLifecycle, storageVolumeLifecycle } from "../lifecycle/tables.ts"
import { NodeId, StorageDeviceId, StoragePoolId, StorageVolumeId } from "./ids.ts"
import { Bytes, Count, Name } from "./quantities.ts"

export const StorageDeviceSpec = Schema.Struct({
  name: Name,
  node: NodeId,
  path: Schema.String.check(Schema.isPattern(/^\/dev\//, { message: "Expected a device path under /dev/" })),
  medium: Schema.Literals(["hdd", "ssd", "nvme", "partition", "loop"]),
})
export const StorageDeviceMeta = Schema.Struct({ state: Schema.Literals(["online", "offline", "failed"]) })
export const StorageDeviceStats = Schema.Struct({ sizeBytes: Bytes, readBytes: Bytes, writeBytes: Bytes })

export const StoragePoolSpec = Schema.Struct({
  name: Name,
  driver: Schema.Literals(["dir", "lvm", "zfs", "nfs", "ceph"]),
  /** A local pool lives on one node; a shared pool is reachable from every node. */
  node: Schema.optionalKey(NodeId),
  shared: Schema.Boolean,
  devices: Schema.Array(StorageDeviceId),
  path: Schema.optionalKey(Schema.String),
})
export const StoragePoolMeta = Schema.Struct({ state: Schema.Literals(storagePoolLifecycle.states) })
export const StoragePoolStats = Schema.Struct({
  capacityBytes: Bytes,
  allocationBytes: Bytes,
  availableBytes: Bytes,
})

export const StorageVolumeSpec = Schema.Struct({
  name: Name,
  pool: StoragePoolId,
  sizeBytes: Bytes.check(Schema.isGreaterThan(0)),
  format: Schema.Literals(["raw", "qcow2"]),
  /** A volume cloned from a snapshot of another keeps a reference to it. */
  source: Schema.optionalKey(StorageVolumeId),
})
export const StorageVolumeMeta = Schema.Struct({ state: Schema.Literals(storageVolumeLifecycle.states) })
export const StorageVolumeStats = Schema.Struct({ allocationBytes: Bytes, snapshots: Count })

export const StorageShareSpec = Schema.Struct({
  name: Name,
  pool: StoragePoolId,
  protocol: Schema.Literals(["nfs", "smb", "iscsi"]),
  path: Schema.String,
  clients: Schema.Array(Schema.String),
})
export const StorageShareMeta = Schema.Struct({
  state: Schema.Literals(["exported", "unexported", "failed"]),
})
export const StorageShareStats = Schema.Struct({
  readBytes: Bytes,
  writeBytes: Bytes,
  clientsConnected: Count,
})
