/**
 * Branded identifiers, one per object kind, so a `SystemId` can never be passed where a
 * `NodeId` is expected. Every id is a short lower-case name: letters, digits, `.`, `_`, `-`.
 */
import { Schema } from "effect"

const idPattern = /^[a-z0-9][a-z0-9._-]{0,62}$/

const IdString = Schema.String.check(
  Schema.isPattern(idPattern, {
    message: "Expected an id: 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
  }),
)

export const NodeId = IdString.pipe(Schema.brand("NodeId"))
export type NodeId = typeof NodeId.Type
export const SystemId = IdString.pipe(Schema.brand("SystemId"))
export type SystemId = typeof SystemId.Type
export const StorageDeviceId = IdString.pipe(Schema.brand("StorageDeviceId"))
export type StorageDeviceId = typeof StorageDeviceId.Type
export const StoragePoolId = IdString.pipe(Schema.brand("StoragePoolId"))
export type StoragePoolId = typeof StoragePoolId.Type
export const StorageVolumeId = IdString.pipe(Schema.brand("StorageVolumeId"))
export type StorageVolumeId = typeof StorageVolumeId.Type
export const StorageSnapshotId = IdString.pipe(Schema.brand("StorageSnapshotId"))
export type StorageSnapshotId = typeof StorageSnapshotId.Type
export const StorageShareId = IdString.pipe(Schema.brand("StorageShareId"))
export type StorageShareId = typeof StorageShareId.Type
export const NetworkId = IdString.pipe(Schema.brand("NetworkId"))
export type NetworkId = typeof NetworkId.Type
export const ServiceId = IdString.pipe(Schema.brand("ServiceId"))
export type ServiceId = typeof ServiceId.Type
export const AcceleratorId = IdString.pipe(Schema.brand("AcceleratorId"))
export type AcceleratorId = typeof AcceleratorId.Type
export const EndpointPoolId = IdString.pipe(Schema.brand("EndpointPoolId"))
export type EndpointPoolId = typeof EndpointPoolId.Type
export const TaskId = IdString.pipe(Schema.brand("TaskId"))
export type TaskId = typeof TaskId.Type
export const AlarmId = IdString.pipe(Schema.brand("AlarmId"))
export type AlarmId = typeof AlarmId.Type
export const ProjectId = IdString.pipe(Schema.brand("ProjectId"))
export type ProjectId = typeof ProjectId.Type
export const ApiKeyId = IdString.pipe(Schema.brand("ApiKeyId"))
export type ApiKeyId = typeof ApiKeyId.Type
