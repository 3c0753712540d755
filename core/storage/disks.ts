/**
 * A system's disks as storage sees them, pure: the `--disk` an operator writes (a new volume in
 * a pool, an existing volume, or a clone of one), the volumes a system create makes for it, the
 * rules a disk is held to (its volume exists, is no other system's disk unless shareable, and
 * all of a system's disks can be reached from one node), and the node a disk in a local pool
 * pins its system to — which the scheduler and the HA round read. A refusal changes nothing.
 */
import type { SystemSpecValue } from "../hypervisor/hypervisor.ts"
import type { Pin } from "../hypervisor/scheduler.ts"
import { decodeValue } from "../hypervisor/values.ts"
import type { VolumeFormat } from "../ports/storage.ts"
import { admitVolume, type StorageReader, type StorageRefusal } from "./admission.ts"
import { parseSize } from "./sizes.ts"
import type { ShareSpecValue, SnapshotSpecValue, StorageVolumeSpecValue } from "./storage.ts"

type Bus = SystemSpecValue["disks"][number]["bus"]
type SystemDiskValue = SystemSpecValue["disks"][number]

/** One `--disk`: exactly one of pool (a new volume, with its size), volume, or clone. */
export interface DiskRequest {
  readonly pool?: string
  readonly volume?: string
  readonly clone?: string
  readonly sizeBytes?: number
  readonly format?: VolumeFormat
  readonly bus?: Bus
  readonly boot?: boolean
}

const buses: ReadonlyArray<Bus> = ["virtio", "scsi", "sata", "ide"]
const formats: ReadonlyArray<VolumeFormat> = ["qcow2", "raw"]
const diskHelp =
  "expected pool=<pool>,size=<size> | volume=<volume> | clone=<volume>[,size=…][,format=qcow2|raw][,bus=virtio|scsi|sata|ide][,boot]"

/** `pool=p1,size=2GiB`, `volume=v1`, `clone=base,size=20GiB,boot` → a request, or why not. */
export const parseDiskFlag = (text: string): DiskRequest | { readonly error: string } => {
  const request: { -readonly [K in keyof DiskRequest]: DiskRequest[K] } = {}
  for (const part of text.split(",")) {
    const [key, ...rest] = part.split("=")
    const value = rest.join("=")
    switch (key?.trim()) {
      case "pool":
      case "volume":
      case "clone":
        if (value === "") return { error: `--disk ${text}: ${key} needs a name; ${diskHelp}` }
        request[key.trim() as "pool" | "volume" | "clone"] = value
        break
      case "size": {
        const size = parseSize(value)
        if ("error" in size) return { error: `--disk ${text}: ${size.error}` }
        request.sizeBytes = size.bytes
        break
      }
      case "format":
        if (!formats.includes(value as VolumeFormat))
          return { error: `--disk ${text}: format "${value}" is not one of ${formats.join(", ")}` }
        request.format = value as VolumeFormat
        break
      case "bus":
        if (!buses.includes(value as Bus))
          return { error: `--disk ${text}: bus "${value}" is not one of ${buses.join(", ")}` }
        request.bus = value as Bus
        break
      case "boot":
        request.boot = value === "" || value === "true"
        break
      default:
        return { error: `--disk ${text}: unknown key "${key}"; ${diskHelp}` }
    }
  }
  const sources = [request.pool, request.volume, request.clone].filter((source) => source !== undefined)
  if (sources.length !== 1) return { error: `--disk ${text}: ${diskHelp}` }
  if (request.pool !== undefined && request.sizeBytes === undefined)
    return { error: `--disk ${text}: a new volume needs size=<size> (e.g. size=2GiB)` }
  return request
}

const refuse = (reason: StorageRefusal["reason"], message: string): StorageRefusal => ({ reason, message })

/** The store as admission reads it, with volumes planned in this request added. */
const withPlanned = (
  store: StorageReader,
  planned: ReadonlyArray<{ readonly id: string; readonly spec: StorageVolumeSpecValue }>,
): StorageReader => ({
  ...store,
  volume: (id) => planned.find((volume) => volume.id === id)?.spec ?? store.volume(id),
  volumes: () => [...store.volumes(), ...planned],
})

