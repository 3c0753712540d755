/**
 * What the API refuses about pools and volumes before it writes anything, from what its node's
 * store holds: a volume larger than its pool has left to give (the pool and both figures named),
 * a volume that shrinks or moves to another pool, a clone of a volume in another pool, a pool
 * moved or retyped under its volumes, a pool deleted while it holds volumes (listed), a volume
 * deleted while a system names it as a disk (listed). A refusal changes nothing.
 *
 * The space check uses the pool's last figures, which its node publishes; a pool with none yet
 * is admitted, and its node (`storage.ts`), the one authority on its space, decides. Two clients
 * racing through two nodes can both pass here: the node then makes one and fails the other.
 */
import type { SystemSpecValue } from "../hypervisor/hypervisor.ts"
import type { PoolInfo } from "../ports/storage.ts"
import { poolFormats, whyNoSnapshots } from "../ports/storage.ts"
import {
  doesNotFit,
  type ShareSpecValue,
  type SnapshotSpecValue,
  type StoragePoolSpecValue,
  type StorageTaskValue,
  type StorageVolumeSpecValue,
} from "./storage.ts"

export interface StorageRefusal {
  readonly reason: "no-such-pool" | "no-space" | "invalid" | "in-use"
  readonly message: string
}

export interface StorageReader {
  readonly pool: (id: string) => StoragePoolSpecValue | undefined
  readonly volume: (id: string) => StorageVolumeSpecValue | undefined
  readonly volumes: () => ReadonlyArray<{ readonly id: string; readonly spec: StorageVolumeSpecValue }>
  readonly systems: () => ReadonlyArray<{ readonly id: string; readonly spec: SystemSpecValue }>
  /** The pool's figures as its node last published them. */
  readonly poolStats: (id: string) => PoolInfo | undefined
  /** Every share (absent: a reader that does not need them). */
  readonly shares?: () => ReadonlyArray<{ readonly id: string; readonly spec: ShareSpecValue }>
  /** Every snapshot (absent: a reader that does not need them). */
  readonly snapshots?: () => ReadonlyArray<{ readonly id: string; readonly spec: SnapshotSpecValue }>
}

const refuse = (reason: StorageRefusal["reason"], message: string): StorageRefusal => ({ reason, message })

export const admitVolume = (
  store: StorageReader,
  id: string,
  spec: StorageVolumeSpecValue,
): StorageRefusal | undefined => {
  const pool = store.pool(spec.pool)
  if (pool === undefined) return refuse("no-such-pool", `storage-volume ${id}: there is no pool ${spec.pool}`)
  if (!poolFormats[pool.driver].holds.includes(spec.format))
    return refuse(
      "invalid",
      `storage-volume ${id}: a ${pool.driver} pool holds ${poolFormats[pool.driver].holds.join(", ")} volumes, not ${spec.format}`,
    )
  const before = store.volume(id)
  if (before !== undefined && before.pool !== spec.pool)
    return refuse(
      "invalid",
      `storage-volume ${id} is in pool ${before.pool}: a volume cannot move to ${spec.pool}`,
    )
  if (before !== undefined && spec.sizeBytes < before.sizeBytes)
    return refuse(
      "invalid",
      `storage-volume ${id} is ${before.sizeBytes} bytes: it can grow, not shrink to ${spec.sizeBytes}`,
    )
  if (before !== undefined && before.format !== spec.format)
    return refuse(
      "invalid",
      `storage-volume ${id} is ${before.format}: its format cannot change to ${spec.format}`,
    )
  if (spec.source !== undefined && before === undefined) {
    const source = store.volume(spec.source)
    if (source === undefined)
      return refuse("invalid", `storage-volume ${id}: there is no volume ${spec.source} to clone`)
    if (source.pool !== spec.pool)
      return refuse(
        "invalid",
        `storage-volume ${id}: ${spec.source} is in pool ${source.pool}; a clone is made in its source's pool`,
      )
    if (source.sizeBytes > spec.sizeBytes)
      return refuse(
        "invalid",
        `storage-volume ${id}: a clone is at least as large as its source (${spec.source}: ${source.sizeBytes} bytes), not ${spec.sizeBytes}`,
      )
  }
  const stats = store.poolStats(spec.pool)
  if (stats === undefined) return undefined
  const others = store
    .volumes()
    .filter((volume) => volume.spec.pool === spec.pool && volume.id !== id)
    .reduce((sum, volume) => sum + volume.spec.sizeBytes, 0)
  const why = doesNotFit(
    { id: spec.pool, capacityBytes: stats.capacityBytes, overcommit: pool.overcommit ?? 1 },
    others,
    { id, sizeBytes: spec.sizeBytes },
  )
  return why === undefined ? undefined : refuse("no-space", why)
}

export const admitPool = (
  store: StorageReader,
  id: string,
  spec: StoragePoolSpecValue,
): StorageRefusal | undefined => {
  const before = store.pool(id)
  const held = store.volumes().filter((volume) => volume.spec.pool === id)
  if (before === undefined || held.length === 0) return undefined
  const moved =
    before.driver !== spec.driver ||
    before.node !== spec.node ||
    before.path !== spec.path ||
    before.source !== spec.source ||
    before.shared !== spec.shared
  return moved
    ? refuse(
        "in-use",
        `storage-pool ${id} holds ${held.map((volume) => volume.id).join(", ")}: its driver, node, path, source and sharing cannot change under them`,
      )
    : undefined
}

