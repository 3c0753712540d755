/**
 * What a node's hypervisor sees of the store: every system (with the nodes whose meta claims it
 * is active there), the open tasks it owns, and the storage volumes as it can open them. One
 * function for the real node and the simulator.
 */
import type { StoragePoolSpec, StorageVolumeMeta, StorageVolumeSpec } from "../model/storage.ts"
import {
  claimsOf,
  type SystemSpecValue,
  type TaskSpecValue,
  type View,
  type VolumeLocation,
} from "./hypervisor.ts"
import { decodeValue } from "./values.ts"

export interface StoreReader {
  readonly list: (kind: string) => ReadonlyArray<{ readonly id: string; readonly value: Uint8Array | null }>
  readonly metaOf: (
    kind: string,
    id: string,
  ) => ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>
}

export const systemsIn = (store: StoreReader): View["systems"] =>
  store.list("system").flatMap((entry) => {
    const spec = decodeValue<SystemSpecValue>(entry.value)
    return spec === undefined
      ? []
      : [{ id: entry.id, spec, claims: claimsOf(store.metaOf("system", entry.id), decodeValue) }]
  })

/**
 * Each volume the store describes, with its path once it is available to `self`: a volume in a
 * local pool is opened on the pool's node, at the path that node published; one in a shared pool
 * wherever a node published it available (the same path on every node).
 */
export const volumesIn = (self: string, store: StoreReader): ReadonlyArray<VolumeLocation> => {
  const pools = new Map(
    store.list("storage-pool").flatMap((entry) => {
      const spec = decodeValue<typeof StoragePoolSpec.Type>(entry.value)
      return spec === undefined ? [] : [[entry.id, spec] as const]
    }),
  )
  return store.list("storage-volume").flatMap((entry): ReadonlyArray<VolumeLocation> => {
    const spec = decodeValue<typeof StorageVolumeSpec.Type>(entry.value)
    if (spec === undefined) return []
    const format = spec.format
    const pool = pools.get(spec.pool)
    if (pool === undefined) return [{ id: entry.id, format, waiting: `has no pool ${spec.pool}` }]
    if (!pool.shared && pool.node !== self)
      return [
        { id: entry.id, format, waiting: `is in pool ${spec.pool}, local to ${pool.node ?? "no node"}` },
      ]
    const metas = store.metaOf("storage-volume", entry.id).flatMap((slot) => {
      const meta = decodeValue<typeof StorageVolumeMeta.Type>(slot.value)
      return meta === undefined ? [] : [{ node: slot.node, meta }]
    })
    const here = metas.find((slot) => slot.node === self) ?? (pool.shared ? metas[0] : undefined)
    const ready = here?.meta.state === "available" || here?.meta.state === "attached"
    if (ready && here?.meta.path !== undefined) return [{ id: entry.id, format, path: here.meta.path }]
    return [{ id: entry.id, format, waiting: `is ${here?.meta.state ?? "not made yet"}` }]
  })
}

export const viewIn = (self: string, store: StoreReader): View => ({
  volumes: volumesIn(self, store),
  systems: systemsIn(store),
  tasks: store.list("task").flatMap((entry) => {
    const spec = decodeValue<TaskSpecValue>(entry.value)
    // Its own tasks only: a storage task of this node is the storage service's.
    return spec !== undefined &&
      spec.owner === self &&
      spec.operation.startsWith("hypervisor.") &&
      (spec.state === "queued" || spec.state === "running")
      ? [{ id: entry.id, spec }]
      : []
  }),
})
