/**
 * The storage port on libvirt's storage pools, through the koffi binding the hypervisor uses
 * (`adapters/libvirt/connection.ts`): `dir`, `fs` (a filesystem on a block device or a loop
 * image, mounted by libvirt) and `netfs` (NFS) pools are defined, built, started, refreshed,
 * destroyed and undefined; volumes raw or qcow2 (thin: nothing allocated up front) are created,
 * cloned (`virStorageVolCreateXMLFrom`), grown and deleted by libvirt. An operator sees ACP's
 * pools in `virsh pool-list` as `acp-<id>`, with the volumes named as the directory adapter
 * names its files (`<id>.<format>`), so a pool moves between the two adapters unchanged.
 *
 * libvirt has no volume snapshots: those are qcow2's internal ones, made by `qemu-img` on the
 * volume's file exactly as the directory adapter does (its code), and libvirt's view of the pool
 * is refreshed after each.
 *
 * Every pool and volume handle is freed, whatever the call's outcome; the volume list array is
 * freed after its elements; the paths libvirt returns are freed (`LibvirtString`).
 */
import { Effect, Layer } from "effect"
import koffi from "koffi"
import {
  type PoolDefinition,
  Storage,
  type StorageError,
  type StorageErrorReason,
  type VolumeFormat,
  type VolumeInfo,
} from "../../core/ports/storage.ts"
import { escapeXml } from "../hypervisor/domain-xml.ts"
import { type Fn, type LibvirtFailure, loadLibvirt, openConnection } from "../libvirt/connection.ts"
import { exists, fail, refuseShrink, refuseWhileHolding } from "./common.ts"
import { type DirStorageOptions, makeDirStorage } from "./dir.ts"

interface Bindings {
  readonly poolLookup: Fn
  readonly poolDefine: Fn
  readonly poolBuild: Fn
  readonly poolCreate: Fn
  readonly poolIsActive: Fn
  readonly poolRefresh: Fn
  readonly poolInfo: Fn
  readonly poolDestroy: Fn
  readonly poolDelete: Fn
  readonly poolUndefine: Fn
  readonly poolFree: Fn
  readonly poolVolumes: Fn
  readonly volName: Fn
  readonly volPath: Fn
  readonly volInfo: Fn
  readonly volLookup: Fn
  readonly volCreate: Fn
  readonly volCreateFrom: Fn
  readonly volResize: Fn
  readonly volDelete: Fn
  readonly volFree: Fn
}

let bindings: Bindings | undefined

const loadBindings = (): Bindings => {
  if (bindings !== undefined) return bindings
  const { lib } = loadLibvirt()
  koffi.pointer("virStoragePool", koffi.opaque())
  koffi.pointer("virStorageVol", koffi.opaque())
  koffi.struct("virStoragePoolInfo", {
    state: "int",
    capacity: "ulonglong",
    allocation: "ulonglong",
    available: "ulonglong",
  })
  koffi.struct("virStorageVolInfo", { type: "int", capacity: "ulonglong", allocation: "ulonglong" })
  bindings = {
    poolLookup: lib.func("virStoragePool *virStoragePoolLookupByName(virConnect *conn, const char *name)"),
    poolDefine: lib.func(
      "virStoragePool *virStoragePoolDefineXML(virConnect *conn, const char *xml, unsigned int flags)",
    ),
    poolBuild: lib.func("int virStoragePoolBuild(virStoragePool *pool, unsigned int flags)"),
    poolCreate: lib.func("int virStoragePoolCreate(virStoragePool *pool, unsigned int flags)"),
    poolIsActive: lib.func("int virStoragePoolIsActive(virStoragePool *pool)"),
    poolRefresh: lib.func("int virStoragePoolRefresh(virStoragePool *pool, unsigned int flags)"),
    poolInfo: lib.func("int virStoragePoolGetInfo(virStoragePool *pool, _Out_ virStoragePoolInfo *info)"),
    poolDestroy: lib.func("int virStoragePoolDestroy(virStoragePool *pool)"),
    poolDelete: lib.func("int virStoragePoolDelete(virStoragePool *pool, unsigned int flags)"),
    poolUndefine: lib.func("int virStoragePoolUndefine(virStoragePool *pool)"),
    poolFree: lib.func("int virStoragePoolFree(virStoragePool *pool)"),
    poolVolumes: lib.func(
      "int virStoragePoolListAllVolumes(virStoragePool *pool, _Out_ virStorageVol ***vols, unsigned int flags)",
    ),
    volName: lib.func("const char *virStorageVolGetName(virStorageVol *vol)"),
    volPath: lib.func("LibvirtString virStorageVolGetPath(virStorageVol *vol)"),
    volInfo: lib.func("int virStorageVolGetInfo(virStorageVol *vol, _Out_ virStorageVolInfo *info)"),
    volLookup: lib.func("virStorageVol *virStorageVolLookupByName(virStoragePool *pool, const char *name)"),
    volCreate: lib.func(
      "virStorageVol *virStorageVolCreateXML(virStoragePool *pool, const char *xml, unsigned int flags)",
    ),
    volCreateFrom: lib.func(
      "virStorageVol *virStorageVolCreateXMLFrom(virStoragePool *pool, const char *xml, virStorageVol *clonevol, unsigned int flags)",
    ),
    volResize: lib.func(
      "int virStorageVolResize(virStorageVol *vol, unsigned long long capacity, unsigned int flags)",
    ),
    volDelete: lib.func("int virStorageVolDelete(virStorageVol *vol, unsigned int flags)"),
    volFree: lib.func("int virStorageVolFree(virStorageVol *vol)"),
  }
  return bindings
}

