/**
 * The storage driver port: what the storage service asks of one host's storage — pools, the
 * volumes carved from them, and their snapshots. Adapters: a directory pool on the host's
 * filesystem with `qemu-img` (`adapters/storage/dir.ts`), and the simulator's deterministic
 * driver with faults (`sim/storage.ts`). Every failure is a `StorageError` whose `reason` says
 * what kind it was, so the core decides without reading messages.
 *
 * What each pool type can do is data (`poolCapabilities`), not code paths: the API, the CLI and
 * the scheduler read the same table the drivers were written against.
 */
import { Context, type Effect, Schema } from "effect"

export const PoolDrivers = ["dir", "btrfs", "fs", "netfs"] as const
export type PoolDriver = (typeof PoolDrivers)[number]

export const VolumeFormats = ["raw", "qcow2"] as const
export type VolumeFormat = (typeof VolumeFormats)[number]

export interface PoolCapabilities {
  /** Point-in-time copies of a volume that can be reverted to. */
  readonly snapshot: boolean
  /** A new volume from an existing one without copying all of it first. */
  readonly clone: boolean
  /** Volumes take space as they are written, not when they are made. */
  readonly thin: boolean
  /** One pool reachable from every node: its systems can fail over with their disks. */
  readonly shared: boolean
  /** A volume can grow while a system uses it. */
  readonly onlineResize: boolean
}

/** What each pool type can do (qcow2 volumes in a dir pool snapshot and clone through backing files). */
export const poolCapabilities: Readonly<Record<PoolDriver, PoolCapabilities>> = {
  dir: { snapshot: true, clone: true, thin: true, shared: false, onlineResize: true },
  fs: { snapshot: true, clone: true, thin: true, shared: false, onlineResize: true },
  netfs: { snapshot: true, clone: true, thin: true, shared: true, onlineResize: true },
  btrfs: { snapshot: true, clone: true, thin: true, shared: false, onlineResize: true },
}

/** The formats each pool type holds, and those of them it can snapshot (btrfs: the filesystem does). */
export const poolFormats: Readonly<
  Record<
    PoolDriver,
    { readonly holds: ReadonlyArray<VolumeFormat>; readonly snapshots: ReadonlyArray<VolumeFormat> }
  >
> = {
  dir: { holds: ["raw", "qcow2"], snapshots: ["qcow2"] },
  fs: { holds: ["raw", "qcow2"], snapshots: ["qcow2"] },
  netfs: { holds: ["raw", "qcow2"], snapshots: ["qcow2"] },
  btrfs: { holds: ["raw"], snapshots: ["raw"] },
}

/** Why a volume of this format in a pool of this type cannot have snapshots, or undefined if it can. */
export const whyNoSnapshots = (
  driver: PoolDriver,
  volume: string,
  format: VolumeFormat,
): string | undefined =>
  !poolCapabilities[driver].snapshot
    ? `pool type ${driver} cannot snapshot (its capabilities say snapshot: false)`
    : poolFormats[driver].snapshots.includes(format)
      ? undefined
      : `volume ${volume} is ${format}: a ${driver} pool snapshots ${poolFormats[driver].snapshots.join(", ")} volumes only`

/** A block device of the host, as discovery reports it (`lsblk`, and `smartctl` where it can read one). */
export interface DeviceInfo {
  /** The kernel's name, e.g. `sda`, `nvme0n1`, `loop3`. */
  readonly name: string
  readonly path: string
  readonly sizeBytes: number
  readonly type: "disk" | "part" | "loop"
  readonly rotational: boolean
  readonly model?: string
  readonly serial?: string
  /** SMART's overall health: unknown where the device has none or smartctl cannot read it. */
  readonly smart: "passed" | "failed" | "unknown"
}

/** A pool as a driver needs it. */
export interface PoolDefinition {
  /** The pool's id in the CDB. */
  readonly id: string
  readonly driver: PoolDriver
  /** Where its volumes live on this host. */
  readonly path: string
  /** What holds it: for `fs`, the block device (or image) with its filesystem; for `netfs`, `host:/export`. */
  readonly source?: string
}

export interface PoolInfo {
  readonly capacityBytes: number
  /** Space its volumes take now. */
  readonly allocationBytes: number
  readonly availableBytes: number
}

export interface VolumeDefinition {
  /** The volume's id in the CDB; its file in the pool is named after it. */
  readonly id: string
  readonly sizeBytes: number
  readonly format: VolumeFormat
  /** Clone this volume (of the same pool) instead of making an empty one. */
  readonly cloneOf?: string
}

