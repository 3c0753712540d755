/**
 * The storage port on a btrfs filesystem (a `btrfs` pool, as Incus's): each volume is a
 * subvolume `<pool>/<volume>` holding one raw image, `disk.raw` (sparse: thin); a clone is a
 * writable snapshot of its source's subvolume (copy-on-write, instant, whatever the size); a
 * snapshot is a read-only one under `<pool>/.snapshots/<volume>/<snapshot>`; a revert reflinks the
 * snapshot's image into the volume and renames it over `disk.raw` (atomic: a crash leaves the old
 * content or the snapshot's, never half of each). Needs `btrfs-progs`; the pool's directory must
 * be on btrfs (here: a loop-mounted image), which `ensurePool` checks and names when it is not.
 *
 * As in the dir pool, a volume appears whole or not at all: it is made as a hidden partial
 * subvolume and renamed into place.
 */
import { execFile } from "node:child_process"
import { readdir, rename, rm, stat, statfs, truncate, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import {
  type PoolDefinition,
  Storage,
  type StorageError,
  type StorageErrorReason,
  type VolumeInfo,
} from "../../core/ports/storage.ts"
import { directoryPool, exists, fail, io, makeDirectory, partialsIn, refuseShrink } from "./common.ts"

/** `statfs`'s f_type for btrfs (linux/magic.h). */
const btrfsMagic = 0x9123683e
const image = "disk.raw"

const reasonOf = (text: string): StorageErrorReason =>
  /No space left on device|ENOSPC/i.test(text) ? "no-space" : "failed"

/** A command's failure in the port's words; a missing program is `unsupported`, naming its package. */
const run = (program: string, pkg: string, operation: string, target: string, args: ReadonlyArray<string>) =>
  Effect.callback<string, StorageError>((resume) => {
    execFile(program, args, { maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) return resume(Effect.succeed(stdout))
      const missing = (error as { code?: unknown }).code === "ENOENT"
      const text = missing
        ? `${program} is not installed (apt-get install ${pkg})`
        : `${program} ${args.slice(0, 2).join(" ")}: ${(stderr || error.message).trim()}`
      resume(Effect.fail(fail(operation, target, missing ? "unsupported" : reasonOf(text), text)))
    })
  })