/** The name of ACP's pool in libvirt (`virsh pool-list`): ACP's own, beside any the host has. */
export const libvirtPoolName = (pool: string) => `acp-${pool}`

/**
 * The pool's XML for libvirt, or why it cannot have one: an `fs` pool names the block device (or
 * image) holding its filesystem as `source`, a `netfs` pool its NFS export as `host:/path`.
 */
export const poolXml = (pool: PoolDefinition): string | { readonly invalid: string } => {
  const name = `<name>${escapeXml(libvirtPoolName(pool.id))}</name>`
  const target = `<target><path>${escapeXml(pool.path)}</path></target>`
  switch (pool.driver) {
    case "dir":
      return `<pool type='dir'>${name}${target}</pool>`
    case "fs":
      return pool.source === undefined || !pool.source.startsWith("/")
        ? {
            invalid: `pool ${pool.id} is fs: its source must be the block device or image holding the filesystem`,
          }
        : `<pool type='fs'>${name}<source><device path='${escapeXml(pool.source)}'/></source>${target}</pool>`
    case "netfs": {
      const match = /^([^:/\s]+):(\/.*)$/.exec(pool.source ?? "")
      return match === null
        ? { invalid: `pool ${pool.id} is netfs: its source must be an NFS export as host:/path` }
        : `<pool type='netfs'>${name}<source><host name='${escapeXml(match[1]!)}'/><dir path='${escapeXml(match[2]!)}'/><format type='nfs'/></source>${target}</pool>`
    }
    default:
      return { invalid: `pool ${pool.id} is ${pool.driver}: libvirt has no such pool type here` }
  }
}

/** A volume's XML: sparse (allocation 0), the format in its name as in its target. */
export const volumeXml = (id: string, format: VolumeFormat, sizeBytes: number): string =>
  `<volume><name>${escapeXml(`${id}.${format}`)}</name><capacity unit='bytes'>${sizeBytes}</capacity><allocation unit='bytes'>0</allocation><target><format type='${format}'/></target></volume>`

/** libvirt's `virErrorNumber`s (and, where it has none of its own, its message) in the port's words. */
const reasonOf = (failure: LibvirtFailure): StorageErrorReason => {
  if (/No space left on device|ENOSPC|Not enough space|exceeds available/i.test(failure.message))
    return "no-space"
  switch (failure.code) {
    case 49: // VIR_ERR_NO_STORAGE_POOL
      return "no-such-pool"
    case 50: // VIR_ERR_NO_STORAGE_VOL
      return "no-such-volume"
    case 90: // VIR_ERR_STORAGE_VOL_EXIST
      return "exists"
    case 3: // VIR_ERR_NO_SUPPORT
    case 84: // VIR_ERR_OPERATION_UNSUPPORTED
      return "unsupported"
    case 8: // VIR_ERR_INVALID_ARG
    case 27: // VIR_ERR_XML_ERROR
    case 35: // VIR_ERR_XML_DETAIL
      return "invalid"
    default:
      return "failed"
  }
}

const formats: ReadonlyArray<VolumeFormat> = ["qcow2", "raw"]