export interface VolumeInfo {
  readonly id: string
  /** The path a hypervisor opens. */
  readonly path: string
  readonly format: VolumeFormat
  /** The size the guest sees. */
  readonly capacityBytes: number
  /** The space it takes in its pool. */
  readonly allocationBytes: number
  /** The names of its snapshots (absent: a format without any). */
  readonly snapshots?: ReadonlyArray<string>
}

export interface SnapshotInfo {
  readonly name: string
  /** The guest-visible size the volume had when the snapshot was taken. */
  readonly sizeBytes: number
}

export const StorageErrorReasons = [
  /** The pool is not there (or not built) on this host. */
  "no-such-pool",
  "no-such-volume",
  "no-such-snapshot",
  /** Not enough free space in the pool. */
  "no-space",
  /** A volume or snapshot of that name is there already. */
  "exists",
  /** This pool type cannot do this (see `poolCapabilities`), or the host lacks the tool. */
  "unsupported",
  /** The request makes no sense (shrinking a volume, a bad path). */
  "invalid",
  /** The driver failed to carry out a valid request. */
  "failed",
] as const
export type StorageErrorReason = (typeof StorageErrorReasons)[number]

export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  reason: Schema.Literals(StorageErrorReasons),
  operation: Schema.String,
  /** The pool, volume or snapshot it was about. */
  target: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.operation} ${this.target}: ${this.reason}: ${this.detail}`
  }
}

export class Storage extends Context.Service<
  Storage,
  {
    /** Makes the pool ready on this host (a directory, a mounted filesystem); nothing if it is. */
    readonly ensurePool: (pool: PoolDefinition) => Effect.Effect<PoolInfo, StorageError>
    readonly poolInfo: (pool: PoolDefinition) => Effect.Effect<PoolInfo, StorageError>
    /** Removes the pool from this host; refused while it holds volumes. */
    readonly removePool: (pool: PoolDefinition) => Effect.Effect<void, StorageError>
    readonly listVolumes: (pool: PoolDefinition) => Effect.Effect<ReadonlyArray<VolumeInfo>, StorageError>
    /**
     * The volumes whose image a create left half-made in the pool (it is made aside and moved
     * into place when whole: a node that died mid-create leaves the part it had written).
     */
    readonly listPartials: (pool: PoolDefinition) => Effect.Effect<ReadonlyArray<string>, StorageError>
    /** Removes what a broken-off create of this volume left; nothing if there is nothing. */
    readonly discardPartial: (pool: PoolDefinition, volume: string) => Effect.Effect<void, StorageError>
    readonly createVolume: (
      pool: PoolDefinition,
      volume: VolumeDefinition,
    ) => Effect.Effect<VolumeInfo, StorageError>
    /** Grows a volume to `sizeBytes` (never shrinks it). */
    readonly resizeVolume: (
      pool: PoolDefinition,
      volume: string,
      sizeBytes: number,
    ) => Effect.Effect<VolumeInfo, StorageError>
    readonly deleteVolume: (pool: PoolDefinition, volume: string) => Effect.Effect<void, StorageError>
    readonly createSnapshot: (
      pool: PoolDefinition,
      volume: string,
      snapshot: string,
    ) => Effect.Effect<void, StorageError>
    readonly listSnapshots: (
      pool: PoolDefinition,
      volume: string,
    ) => Effect.Effect<ReadonlyArray<SnapshotInfo>, StorageError>
    /** Sets the volume's content back to the snapshot's (the volume must not be in use). */
    readonly revertSnapshot: (
      pool: PoolDefinition,
      volume: string,
      snapshot: string,
    ) => Effect.Effect<void, StorageError>
    readonly deleteSnapshot: (
      pool: PoolDefinition,
      volume: string,
      snapshot: string,
    ) => Effect.Effect<void, StorageError>
  }
>()("acp/core/ports/Storage") {}

/** A share as the share server needs it: a directory exported to the named clients. */
export interface ShareDefinition {
  /** The share's id in the CDB; clients mount it as `/<id>` (NFSv4's pseudo path). */
  readonly id: string
  /** The directory on this host. */
  readonly path: string
  /** Addresses or networks (CIDR) that may mount it; nobody else can. */
  readonly clients: ReadonlyArray<string>
  readonly access: "rw" | "ro"
}

/** The NFS server of a node: it serves exactly the shares it was last given. */
export class ShareServer extends Context.Service<
  ShareServer,
  {
    /** Serves these shares (and no others), starting or reloading the server as needed. */
    readonly apply: (shares: ReadonlyArray<ShareDefinition>) => Effect.Effect<void, StorageError>
    /** Stops serving every share (the server process is gone). */
    readonly stop: Effect.Effect<void, StorageError>
  }
>()("acp/core/ports/ShareServer") {}