export const admitDelete = (store: StorageReader, kind: string, id: string): StorageRefusal | undefined => {
  if (kind === "storage-pool") {
    const shared = (store.shares?.() ?? []).filter((share) => share.spec.pool === id)
    if (shared.length > 0)
      return refuse(
        "in-use",
        `storage-pool ${id} is shared as ${shared.map((share) => share.id).join(", ")}; delete the share(s) first`,
      )
    const held = store.volumes().filter((volume) => volume.spec.pool === id)
    return held.length === 0
      ? undefined
      : refuse(
          "in-use",
          `storage-pool ${id} holds ${held.length} volume(s): ${held.map((volume) => volume.id).join(", ")}; delete them first`,
        )
  }
  if (kind === "storage-volume") {
    const users = store.systems().filter((system) => system.spec.disks.some((disk) => disk.volume === id))
    if (users.length > 0)
      return refuse(
        "in-use",
        `storage-volume ${id} is a disk of ${users.map((system) => system.id).join(", ")}; detach it first`,
      )
    const snapshots = (store.snapshots?.() ?? []).filter((snapshot) => snapshot.spec.volume === id)
    return snapshots.length === 0
      ? undefined
      : refuse(
          "in-use",
          `storage-volume ${id} has snapshot(s) ${snapshots.map((snapshot) => snapshot.id).join(", ")}; delete them first`,
        )
  }
  return undefined
}

/** A snapshot is of a qcow2 volume in a pool that can snapshot (its capabilities say so), and stays on it. */
export const admitSnapshot = (
  store: StorageReader,
  id: string,
  spec: SnapshotSpecValue,
): StorageRefusal | undefined => {
  const before = (store.snapshots?.() ?? []).find((snapshot) => snapshot.id === id)
  if (before !== undefined && before.spec.volume !== spec.volume)
    return refuse(
      "invalid",
      `storage-snapshot ${id} is of ${before.spec.volume}: it cannot move to ${spec.volume}`,
    )
  const volume = store.volume(spec.volume)
  if (volume === undefined)
    return refuse("invalid", `storage-snapshot ${id}: there is no volume ${spec.volume}`)
  const pool = store.pool(volume.pool)
  if (pool === undefined)
    return refuse("no-such-pool", `storage-snapshot ${id}: there is no pool ${volume.pool}`)
  const cannot = whyNoSnapshots(pool.driver, spec.volume, volume.format)
  return cannot === undefined ? undefined : refuse("invalid", `storage-snapshot ${id}: ${cannot}`)
}

/**
 * A revert of a volume to a snapshot, as a task for the node of the volume's pool, or why not:
 * the snapshot and its volume exist, the pool lives on one node, and every system that has the
 * volume as a disk is stopped (a revert under a running guest would corrupt what it sees).
 */
export const planRevert = (
  store: StorageReader,
  snapshot: string,
  nowMs: number,
): { readonly owner: string; readonly task: StorageTaskValue } | StorageRefusal => {
  const found = (store.snapshots?.() ?? []).find((each) => each.id === snapshot)
  if (found === undefined) return refuse("invalid", `there is no storage-snapshot ${snapshot}`)
  const volume = store.volume(found.spec.volume)
  if (volume === undefined)
    return refuse("invalid", `storage-snapshot ${snapshot}: there is no volume ${found.spec.volume}`)
  const pool = store.pool(volume.pool)
  if (pool?.node === undefined || pool.shared)
    return refuse(
      "invalid",
      `storage-snapshot ${snapshot}: pool ${volume.pool} has no node of its own to revert on`,
    )
  const running = store
    .systems()
    .filter(
      (system) =>
        system.spec.desired !== "stopped" &&
        system.spec.disks.some((disk) => disk.volume === found.spec.volume),
    )
  if (running.length > 0)
    return refuse(
      "in-use",
      `storage-volume ${found.spec.volume} is a disk of ${running.map((system) => system.id).join(", ")}, which is not stopped; stop it before reverting`,
    )
  return {
    owner: pool.node,
    task: {
      operation: "storage.revert",
      target: { kind: "storage-snapshot", id: snapshot },
      owner: pool.node,
      parameters: { volume: found.spec.volume },
      state: "queued",
      log: [{ atMs: nowMs, line: `revert ${found.spec.volume} to ${snapshot} requested` }],
      createdMs: nowMs,
    },
  }
}

/** A share is NFS (the one protocol served today) of a pool that lives on one node. */
export const admitShare = (
  store: StorageReader,
  id: string,
  spec: ShareSpecValue,
): StorageRefusal | undefined => {
  if (spec.protocol !== "nfs")
    return refuse("invalid", `storage-share ${id}: ${spec.protocol} is not served yet; nfs is`)
  const pool = store.pool(spec.pool)
  if (pool === undefined) return refuse("no-such-pool", `storage-share ${id}: there is no pool ${spec.pool}`)
  if (pool.node === undefined || pool.shared)
    return refuse("invalid", `storage-share ${id}: pool ${spec.pool} has no node of its own to serve it`)
  return undefined
}
