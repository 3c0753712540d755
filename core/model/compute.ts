/** Nodes (hosts) and systems (virtual machines). */
import { Schema } from "effect"
import { nodeLifecycle, systemLifecycle } from "../lifecycle/tables.ts"
import { NetworkId, NodeId, ProjectId, StorageVolumeId, SystemId } from "./ids.ts"
import { Bytes, Count, IpAddress, Labels, Millis, Name, PercentHundredths } from "./quantities.ts"

export const NodeRole = Schema.Literals(["compute", "storage", "network", "management"])

export const NodeSpec = Schema.Struct({
  name: Name,
  address: IpAddress,
  /** The L2 domain whose multicast group this node joins. */
  domain: Name,
  /** Whether this node counts towards the majority for cluster-wide decisions. */
  voting: Schema.Boolean,
  roles: Schema.Array(NodeRole),
  labels: Labels,
})
export const NodeMeta = Schema.Struct({
  state: Schema.Literals(nodeLifecycle.states),
  lastSeenMs: Millis,
  version: Schema.String,
})
export const NodeStats = Schema.Struct({
  cpuCount: Count,
  cpuUsage: PercentHundredths,
  memoryTotalBytes: Bytes,
  memoryUsedBytes: Bytes,
  load1Hundredths: Count,
  uptimeMs: Millis,
})

export const DiskBus = Schema.Literals(["virtio", "scsi", "sata", "ide"])
export const SystemDisk = Schema.Struct({ volume: StorageVolumeId, bus: DiskBus, boot: Schema.Boolean })
export const SystemNic = Schema.Struct({
  network: NetworkId,
  mac: Schema.optionalKey(
    Schema.String.check(
      Schema.isPattern(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, {
        message: "Expected a MAC address such as 52:54:00:12:34:56",
      }),
    ),
  ),
  model: Schema.Literals(["virtio", "e1000"]),
})
export const Placement = Schema.Struct({
  /** Systems this one must share a node with. */
  affinity: Schema.Array(SystemId),
  /** Systems this one must never share a node with. */
  antiAffinity: Schema.Array(SystemId),
})

export const SystemSpec = Schema.Struct({
  name: Name,
  project: Schema.optionalKey(ProjectId),
  /** The node chosen to run the system; absent until the scheduler places it. */
  node: Schema.optionalKey(NodeId),
  cpus: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1024 })),
  memoryMiB: Schema.Int.check(Schema.isBetween({ minimum: 16, maximum: 16 * 1024 * 1024 })),
  disks: Schema.Array(SystemDisk),
  nics: Schema.Array(SystemNic),
  /** Restart on another node when its node is fenced. */
  ha: Schema.Boolean,
  desired: Schema.Literals(["running", "stopped", "paused"]),
  placement: Placement,
  /**
   * Raised each time the system is placed again (moved by HA or a migration, released from a
   * hold): a node that stopped it while fenced starts it again only for a newer epoch.
   */
  epoch: Schema.optionalKey(Count),
})
export const SystemMeta = Schema.Struct({
  state: Schema.Literals(systemLifecycle.states),
  sinceMs: Millis,
  /** The hypervisor's own name for the domain, e.g. libvirt's. */
  domainName: Schema.optionalKey(Schema.String),
  /** The spec epoch this node acted on. */
  epoch: Schema.optionalKey(Count),
  /** Stopped by fencing (or held at boot) until the primary places it again. */
  held: Schema.optionalKey(Schema.Boolean),
  /**
   * An HA system this node has stopped and undefined for a cold migration: the primary places it
   * on this node next (placement of an HA system is the primary's decision alone).
   */
  handoverTo: Schema.optionalKey(NodeId),
  /** Why the system is not in its desired state, when it is not. */
  detail: Schema.optionalKey(Schema.String),
  /** The disks its domain has on this node (guest device and the file behind it). */
  disks: Schema.optionalKey(Schema.Array(Schema.Struct({ target: Schema.String, path: Schema.String }))),
})
export const SystemStats = Schema.Struct({
  cpuUsage: PercentHundredths,
  memoryUsedBytes: Bytes,
  diskReadBytes: Bytes,
  diskWriteBytes: Bytes,
  netRxBytes: Bytes,
  netTxBytes: Bytes,
})