export interface DiskPlan {
  /** Volumes to make with the system (new ones and clones), in one batch with it. */
  readonly volumes: ReadonlyArray<{ readonly id: string; readonly spec: StorageVolumeSpecValue }>
  /** The system's disks: those it had, then the requested ones, in order. */
  readonly disks: ReadonlyArray<SystemDiskValue>
}

/**
 * The volumes and disks a system create asks for. New volumes are named `<system>-disk<n>` (n
 * the disk's position); a clone is made in its source's pool, at least its source's size, in its
 * format. The first disk boots unless one says `boot`. Each new volume is admitted as a volume
 * written alone would be (pool exists, fits), counting the ones before it in the same request.
 */
export const planDisks = (
  store: StorageReader,
  system: string,
  existing: ReadonlyArray<SystemDiskValue>,
  requests: ReadonlyArray<DiskRequest>,
): DiskPlan | StorageRefusal => {
  const planned: Array<{ readonly id: string; readonly spec: StorageVolumeSpecValue }> = []
  const disks: Array<SystemDiskValue> = [...existing]
  const anyBoot = existing.some((disk) => disk.boot) || requests.some((request) => request.boot === true)
  if (
    existing.filter((disk) => disk.boot).length + requests.filter((request) => request.boot === true).length >
    1
  )
    return refuse("invalid", `system ${system}: only one disk can be the boot disk`)
  for (const request of requests) {
    const sources = [request.pool, request.volume, request.clone].filter((source) => source !== undefined)
    if (sources.length !== 1)
      return refuse("invalid", `system ${system}: a disk names exactly one of pool, volume or clone`)
    let volume = request.volume
    if (volume === undefined) {
      const id = `${system}-disk${disks.length}`
      if (store.volume(id) !== undefined || planned.some((other) => other.id === id))
        return refuse(
          "invalid",
          `system ${system}: a volume ${id} exists already; name the volume (volume=${id})`,
        )
      let spec: StorageVolumeSpecValue
      if (request.clone !== undefined) {
        const source = store.volume(request.clone)
        if (source === undefined)
          return refuse("invalid", `system ${system}: there is no volume ${request.clone} to clone`)
        spec = {
          name: id,
          pool: source.pool,
          sizeBytes: Math.max(source.sizeBytes, request.sizeBytes ?? 0),
          format: source.format,
          source: request.clone,
        }
      } else
        spec = {
          name: id,
          pool: request.pool ?? "",
          sizeBytes: request.sizeBytes ?? 0,
          format: request.format ?? "qcow2",
        }
      if (!(spec.sizeBytes > 0))
        return refuse("invalid", `system ${system}: a new volume needs a size above 0`)
      const refusal = admitVolume(withPlanned(store, planned), id, spec)
      if (refusal !== undefined) return refusal
      planned.push({ id, spec })
      volume = id
    }
    if (disks.some((disk) => disk.volume === volume))
      return refuse("invalid", `system ${system}: volume ${volume} is named twice`)
    disks.push({
      volume: volume as SystemDiskValue["volume"],
      bus: request.bus ?? "virtio",
      boot: request.boot === true || (!anyBoot && disks.length === 0),
    })
  }
  return { volumes: planned, disks }
}

/**
 * Whether a system may have these disks: each names a volume the store (or this request) has,
 * that no other system has as a disk unless it is shareable, and all of them are reachable from
 * one node. Answers the node they pin the system to (undefined: any node), or the refusal.
 */
export const checkDisks = (
  store: StorageReader,
  system: string,
  disks: ReadonlyArray<SystemDiskValue>,
  planned: ReadonlyArray<{ readonly id: string; readonly spec: StorageVolumeSpecValue }> = [],
): { readonly pin: Pin | undefined } | StorageRefusal => {
  const seen = withPlanned(store, planned)
  const pins: Array<{ readonly node: string; readonly volume: string; readonly pool: string }> = []
  for (const disk of disks) {
    const volume = seen.volume(disk.volume)
    if (volume === undefined)
      return refuse("invalid", `system ${system}: there is no storage-volume ${disk.volume}`)
    if (volume.shareable !== true) {
      const other = store
        .systems()
        .find(
          (candidate) =>
            candidate.id !== system && candidate.spec.disks.some((d) => d.volume === disk.volume),
        )
      if (other !== undefined)
        return refuse(
          "in-use",
          `storage-volume ${disk.volume} is a disk of ${other.id} and is not shareable: detach it there first`,
        )
    }
    const pool = store.pool(volume.pool)
    if (pool === undefined)
      return refuse("no-such-pool", `storage-volume ${disk.volume}: there is no pool ${volume.pool}`)
    if (!pool.shared && pool.node !== undefined)
      pins.push({ node: pool.node, volume: disk.volume, pool: volume.pool })
  }
  const nodes = [...new Set(pins.map((pin) => pin.node))]
  if (nodes.length > 1)
    return refuse(
      "invalid",
      `system ${system}: its disks are in pools local to different nodes (${pins.map((pin) => `${pin.volume} in ${pin.pool} on ${pin.node}`).join(", ")}); no node reaches them all`,
    )
  const first = pins[0]
  return {
    pin:
      first === undefined
        ? undefined
        : {
            node: first.node,
            reason: `disks: volume ${first.volume} is in pool ${first.pool}, local to ${first.node}`,
          },
  }
}

