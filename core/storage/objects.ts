/**
 * The shapes of the storage objects the storage core reads and writes besides pools and volumes
 * (snapshots, revert tasks, shares, devices), and how a host's block devices become this node's
 * `storage-device` records. Pure.
 */
import type { DeviceInfo } from "../ports/storage.ts"

export interface SnapshotSpecValue {
  readonly name: string
  readonly volume: string
}

export interface SnapshotMetaValue {
  readonly state: "creating" | "available" | "failed"
  readonly detail?: string
}

/** A storage task this node owns (a revert), as the core reads and writes it. */
export interface StorageTaskValue {
  readonly operation: string
  readonly target: { readonly kind: string; readonly id: string }
  readonly owner: string
  readonly parameters: Readonly<Record<string, string>>
  readonly state: "queued" | "running" | "succeeded" | "failed" | "cancelled"
  readonly log: ReadonlyArray<{ readonly atMs: number; readonly line: string }>
  readonly error?: string
  readonly createdMs: number
}

export interface ShareSpecValue {
  readonly name: string
  readonly pool: string
  readonly protocol: "nfs" | "smb" | "iscsi"
  /** A directory inside the pool ("" or "." for the pool's own directory). */
  readonly path: string
  readonly clients: ReadonlyArray<string>
  readonly access?: "rw" | "ro"
}

export interface ShareMetaValue {
  readonly state: "exported" | "unexported" | "failed"
  /** Where it is on the node, and how clients name it. */
  readonly path?: string
  readonly export?: string
  readonly detail?: string
}

export interface DeviceSpecValue {
  readonly name: string
  readonly node: string
  readonly path: string
  readonly medium: "hdd" | "ssd" | "nvme" | "partition" | "loop"
}

export interface DeviceMetaValue {
  readonly state: "online" | "offline" | "failed"
  readonly model?: string
  readonly serial?: string
  readonly rotational?: boolean
  readonly smart?: DeviceInfo["smart"]
  readonly sizeBytes?: number
}

/** The id of a node's device in the CDB: `<node>.<kernel name>`. */
export const deviceId = (node: string, name: string) => `${node}.${name}`

const mediumOf = (device: DeviceInfo): DeviceSpecValue["medium"] =>
  device.type === "loop"
    ? "loop"
    : device.type === "part"
      ? "partition"
      : device.name.startsWith("nvme")
        ? "nvme"
        : device.rotational
          ? "hdd"
          : "ssd"

/**
 * The host's devices as `node`'s `storage-device` objects: each one seen (its spec where it is
 * new or changed; its meta: online, or failed when SMART says so); one of this node's the store
 * holds that is no longer seen is offline (kept: a disk pulled is news, not a deletion).
 */
export const deviceRecords = (
  node: string,
  devices: ReadonlyArray<DeviceInfo>,
  known: ReadonlyArray<{ readonly id: string; readonly spec: DeviceSpecValue }>,
) => {
  const stored = new Map(known.map((device) => [device.id, device.spec]))
  const specs: Array<{ readonly id: string; readonly spec: DeviceSpecValue }> = []
  const metas: Array<{ readonly id: string; readonly meta: DeviceMetaValue }> = []
  const seen = new Set<string>()
  for (const device of devices) {
    const id = deviceId(node, device.name)
    seen.add(id)
    const spec: DeviceSpecValue = { name: device.name, node, path: device.path, medium: mediumOf(device) }
    if (JSON.stringify(stored.get(id)) !== JSON.stringify(spec)) specs.push({ id, spec })
    metas.push({
      id,
      meta: {
        state: device.smart === "failed" ? "failed" : "online",
        ...(device.model === undefined ? {} : { model: device.model }),
        ...(device.serial === undefined ? {} : { serial: device.serial }),
        rotational: device.rotational,
        smart: device.smart,
        sizeBytes: device.sizeBytes,
      },
    })
  }
  for (const [id, spec] of stored)
    if (spec.node === node && !seen.has(id)) metas.push({ id, meta: { state: "offline" } })
  return { specs, metas }
}