/** The volume id and format of one of ACP's volume names; undefined for a file that is not one. */
const parseVolumeName = (
  name: string,
): { readonly id: string; readonly format: VolumeFormat } | undefined => {
  const format = formats.find((each) => name.endsWith(`.${each}`))
  return format === undefined || name.startsWith(".")
    ? undefined
    : { id: name.slice(0, -format.length - 1), format }
}

export interface LibvirtStorageOptions extends DirStorageOptions {
  /** `qemu:///system`, `qemu:///session`, `test:///default`, … */
  readonly uri: string
}

export const makeLibvirtStorage = (options: LibvirtStorageOptions) =>
  Effect.gen(function* () {
    const b = yield* Effect.try({
      try: loadBindings,
      catch: (error) =>
        fail(
          "load",
          options.uri,
          "unsupported",
          `cannot load libvirt.so.0 (apt-get install libvirt0): ${error instanceof Error ? error.message : String(error)}`,
        ),
    })
    const connection = yield* openConnection(options.uri).pipe(
      Effect.mapError((failure) => fail("open", options.uri, "failed", failure.message)),
    )
    const conn = connection.pointer
    const files = makeDirStorage(options)

    const run = <A>(operation: string, target: string, fn: Fn, args: ReadonlyArray<unknown>) =>
      connection
        .run<A>(fn, args)
        .pipe(Effect.mapError((failure) => fail(operation, target, reasonOf(failure), failure.message)))

    /** Runs `f` on the pool's handle (looked up by its libvirt name) and frees it whatever happens. */
    const withPool = <A>(
      operation: string,
      pool: PoolDefinition,
      f: (handle: unknown) => Effect.Effect<A, StorageError>,
    ): Effect.Effect<A, StorageError> =>
      Effect.acquireUseRelease(
        run<unknown>(operation, pool.id, b.poolLookup, [conn, libvirtPoolName(pool.id)]).pipe(
          Effect.mapError((error) =>
            error.reason === "no-such-pool"
              ? fail(
                  operation,
                  pool.id,
                  "no-such-pool",
                  `libvirt has no pool ${libvirtPoolName(pool.id)} on this host`,
                )
              : error,
          ),
        ),
        f,
        (handle) => Effect.sync(() => b.poolFree(handle)),
      )

    /** The pool's handle, made ready for volumes: it must be active (libvirt mounts fs and netfs pools on start). */
    const withActivePool = <A>(
      operation: string,
      pool: PoolDefinition,
      f: (handle: unknown) => Effect.Effect<A, StorageError>,
    ) =>
      withPool(operation, pool, (handle) =>
        run<number>(operation, pool.id, b.poolIsActive, [handle]).pipe(
          Effect.flatMap((active) =>
            active === 1
              ? f(handle)
              : Effect.fail(
                  fail(
                    operation,
                    pool.id,
                    "no-such-pool",
                    `pool ${libvirtPoolName(pool.id)} is defined but not active`,
                  ),
                ),
          ),
        ),
      )

    /** Runs `f` on a volume's handle (any format of that id), freed whatever happens. */
    const withVolume = <A>(
      operation: string,
      pool: PoolDefinition,
      handle: unknown,
      volume: string,
      f: (vol: unknown, format: VolumeFormat) => Effect.Effect<A, StorageError>,
    ): Effect.Effect<A, StorageError> =>
      Effect.gen(function* () {
        const found = yield* findVolume(operation, handle, volume)
        if (found === undefined)
          return yield* Effect.fail(
            fail(operation, volume, "no-such-volume", `no volume ${volume} in pool ${pool.id}`),
          )
        return yield* f(found.vol, found.format).pipe(
          Effect.ensuring(Effect.sync(() => b.volFree(found.vol))),
        )
      })

    const findVolume = (operation: string, handle: unknown, volume: string) =>
      Effect.gen(function* () {
        for (const format of formats) {
          const vol = yield* run<unknown>(operation, volume, b.volLookup, [
            handle,
            `${volume}.${format}`,
          ]).pipe(
            Effect.catchIf(
              (error) => error.reason === "no-such-volume",
              () => Effect.succeed(null),
            ),
          )
          if (vol !== null) return { vol, format }
        }
        return undefined
      })

    /** The file a volume is (libvirt's string, freed). */
    const pathOf = (vol: unknown) => connection.locked(Effect.sync(() => String(b.volPath(vol) ?? "")))

    const describe = (operation: string, vol: unknown, id: string, format: VolumeFormat) =>
      Effect.gen(function* () {
        const info: Record<string, number | bigint> = {}
        yield* run(operation, id, b.volInfo, [vol, info])
        const path = yield* pathOf(vol)
        // Snapshots live in the qcow2 file (qemu-img); a driver with no files (test:///) has none.
        const onDisk = format === "qcow2" && (yield* Effect.promise(() => exists(path)))
        const snapshots = onDisk
          ? (yield* files.listSnapshots(poolOfPath(path), id)).map((snapshot) => snapshot.name)
          : undefined
        return {
          id,
          path,
          format,
          capacityBytes: Number(info.capacity ?? 0),
          allocationBytes: Number(info.allocation ?? 0),
          ...(snapshots === undefined ? {} : { snapshots }),
        } satisfies VolumeInfo
      })

    const refresh = (operation: string, pool: PoolDefinition, handle: unknown) =>
      run(operation, pool.id, b.poolRefresh, [handle, 0])

    const figures = (operation: string, pool: PoolDefinition, handle: unknown) =>
      Effect.gen(function* () {
        yield* refresh(operation, pool, handle)
        const info: Record<string, number | bigint> = {}
        yield* run(operation, pool.id, b.poolInfo, [handle, info])
        return {
          capacityBytes: Number(info.capacity ?? 0),
          allocationBytes: Number(info.allocation ?? 0),
          availableBytes: Number(info.available ?? 0),
        }
      })

    const listVolumes = (pool: PoolDefinition) =>
      withActivePool("list", pool, (handle) =>
        Effect.gen(function* () {
          yield* refresh("list", pool, handle)
          const out: Array<unknown> = [null]
          const count = yield* run<number>("list", pool.id, b.poolVolumes, [handle, out, 0])
          const handles = yield* connection.locked(
            Effect.sync(() => {
              const each =
                count === 0 ? [] : (koffi.decode(out[0], "virStorageVol *", count) as Array<unknown>)
              if (out[0] !== null) connection.free(out[0])
              return each.map((vol) => ({ vol, name: String(b.volName(vol)) }))
            }),
          )
          return yield* Effect.gen(function* () {
            const volumes: Array<VolumeInfo> = []
            for (const { vol, name } of [...handles].sort((x, y) => x.name.localeCompare(y.name))) {
              const parsed = parseVolumeName(name)
              if (parsed !== undefined) volumes.push(yield* describe("list", vol, parsed.id, parsed.format))
            }
            return volumes
          }).pipe(
            Effect.ensuring(
              Effect.sync(() => {
                for (const { vol } of handles) b.volFree(vol)
              }),
            ),
          )
        }),
      )

    const snapshotThenRefresh =
      <A>(
        operation: string,
        call: (pool: PoolDefinition, volume: string, snapshot: string) => Effect.Effect<A, StorageError>,
      ) =>
      (pool: PoolDefinition, volume: string, snapshot: string) =>
        withActivePool(operation, pool, (handle) =>
          withVolume(operation, pool, handle, volume, (vol, format) =>
            Effect.gen(function* () {
              if (format !== "qcow2")
                return yield* Effect.fail(
                  fail(
                    operation,
                    volume,
                    "unsupported",
                    `volume ${volume} is raw: only qcow2 volumes have snapshots`,
                  ),
                )
              const path = yield* pathOf(vol)
              const result = yield* call(poolOfPath(path), volume, snapshot)
              yield* refresh(operation, pool, handle)
              return result
            }),
          ),
        )

    return Storage.of({
      ensurePool: (pool) =>
        Effect.gen(function* () {
          const xml = poolXml(pool)
          if (typeof xml !== "string")
            return yield* Effect.fail(fail("build", pool.id, "invalid", xml.invalid))
          const defined = yield* run<unknown>("build", pool.id, b.poolLookup, [
            conn,
            libvirtPoolName(pool.id),
          ]).pipe(
            Effect.catchIf(
              (error) => error.reason === "no-such-pool",
              () => Effect.succeed(null),
            ),
          )
          const handle =
            defined ??
            (yield* run<unknown>("build", pool.id, b.poolDefine, [conn, xml, 0]).pipe(
              // Built (its directory made; flags 0 never formats a device) right after it is defined.
              Effect.tap((made) =>
                run("build", pool.id, b.poolBuild, [made, 0]).pipe(
                  Effect.tapError(() =>
                    connection.locked(
                      Effect.sync(() => {
                        b.poolUndefine(made)
                        b.poolFree(made)
                      }),
                    ),
                  ),
                ),
              ),
            ))
          return yield* Effect.gen(function* () {
            const active = yield* run<number>("build", pool.id, b.poolIsActive, [handle])
            if (active !== 1) yield* run("build", pool.id, b.poolCreate, [handle, 0])
            return yield* figures("build", pool, handle)
          }).pipe(Effect.ensuring(Effect.sync(() => b.poolFree(handle))))
        }),
      poolInfo: (pool) => withActivePool("info", pool, (handle) => figures("info", pool, handle)),
      removePool: (pool) =>
        Effect.gen(function* () {
          yield* refuseWhileHolding(pool, yield* listVolumes(pool))
          yield* withPool("remove", pool, (handle) =>
            Effect.gen(function* () {
              yield* run("remove", pool.id, b.poolDestroy, [handle])
              // The pool's directory goes with it (libvirt refuses while anything is left in it).
              yield* run("remove", pool.id, b.poolDelete, [handle, 0])
              yield* run("remove", pool.id, b.poolUndefine, [handle])
            }),
          )
        }),
      listVolumes,
      // libvirt's daemon makes the volume: a node that dies mid-create leaves it to finish (or clean up).
      listPartials: () => Effect.succeed([]),
      discardPartial: () => Effect.void,
      createVolume: (pool, volume) =>
        withActivePool("create", pool, (handle) =>
          Effect.gen(function* () {
            const existing = yield* findVolume("create", handle, volume.id)
            if (existing !== undefined) {
              b.volFree(existing.vol)
              return yield* Effect.fail(
                fail("create", volume.id, "exists", `pool ${pool.id} already holds volume ${volume.id}`),
              )
            }
            const xml = volumeXml(volume.id, volume.format, volume.sizeBytes)
            const made =
              volume.cloneOf === undefined
                ? yield* run<unknown>("create", volume.id, b.volCreate, [handle, xml, 0])
                : yield* withVolume("clone", pool, handle, volume.cloneOf, (source) =>
                    run<unknown>("clone", volume.id, b.volCreateFrom, [handle, xml, source, 0]),
                  )
            return yield* Effect.gen(function* () {
              const info = yield* describe("create", made, volume.id, volume.format)
              if (info.capacityBytes >= volume.sizeBytes) return info
              yield* run("clone", volume.id, b.volResize, [made, volume.sizeBytes, 0])
              return yield* describe("create", made, volume.id, volume.format)
            }).pipe(Effect.ensuring(Effect.sync(() => b.volFree(made))))
          }),
        ),
      resizeVolume: (pool, volume, sizeBytes) =>
        withActivePool("resize", pool, (handle) =>
          withVolume("resize", pool, handle, volume, (vol, format) =>
            Effect.gen(function* () {
              const now = yield* describe("resize", vol, volume, format)
              yield* refuseShrink(volume, now.capacityBytes, sizeBytes)
              if (sizeBytes > now.capacityBytes)
                yield* run("resize", volume, b.volResize, [vol, sizeBytes, 0])
              return yield* describe("resize", vol, volume, format)
            }),
          ),
        ),
      deleteVolume: (pool, volume) =>
        withActivePool("delete", pool, (handle) =>
          withVolume("delete", pool, handle, volume, (vol) => run("delete", volume, b.volDelete, [vol, 0])),
        ).pipe(Effect.asVoid),
      createSnapshot: snapshotThenRefresh("snapshot", files.createSnapshot),
      listSnapshots: (pool, volume) =>
        withActivePool("snapshots", pool, (handle) =>
          withVolume("snapshots", pool, handle, volume, (vol, format) =>
            Effect.gen(function* () {
              if (format === "raw") return []
              const path = yield* pathOf(vol)
              return yield* files.listSnapshots(poolOfPath(path), volume)
            }),
          ),
        ),
      revertSnapshot: snapshotThenRefresh("revert", files.revertSnapshot),
      deleteSnapshot: snapshotThenRefresh("delete-snapshot", files.deleteSnapshot),
    })
  })

/** The directory adapter's view of the directory a volume's file is in (it finds `<id>.<format>` there). */
const poolOfPath = (path: string): PoolDefinition => ({
  id: path,
  driver: "dir",
  path: path.slice(0, path.lastIndexOf("/")) || "/",
})

export const LibvirtStorageLayer = (options: LibvirtStorageOptions) =>
  Layer.effect(Storage, makeLibvirtStorage(options))
