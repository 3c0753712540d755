/**
 * What a node's hypervisor sees of the store: every system (with the nodes whose meta claims it
 * is active there) and the open tasks it owns. One function for the real node and the simulator.
 */
import { claimsOf, type SystemSpecValue, type TaskSpecValue, type View } from "./hypervisor.ts"
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

export const viewIn = (self: string, store: StoreReader): View => ({
  systems: systemsIn(store),
  tasks: store.list("task").flatMap((entry) => {
    const spec = decodeValue<TaskSpecValue>(entry.value)
    return spec !== undefined && spec.owner === self && (spec.state === "queued" || spec.state === "running")
      ? [{ id: entry.id, spec }]
      : []
  }),
})
