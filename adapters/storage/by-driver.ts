/**
 * The storage port that a node runs: each call goes to the adapter for its pool's type (`dir`
 * and `fs` pools to the directory adapter, or `dir`, `fs` and `netfs` to libvirt's storage
 * driver where the node's config names one; `btrfs` to the btrfs adapter). A type with no adapter on
 * this host is refused as `unsupported`, naming it.
 */
import { Effect, Layer } from "effect"
import { type PoolDefinition, type PoolDriver, Storage, type StorageError } from "../../core/ports/storage.ts"
import { makeBtrfsStorage } from "./btrfs.ts"
import { fail } from "./common.ts"
import { type DirStorageOptions, makeDirStorage } from "./dir.ts"
import { makeLibvirtStorage } from "./libvirt.ts"

type Port = Storage["Service"]

export const makeStorageByDriver = (adapters: Partial<Record<PoolDriver, Port>>): Port => {
  const pick = (operation: string, pool: PoolDefinition): Effect.Effect<Port, StorageError> => {
    const adapter = adapters[pool.driver]
    return adapter === undefined
      ? Effect.fail(
          fail(
            operation,
            pool.id,
            "unsupported",
            `pool ${pool.id} is ${pool.driver}: this node has no ${pool.driver} adapter (it has ${Object.keys(adapters).join(", ")})`,
          ),
        )
      : Effect.succeed(adapter)
  }
  const route =
    <K extends keyof Port>(operation: string, key: K) =>
    (pool: PoolDefinition, ...rest: Array<unknown>) =>
      pick(operation, pool).pipe(
        Effect.flatMap((adapter) =>
          (adapter[key] as (...args: Array<unknown>) => Effect.Effect<unknown, unknown>)(pool, ...rest),
        ),
      )
  const keys = [
    "ensurePool",
    "poolInfo",
    "removePool",
    "listVolumes",
    "listPartials",
    "discardPartial",
    "createVolume",
    "resizeVolume",
    "deleteVolume",
    "createSnapshot",
    "listSnapshots",
    "revertSnapshot",
    "deleteSnapshot",
  ] as const
  return Storage.of(Object.fromEntries(keys.map((key) => [key, route(key, key)])) as unknown as Port)
}

export interface NodeStorageOptions extends DirStorageOptions {
  /** dir, fs and netfs pools through libvirt's storage driver at this URI (absent: ACP's directory adapter, dir and fs). */
  readonly libvirtUri?: string
}

export const NodeStorageLayer = (options: NodeStorageOptions = {}) =>
  Layer.effect(
    Storage,
    Effect.gen(function* () {
      const btrfs = makeBtrfsStorage()
      if (options.libvirtUri === undefined) {
        const dir = makeDirStorage(options)
        return makeStorageByDriver({ dir, fs: dir, btrfs })
      }
      const libvirt = yield* makeLibvirtStorage({ ...options, uri: options.libvirtUri })
      return makeStorageByDriver({ dir: libvirt, fs: libvirt, netfs: libvirt, btrfs })
    }),
  )
