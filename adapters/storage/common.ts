/**
 * What the storage adapters share: a failure in the port's words, and a filesystem call whose
 * errors become `StorageError`s (ENOSPC: no-space; ENOENT: the pool is not there).
 */
import { mkdir, readdir, stat, statfs } from "node:fs/promises"
import { dirname } from "node:path"
import { Effect } from "effect"
import {
  type PoolDefinition,
  type PoolInfo,
  StorageError,
  type StorageErrorReason,
  type VolumeInfo,
} from "../../core/ports/storage.ts"

export const fail = (operation: string, target: string, reason: StorageErrorReason, detail: string) =>
  new StorageError({ reason, operation, target, detail })

export const io = <A>(operation: string, target: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (error) => {
      const text = error instanceof Error ? error.message : String(error)
      const code = (error as { code?: string }).code
      const reason: StorageErrorReason =
        code === "ENOSPC" ? "no-space" : code === "ENOENT" ? "no-such-pool" : "failed"
      return fail(operation, target, reason, text)
    },
  })

/** Whether something is at `path` (a failed stat, of any kind, is "no"). */
export const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  )

/**
 * `mkdir -p`, one level at a time. Node's recursive `mkdir` never returns for a path whose
 * parent exists but refuses children with ENOENT (anything under /proc: it loops), so a pool
 * with such a path would hang its node's storage calls for good; this fails with ENOENT instead.
 */
export const makeDirectory = async (path: string): Promise<void> => {
  try {
    await mkdir(path)
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === "EEXIST") {
      if ((await stat(path)).isDirectory()) return
      throw error
    }
    const parent = dirname(path)
    if (code !== "ENOENT" || parent === path) throw error
    await makeDirectory(parent)
    await mkdir(path).catch(async (again: { code?: string }) => {
      if (again.code !== "EEXIST" || !(await stat(path)).isDirectory()) throw again
    })
  }
}

/**
 * The pool operations every directory-backed adapter does alike: build (the directory made, then
 * its figures), figures (the filesystem's capacity and free space, the volumes' allocation), and
 * removal (refused while it holds volumes, naming them; `clear` then takes what is left).
 */
export const directoryPool = (
  requirePool: (operation: string, pool: PoolDefinition) => Effect.Effect<void, StorageError>,
  listVolumes: (pool: PoolDefinition) => Effect.Effect<ReadonlyArray<VolumeInfo>, StorageError>,
  clear: (pool: PoolDefinition) => Promise<void>,
) => {
  const poolInfo = (pool: PoolDefinition) =>
    Effect.gen(function* () {
      yield* requirePool("info", pool)
      const fs = yield* io("info", pool.id, () => statfs(pool.path))
      const volumes = yield* listVolumes(pool)
      return {
        capacityBytes: fs.blocks * fs.bsize,
        allocationBytes: volumes.reduce((sum, volume) => sum + volume.allocationBytes, 0),
        availableBytes: fs.bavail * fs.bsize,
      } satisfies PoolInfo
    })
  return {
    poolInfo,
    ensurePool: (pool: PoolDefinition) =>
      io("build", pool.id, () => makeDirectory(pool.path)).pipe(Effect.andThen(poolInfo(pool))),
    removePool: (pool: PoolDefinition) =>
      Effect.gen(function* () {
        yield* refuseWhileHolding(pool, yield* listVolumes(pool))
        yield* io("remove", pool.id, () => clear(pool))
      }),
  }
}

/**
 * The volumes with a half-made image in the pool's directory: what a create broken off by a
 * crash left where the adapters make an image before moving it into place
 * (`.<id>.<format>.partial`, a btrfs subvolume `.<id>.partial`).
 */
export const partialsIn = (pool: PoolDefinition) =>
  io("partials", pool.id, () => readdir(pool.path)).pipe(
    Effect.map((files) => {
      const volumes = new Set<string>()
      for (const file of files) {
        const match = /^\.(.+?)(?:\.(?:raw|qcow2))?\.partial$/.exec(file)
        if (match !== null) volumes.add(match[1]!)
      }
      return [...volumes].sort()
    }),
  )

/** A pool's removal refused while it holds volumes, naming them; none otherwise. */
export const refuseWhileHolding = (pool: PoolDefinition, volumes: ReadonlyArray<VolumeInfo>) =>
  volumes.length > 0
    ? Effect.fail(
        fail(
          "remove",
          pool.id,
          "invalid",
          `pool ${pool.id} still holds ${volumes.map((volume) => volume.id).join(", ")}`,
        ),
      )
    : Effect.void

/** A resize that would shrink a volume, refused; none otherwise. */
export const refuseShrink = (volume: string, capacityBytes: number, sizeBytes: number) =>
  sizeBytes < capacityBytes
    ? Effect.fail(
        fail(
          "resize",
          volume,
          "invalid",
          `volume ${volume} is ${capacityBytes} bytes: it can grow, not shrink to ${sizeBytes}`,
        ),
      )
    : Effect.void