export const makeBtrfsStorage = () => {
  const btrfs = (operation: string, target: string, args: ReadonlyArray<string>) =>
    run("btrfs", "btrfs-progs", operation, target, args)
  const snapshotDir = (pool: PoolDefinition, volume: string) => join(pool.path, ".snapshots", volume)

  const requirePool = (operation: string, pool: PoolDefinition) =>
    io(operation, pool.id, () => statfs(pool.path)).pipe(
      Effect.mapError(() =>
        fail(
          operation,
          pool.id,
          "no-such-pool",
          `pool ${pool.id} has no directory ${pool.path} on this host`,
        ),
      ),
      Effect.flatMap((fs) =>
        fs.type === btrfsMagic
          ? Effect.void
          : Effect.fail(
              fail(
                operation,
                pool.id,
                "unsupported",
                `${pool.path} is not on a btrfs filesystem (statfs type 0x${fs.type.toString(16)}): mount one there first`,
              ),
            ),
      ),
    )

  const describe = (operation: string, pool: PoolDefinition, volume: string) =>
    Effect.gen(function* () {
      const path = join(pool.path, volume, image)
      const file = yield* io(operation, volume, () => stat(path))
      const snapshots = yield* io(operation, volume, async () =>
        (await exists(snapshotDir(pool, volume))) ? (await readdir(snapshotDir(pool, volume))).sort() : [],
      )
      return {
        id: volume,
        path,
        format: "raw",
        capacityBytes: file.size,
        allocationBytes: file.blocks * 512,
        snapshots,
      } satisfies VolumeInfo
    })

  const requireVolume = (operation: string, pool: PoolDefinition, volume: string) =>
    requirePool(operation, pool).pipe(
      Effect.andThen(io(operation, volume, () => exists(join(pool.path, volume, image)))),
      Effect.flatMap((found) =>
        found
          ? describe(operation, pool, volume)
          : Effect.fail(fail(operation, volume, "no-such-volume", `no volume ${volume} in pool ${pool.id}`)),
      ),
    )

  const requireSnapshot = (operation: string, pool: PoolDefinition, volume: string, snapshot: string) =>
    requireVolume(operation, pool, volume).pipe(
      Effect.flatMap((found) =>
        (found.snapshots ?? []).includes(snapshot)
          ? Effect.succeed(join(snapshotDir(pool, volume), snapshot))
          : Effect.fail(
              fail(operation, snapshot, "no-such-snapshot", `volume ${volume} has no snapshot ${snapshot}`),
            ),
      ),
    )

  const listVolumes = (pool: PoolDefinition) =>
    Effect.gen(function* () {
      yield* requirePool("list", pool)
      const entries = yield* io("list", pool.id, () => readdir(pool.path))
      const volumes: Array<VolumeInfo> = []
      for (const entry of entries.sort()) {
        if (entry.startsWith(".")) continue
        if (!(yield* io("list", entry, () => exists(join(pool.path, entry, image))))) continue
        volumes.push(yield* describe("list", pool, entry))
      }
      return volumes
    })

  const poolOps = directoryPool(requirePool, listVolumes, (pool) =>
    rm(join(pool.path, ".snapshots"), { recursive: true, force: true }),
  )

  const growTo = (operation: string, volume: string, path: string, sizeBytes: number) =>
    io(operation, volume, async () => {
      if ((await stat(path)).size < sizeBytes) await truncate(path, sizeBytes)
    })

  return Storage.of({
    ...poolOps,
    listVolumes,
    listPartials: (pool) => requirePool("partials", pool).pipe(Effect.andThen(partialsIn(pool))),
    discardPartial: (pool, volume) =>
      Effect.gen(function* () {
        yield* requirePool("discard", pool)
        const partial = join(pool.path, `.${volume}.partial`)
        if (yield* io("discard", volume, () => exists(partial)))
          yield* btrfs("discard", volume, ["subvolume", "delete", partial])
      }),
    createVolume: (pool, volume) =>
      Effect.gen(function* () {
        yield* requirePool("create", pool)
        if (volume.format !== "raw")
          return yield* Effect.fail(
            fail(
              "create",
              volume.id,
              "unsupported",
              `a btrfs pool holds raw volumes (the filesystem snapshots and clones them), not ${volume.format}`,
            ),
          )
        const path = join(pool.path, volume.id)
        if (yield* io("create", volume.id, () => exists(path)))
          return yield* Effect.fail(
            fail("create", volume.id, "exists", `pool ${pool.id} already holds volume ${volume.id}`),
          )
        const partial = join(pool.path, `.${volume.id}.partial`)
        const make =
          volume.cloneOf === undefined
            ? btrfs("create", volume.id, ["subvolume", "create", partial]).pipe(
                Effect.andThen(io("create", volume.id, () => writeFile(join(partial, image), ""))),
              )
            : requireVolume("clone", pool, volume.cloneOf).pipe(
                Effect.andThen(
                  btrfs("clone", volume.id, [
                    "subvolume",
                    "snapshot",
                    join(pool.path, volume.cloneOf),
                    partial,
                  ]),
                ),
              )
        yield* make.pipe(
          Effect.andThen(growTo("create", volume.id, join(partial, image), volume.sizeBytes)),
          Effect.andThen(io("create", volume.id, () => rename(partial, path))),
          Effect.onError(() =>
            btrfs("create", volume.id, ["subvolume", "delete", partial]).pipe(Effect.ignore),
          ),
        )
        return yield* describe("create", pool, volume.id)
      }),
    resizeVolume: (pool, volume, sizeBytes) =>
      Effect.gen(function* () {
        const now = yield* requireVolume("resize", pool, volume)
        yield* refuseShrink(volume, now.capacityBytes, sizeBytes)
        yield* growTo("resize", volume, now.path, sizeBytes)
        return yield* describe("resize", pool, volume)
      }),
    deleteVolume: (pool, volume) =>
      Effect.gen(function* () {
        const found = yield* requireVolume("delete", pool, volume)
        for (const snapshot of found.snapshots ?? [])
          yield* btrfs("delete", volume, ["subvolume", "delete", join(snapshotDir(pool, volume), snapshot)])
        yield* io("delete", volume, () => rm(snapshotDir(pool, volume), { recursive: true, force: true }))
        yield* btrfs("delete", volume, ["subvolume", "delete", join(pool.path, volume)])
      }),
    createSnapshot: (pool, volume, snapshot) =>
      Effect.gen(function* () {
        const found = yield* requireVolume("snapshot", pool, volume)
        if ((found.snapshots ?? []).includes(snapshot))
          return yield* Effect.fail(
            fail("snapshot", snapshot, "exists", `volume ${volume} already has a snapshot ${snapshot}`),
          )
        yield* io("snapshot", snapshot, () => makeDirectory(snapshotDir(pool, volume)))
        yield* btrfs("snapshot", snapshot, [
          "subvolume",
          "snapshot",
          "-r",
          join(pool.path, volume),
          join(snapshotDir(pool, volume), snapshot),
        ])
      }),
    listSnapshots: (pool, volume) =>
      requireVolume("snapshots", pool, volume).pipe(
        Effect.map((found) =>
          (found.snapshots ?? []).map((name) => ({ name, sizeBytes: found.capacityBytes })),
        ),
      ),
    revertSnapshot: (pool, volume, snapshot) =>
      Effect.gen(function* () {
        const source = yield* requireSnapshot("revert", pool, volume, snapshot)
        const target = join(pool.path, volume, image)
        const partial = join(pool.path, volume, `.${image}.revert`)
        yield* run("cp", "coreutils", "revert", snapshot, [
          "--reflink=always",
          join(source, image),
          partial,
        ]).pipe(
          Effect.andThen(io("revert", volume, () => rename(partial, target))),
          Effect.onError(() => Effect.promise(() => rm(partial, { force: true }))),
        )
      }),
    deleteSnapshot: (pool, volume, snapshot) =>
      requireSnapshot("delete-snapshot", pool, volume, snapshot).pipe(
        Effect.flatMap((path) => btrfs("delete-snapshot", snapshot, ["subvolume", "delete", path])),
        Effect.asVoid,
      ),
  })
}

export const BtrfsStorageLayer = () => Layer.succeed(Storage, makeBtrfsStorage())
