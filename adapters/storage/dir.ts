/**
 * The storage port on a directory of the host's filesystem (a `dir` pool, as libvirt's and
 * Proxmox's): a volume is one image file named after its id, made, cloned, grown and
 * snapshotted by `qemu-img` (qemu-utils); capacity and free space are the filesystem's
 * (`statfs`), allocation the blocks the image files take.
 *
 * A volume appears whole or not at all: it is written to a hidden partial file and renamed into
 * place once `qemu-img` has finished, and the partial file is removed if it fails (a clone that
 * runs out of space half-way leaves nothing behind). Snapshots are qcow2's internal ones; a raw
 * volume cannot have any (`unsupported`, naming qcow2).
 */
import { execFile } from "node:child_process"
import { readdir, rename, rm, stat } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import {
  type PoolDefinition,
  type SnapshotInfo,
  Storage,
  type StorageError,
  type StorageErrorReason,
  type VolumeFormat,
  type VolumeInfo,
} from "../../core/ports/storage.ts"
import { directoryPool, fail, io, partialsIn, refuseShrink } from "./common.ts"

const formatOfFile = (file: string): VolumeFormat | undefined =>
  file.endsWith(".qcow2") ? "qcow2" : file.endsWith(".raw") ? "raw" : undefined

/** A qemu-img failure in the port's words, from its message (it has no error codes). */
const reasonOf = (text: string): StorageErrorReason =>
  /No space left on device|ENOSPC/i.test(text)
    ? "no-space"
    : /ENOENT|qemu-img: not found|spawn qemu-img/i.test(text)
      ? "unsupported"
      : /snapshot.*not found|Can't find the snapshot|Could not find snapshot/i.test(text)
        ? "no-such-snapshot"
        : /shrink/i.test(text)
          ? "invalid"
          : "failed"

export interface DirStorageOptions {
  /** The `qemu-img` to run (default: the one on PATH). */
  readonly qemuImg?: string
}

