/**
 * The registry of object kinds: for each, its branded id, the schema of its persistent `spec`,
 * and the shapes of its per-node `meta` (state) and `stats` (figures), plus its lifecycle where
 * it has one. The CDB stores any kind; this registry is how services, the API and the CLI
 * validate what goes in.
 */
import type { Schema } from "effect"
import type { Lifecycle } from "../lifecycle/machine.ts"
import {
  acceleratorLifecycle,
  alarmLifecycle,
  networkLifecycle,
  nodeLifecycle,
  serviceLifecycle,
  storagePoolLifecycle,
  storageVolumeLifecycle,
  systemLifecycle,
  taskLifecycle,
} from "../lifecycle/tables.ts"
import { ApiKeyMeta, ApiKeySpec, ApiKeyStats, ProjectMeta, ProjectSpec, ProjectStats } from "./access.ts"
import { NodeMeta, NodeSpec, NodeStats, SystemMeta, SystemSpec, SystemStats } from "./compute.ts"
import * as Ids from "./ids.ts"
import { NetworkMeta, NetworkSpec, NetworkStats } from "./network.ts"
import {
  AlarmMeta,
  AlarmSpec,
  AlarmStats,
  EndpointPoolMeta,
  EndpointPoolSpec,
  EndpointPoolStats,
  TaskMeta,
  TaskSpec,
  TaskStats,
} from "./operations.ts"
import {
  AcceleratorMeta,
  AcceleratorSpec,
  AcceleratorStats,
  ServiceMeta,
  ServiceSpec,
  ServiceStats,
} from "./services.ts"
import {
  StorageDeviceMeta,
  StorageDeviceSpec,
  StorageDeviceStats,
  StoragePoolMeta,
  StoragePoolSpec,
  StoragePoolStats,
  StorageShareMeta,
  StorageShareSpec,
  StorageShareStats,
  StorageSnapshotMeta,
  StorageSnapshotSpec,
  StorageSnapshotStats,
  StorageVolumeMeta,
  StorageVolumeSpec,
  StorageVolumeStats,
} from "./storage.ts"

export interface KindDefinition {
  readonly id: Schema.Codec<string, string>
  readonly spec: Schema.Codec<unknown, unknown>
  readonly meta: Schema.Codec<unknown, unknown>
  readonly stats: Schema.Codec<unknown, unknown>
  /** Present for kinds whose state follows a lifecycle table. */
  readonly lifecycle?: Lifecycle<string, string>
  readonly description: string
}

const kind = <const K extends KindDefinition>(definition: K): K => definition

const kindDefinitions = {
  node: kind({
    id: Ids.NodeId,
    spec: NodeSpec,
    meta: NodeMeta,
    stats: NodeStats,
    lifecycle: nodeLifecycle,
    description: "a host that runs ACP",
  }),
  system: kind({
    id: Ids.SystemId,
    spec: SystemSpec,
    meta: SystemMeta,
    stats: SystemStats,
    lifecycle: systemLifecycle,
    description: "a virtual machine",
  }),
  "storage-device": kind({
    id: Ids.StorageDeviceId,
    spec: StorageDeviceSpec,
    meta: StorageDeviceMeta,
    stats: StorageDeviceStats,
    description: "a block device on one node",
  }),
  "storage-pool": kind({
    id: Ids.StoragePoolId,
    spec: StoragePoolSpec,
    meta: StoragePoolMeta,
    stats: StoragePoolStats,
    lifecycle: storagePoolLifecycle,
    description: "a pool of storage that volumes are carved from",
  }),
  "storage-volume": kind({
    id: Ids.StorageVolumeId,
    spec: StorageVolumeSpec,
    meta: StorageVolumeMeta,
    stats: StorageVolumeStats,
    lifecycle: storageVolumeLifecycle,
    description: "a disk image in a pool",
  }),
  "storage-snapshot": kind({
    id: Ids.StorageSnapshotId,
    spec: StorageSnapshotSpec,
    meta: StorageSnapshotMeta,
    stats: StorageSnapshotStats,
    description: "a snapshot of a volume's content, to revert to",
  }),
  "storage-share": kind({
    id: Ids.StorageShareId,
    spec: StorageShareSpec,
    meta: StorageShareMeta,
    stats: StorageShareStats,
    description: "a pool exported over NFS, SMB or iSCSI",
  }),
  network: kind({
    id: Ids.NetworkId,
    spec: NetworkSpec,
    meta: NetworkMeta,
    stats: NetworkStats,
    lifecycle: networkLifecycle,
    description: "a bridge, VLAN, trunk, VXLAN segment or VPP device",
  }),
  service: kind({
    id: Ids.ServiceId,
    spec: ServiceSpec,
    meta: ServiceMeta,
    stats: ServiceStats,
    lifecycle: serviceLifecycle,
    description: "a service run by the framework on one node",
  }),
  accelerator: kind({
    id: Ids.AcceleratorId,
    spec: AcceleratorSpec,
    meta: AcceleratorMeta,
    stats: AcceleratorStats,
    lifecycle: acceleratorLifecycle,
    description: "a GPU, FPGA or other accelerator found on a node",
  }),
  "endpoint-pool": kind({
    id: Ids.EndpointPoolId,
    spec: EndpointPoolSpec,
    meta: EndpointPoolMeta,
    stats: EndpointPoolStats,
    description: "health-checked endpoints answered for by the DNS appliance",
  }),
  task: kind({
    id: Ids.TaskId,
    spec: TaskSpec,
    meta: TaskMeta,
    stats: TaskStats,
    lifecycle: taskLifecycle,
    description: "a long request and its log",
  }),
  alarm: kind({
    id: Ids.AlarmId,
    spec: AlarmSpec,
    meta: AlarmMeta,
    stats: AlarmStats,
    lifecycle: alarmLifecycle,
    description: "a condition raised by the primary monitor",
  }),
  project: kind({
    id: Ids.ProjectId,
    spec: ProjectSpec,
    meta: ProjectMeta,
    stats: ProjectStats,
    description: "an owner of systems, networks and volumes, with quotas",
  }),
  "api-key": kind({
    id: Ids.ApiKeyId,
    spec: ApiKeySpec,
    meta: ApiKeyMeta,
    stats: ApiKeyStats,
    description: "a hashed key that authorises requests to the agent",
  }),
} as const

export type ObjectKind = keyof typeof kindDefinitions
/** Each kind's definition; import the kind's own schemas (e.g. `SystemSpec`) where its precise type matters. */
export const kinds: { readonly [K in ObjectKind]: KindDefinition } = kindDefinitions
export const objectKinds = Object.keys(kinds) as ReadonlyArray<ObjectKind>

export const isObjectKind = (value: string): value is ObjectKind => Object.hasOwn(kinds, value)