/** Admission's reader over a store's specs alone (no pool figures: enough for `checkDisks`). */
export const specReader = (
  list: (kind: string) => ReadonlyArray<{ readonly id: string; readonly value: Uint8Array | null }>,
): StorageReader => {
  const all = <A>(kind: string) =>
    list(kind).flatMap((entry) => {
      const spec = decodeValue<A>(entry.value)
      return spec === undefined ? [] : [{ id: entry.id, spec }]
    })
  const pools = all<NonNullable<ReturnType<StorageReader["pool"]>>>("storage-pool")
  const volumes = all<StorageVolumeSpecValue>("storage-volume")
  return {
    pool: (id) => pools.find((pool) => pool.id === id)?.spec,
    volume: (id) => volumes.find((volume) => volume.id === id)?.spec,
    volumes: () => volumes,
    systems: () => all<SystemSpecValue>("system"),
    poolStats: () => undefined,
    shares: () => all<ShareSpecValue>("storage-share"),
    snapshots: () => all<SnapshotSpecValue>("storage-snapshot"),
  }
}

/** The node each system's disks pin it to, for the HA round (systems without one are absent). */
export const pinsOf = (store: StorageReader): ReadonlyMap<string, Pin> => {
  const pins = new Map<string, Pin>()
  for (const { id, spec } of store.systems()) {
    if (spec.disks.length === 0) continue
    const checked = checkDisks(store, id, spec.disks)
    if ("pin" in checked && checked.pin !== undefined) pins.set(id, checked.pin)
  }
  return pins
}

/**
 * A system spec written whole (through the objects API, or an attach): its disks checked, and
 * the node it names held to the one its disks pin it to.
 */
export const admitSystemDisks = (
  store: StorageReader,
  system: string,
  spec: Pick<SystemSpecValue, "disks" | "node">,
  planned: ReadonlyArray<{ readonly id: string; readonly spec: StorageVolumeSpecValue }> = [],
): StorageRefusal | undefined => {
  const checked = checkDisks(store, system, spec.disks, planned)
  if ("reason" in checked) return checked
  if (checked.pin !== undefined && spec.node !== undefined && spec.node !== checked.pin.node)
    return refuse("invalid", `system ${system} is on ${spec.node}, but its ${checked.pin.reason}`)
  return undefined
}

/** What storage refuses of an operation: attaching a volume the system may not have, migrating off its disks' node. */
export const admitOperation = (
  store: StorageReader,
  system: string,
  spec: SystemSpecValue | undefined,
  operation: string,
  parameters: Readonly<Record<string, string>>,
): StorageRefusal | undefined => {
  if (spec === undefined) return undefined
  const volume = parameters.volume
  if (operation === "attach" && volume !== undefined && !spec.disks.some((disk) => disk.volume === volume))
    return admitSystemDisks(store, system, {
      ...spec,
      disks: [
        ...spec.disks,
        { volume: volume as SystemSpecValue["disks"][number]["volume"], bus: "virtio", boot: false },
      ],
    })
  if (operation === "migrate" && parameters.to !== undefined) {
    const checked = checkDisks(store, system, spec.disks)
    if ("pin" in checked && checked.pin !== undefined && checked.pin.node !== parameters.to)
      return {
        reason: "invalid",
        message: `system ${system} cannot leave ${checked.pin.node}: its ${checked.pin.reason}`,
      }
  }
  return undefined
}