export const makeDirStorage = (options: DirStorageOptions = {}) => {
  const qemuImg = options.qemuImg ?? "qemu-img"

  const img = (operation: string, target: string, args: ReadonlyArray<string>) =>
    Effect.callback<string, StorageError>((resume) => {
      execFile(qemuImg, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (error === null) return resume(Effect.succeed(stdout))
        const missing = (error as { code?: unknown }).code === "ENOENT"
        const text = missing
          ? `${qemuImg} is not installed (apt-get install qemu-utils)`
          : `${qemuImg} ${args[0]}: ${(stderr || error.message).trim()}`
        resume(Effect.fail(fail(operation, target, missing ? "unsupported" : reasonOf(text), text)))
      })
    })

  const volumeFile = async (pool: PoolDefinition, volume: string) => {
    for (const format of ["qcow2", "raw"] as const) {
      const path = join(pool.path, `${volume}.${format}`)
      const found = await stat(path).then(
        () => true,
        () => false,
      )
      if (found) return { path, format }
    }
    return undefined
  }

  const requirePool = (operation: string, pool: PoolDefinition) =>
    io(operation, pool.id, () => stat(pool.path)).pipe(
      Effect.flatMap((info) =>
        info.isDirectory()
          ? Effect.void
          : Effect.fail(fail(operation, pool.id, "no-such-pool", `${pool.path} is not a directory`)),
      ),
      Effect.mapError((error) =>
        error.reason === "no-such-pool" || error.reason === "failed"
          ? fail(
              operation,
              pool.id,
              "no-such-pool",
              `pool ${pool.id} has no directory ${pool.path} on this host`,
            )
          : error,
      ),
    )

  const requireVolume = (operation: string, pool: PoolDefinition, volume: string) =>
    requirePool(operation, pool).pipe(
      Effect.andThen(io(operation, volume, () => volumeFile(pool, volume))),
      Effect.flatMap((found) =>
        found === undefined
          ? Effect.fail(fail(operation, volume, "no-such-volume", `no volume ${volume} in pool ${pool.id}`))
          : Effect.succeed(found),
      ),
    )

  const describe = (operation: string, volume: string, path: string, format: VolumeFormat) =>
    Effect.gen(function* () {
      const file = yield* io(operation, volume, () => stat(path))
      const allocationBytes = file.blocks * 512
      if (format === "raw") return { id: volume, path, format, capacityBytes: file.size, allocationBytes }
      const info = JSON.parse(yield* img(operation, volume, ["info", "--output=json", "-U", path])) as {
        readonly "virtual-size": number
        readonly snapshots?: ReadonlyArray<{ readonly name: string }>
      }
      const snapshots = (info.snapshots ?? []).map((snapshot) => snapshot.name)
      return { id: volume, path, format, capacityBytes: info["virtual-size"], allocationBytes, snapshots }
    })

  const listVolumes = (pool: PoolDefinition) =>
    Effect.gen(function* () {
      yield* requirePool("list", pool)
      const files = yield* io("list", pool.id, () => readdir(pool.path))
      const volumes: Array<VolumeInfo> = []
      for (const file of files.sort()) {
        const format = formatOfFile(file)
        if (format === undefined || file.startsWith(".")) continue
        volumes.push(
          yield* describe("list", file.slice(0, -format.length - 1), join(pool.path, file), format),
        )
      }
      return volumes
    })

  const poolOps = directoryPool(requirePool, listVolumes, (pool) =>
    rm(pool.path, { recursive: true, force: true }),
  )

  const snapshotsOf = (operation: string, volume: string, path: string) =>
    img(operation, volume, ["info", "--output=json", "-U", path]).pipe(
      Effect.map((text) => {
        const info = JSON.parse(text) as {
          readonly snapshots?: ReadonlyArray<{ readonly name: string }>
          readonly "virtual-size": number
        }
        // qemu-img keeps no size per snapshot in its JSON: the volume's is the best it says.
        return (info.snapshots ?? []).map(
          (snapshot): SnapshotInfo => ({ name: snapshot.name, sizeBytes: info["virtual-size"] }),
        )
      }),
    )

  const qcow2Only = (operation: string, volume: string, format: VolumeFormat) =>
    format === "qcow2"
      ? Effect.void
      : Effect.fail(
          fail(
            operation,
            volume,
            "unsupported",
            `volume ${volume} is raw: only qcow2 volumes have snapshots`,
          ),
        )

  return Storage.of({
    ...poolOps,
    listVolumes,
    listPartials: (pool) => requirePool("partials", pool).pipe(Effect.andThen(partialsIn(pool))),
    discardPartial: (pool, volume) =>
      requirePool("discard", pool).pipe(
        Effect.andThen(
          io("discard", volume, async () => {
            for (const format of ["raw", "qcow2"])
              await rm(join(pool.path, `.${volume}.${format}.partial`), { force: true })
          }),
        ),
      ),
    createVolume: (pool, volume) =>
      Effect.gen(function* () {
        yield* requirePool("create", pool)
        if ((yield* io("create", volume.id, () => volumeFile(pool, volume.id))) !== undefined)
          return yield* Effect.fail(
            fail("create", volume.id, "exists", `pool ${pool.id} already holds volume ${volume.id}`),
          )
        const path = join(pool.path, `${volume.id}.${volume.format}`)
        const partial = join(pool.path, `.${volume.id}.${volume.format}.partial`)
        const make =
          volume.cloneOf === undefined
            ? img("create", volume.id, [
                "create",
                "-q",
                "-f",
                volume.format,
                partial,
                String(volume.sizeBytes),
              ])
            : Effect.gen(function* () {
                const source = yield* requireVolume("clone", pool, volume.cloneOf!)
                yield* img("clone", volume.id, [
                  "convert",
                  "-q",
                  "-f",
                  source.format,
                  "-O",
                  volume.format,
                  source.path,
                  partial,
                ])
                const copied = yield* describe("clone", volume.id, partial, volume.format)
                if (copied.capacityBytes < volume.sizeBytes)
                  yield* img("clone", volume.id, [
                    "resize",
                    "-q",
                    "-f",
                    volume.format,
                    partial,
                    String(volume.sizeBytes),
                  ])
                return ""
              })
        yield* make.pipe(
          Effect.andThen(io("create", volume.id, () => rename(partial, path))),
          Effect.onError(() => Effect.promise(() => rm(partial, { force: true }))),
        )
        return yield* describe("create", volume.id, path, volume.format)
      }),
    resizeVolume: (pool, volume, sizeBytes) =>
      Effect.gen(function* () {
        const found = yield* requireVolume("resize", pool, volume)
        const now = yield* describe("resize", volume, found.path, found.format)
        yield* refuseShrink(volume, now.capacityBytes, sizeBytes)
        if (sizeBytes > now.capacityBytes)
          yield* img("resize", volume, ["resize", "-q", "-f", found.format, found.path, String(sizeBytes)])
        return yield* describe("resize", volume, found.path, found.format)
      }),
    deleteVolume: (pool, volume) =>
      requireVolume("delete", pool, volume).pipe(
        Effect.flatMap((found) => io("delete", volume, () => rm(found.path))),
      ),
    createSnapshot: (pool, volume, snapshot) =>
      Effect.gen(function* () {
        const found = yield* requireVolume("snapshot", pool, volume)
        yield* qcow2Only("snapshot", volume, found.format)
        const existing = yield* snapshotsOf("snapshot", volume, found.path)
        if (existing.some((each) => each.name === snapshot))
          return yield* Effect.fail(
            fail("snapshot", snapshot, "exists", `volume ${volume} already has a snapshot ${snapshot}`),
          )
        yield* img("snapshot", snapshot, ["snapshot", "-q", "-c", snapshot, found.path])
      }),
    listSnapshots: (pool, volume) =>
      requireVolume("snapshots", pool, volume).pipe(
        Effect.flatMap((found) =>
          found.format === "raw" ? Effect.succeed([]) : snapshotsOf("snapshots", volume, found.path),
        ),
      ),
    revertSnapshot: (pool, volume, snapshot) =>
      Effect.gen(function* () {
        const found = yield* requireVolume("revert", pool, volume)
        yield* qcow2Only("revert", volume, found.format)
        const existing = yield* snapshotsOf("revert", volume, found.path)
        if (!existing.some((each) => each.name === snapshot))
          return yield* Effect.fail(
            fail("revert", snapshot, "no-such-snapshot", `volume ${volume} has no snapshot ${snapshot}`),
          )
        yield* img("revert", snapshot, ["snapshot", "-q", "-a", snapshot, found.path])
      }),
    deleteSnapshot: (pool, volume, snapshot) =>
      Effect.gen(function* () {
        const found = yield* requireVolume("delete-snapshot", pool, volume)
        yield* qcow2Only("delete-snapshot", volume, found.format)
        const existing = yield* snapshotsOf("delete-snapshot", volume, found.path)
        if (!existing.some((each) => each.name === snapshot))
          return yield* Effect.fail(
            fail(
              "delete-snapshot",
              snapshot,
              "no-such-snapshot",
              `volume ${volume} has no snapshot ${snapshot}`,
            ),
          )
        yield* img("delete-snapshot", snapshot, ["snapshot", "-q", "-d", snapshot, found.path])
      }),
  })
}

export const DirStorageLayer = (options: DirStorageOptions = {}) =>
  Layer.succeed(Storage, makeDirStorage(options))
