/**
 * The simulator's storage driver: one per simulated host, deterministic (all chance from the
 * PRNG it is given), answering the storage core's calls as the dir driver does (the same
 * `StorageError` reasons). Its faults are a real disk's: an operation that fails (a clone that
 * breaks off half-way leaves nothing, as the dir driver's partial files), a slow one (a clone's
 * time grows with what it copies), and no space. A host crash breaks off the calls still running
 * on it, as a real disk would leave them: a create (or clone) that had not yet moved its image
 * into place leaves the part it wrote as a partial image, which takes space and is no volume; a
 * snapshot or a revert had either happened or not (qcow2 updates its snapshot table last). What
 * had finished is on disk, and the node's next run observes it.
 */
import type { DeviceInfo, PoolDefinition, StorageErrorReason, VolumeInfo } from "../core/ports/storage.ts"
import type { Observed, StorageCall } from "../core/storage/storage.ts"
import type { Prng } from "./prng.ts"

export interface SimStorageFaults {
  /** Chance that a call fails (`failed`) and changes nothing. */
  readonly failurePermille: number
  /** Chance that a call takes up to `slowUs` longer. */
  readonly slowPermille: number
  readonly slowUs: number
}

export interface StorageCallResult {
  readonly latencyUs: number
  readonly pool?: {
    readonly capacityBytes: number
    readonly allocationBytes: number
    readonly availableBytes: number
  }
  readonly volume?: VolumeInfo
  readonly error?: { readonly reason: StorageErrorReason; readonly detail: string }
}

/** What a volume's image holds, for the allocation it takes (a fresh one takes 1 MiB). */
const freshAllocation = 1024 * 1024

export class SimStorage {
  /** Pools built on this host: their capacity and files. */
  readonly pools = new Map<
    string,
    {
      readonly capacityBytes: number
      readonly files: Map<string, VolumeInfo>
      /** Half-made images a crash left (volume → the space it takes). */
      readonly partials: Map<string, number>
    }
  >()
  /** Calls still running on the disk when their answer is due (what a crash breaks off). */
  private running: Array<{ readonly dueUs: number; readonly call: StorageCall; readonly before?: number }> =
    []
  /** Creates broken off by crashes, and snapshots and reverts undone by them. */
  brokenOff = 0
  /**
   * What each volume holds, as a version number a write raises (its content, modelled), and
   * what each snapshot held when it was taken ("volume/snapshot" → version).
   */
  readonly contents = new Map<string, number>()
  readonly snapshotContents = new Map<string, number>()
  private writes = 0
  private readonly prng: Prng
  private readonly faults: SimStorageFaults
  private readonly capacityBytes: number

  constructor(prng: Prng, faults: SimStorageFaults, capacityBytes: number) {
    this.prng = prng
    this.faults = faults
    this.capacityBytes = capacityBytes
  }

  private info(pool: string) {
    const { capacityBytes, files, partials } = this.pools.get(pool)!
    let allocationBytes = 0
    for (const file of files.values()) allocationBytes += file.allocationBytes
    for (const bytes of partials.values()) allocationBytes += bytes
    return { capacityBytes, allocationBytes, availableBytes: Math.max(0, capacityBytes - allocationBytes) }
  }

  /**
   * What a look at the pools finds at `nowUs`. A create still running shows as the partial image
   * it is writing, not as a volume: the real drivers move an image into place as their last step.
   */
  observe(pools: ReadonlyArray<PoolDefinition>, nowUs: number): ReadonlyArray<Observed> {
    return pools.map((pool) => {
      if (!this.pools.has(pool.id))
        return {
          pool: pool.id,
          error: { reason: "no-such-pool" as const, detail: `pool ${pool.id} has no directory ${pool.path}` },
        }
      const making = new Set(
        this.running.flatMap(({ dueUs, call }) =>
          dueUs > nowUs && call._tag === "createVolume" && call.pool.id === pool.id ? [call.volume.id] : [],
        ),
      )
      const partials = [...new Set([...(this.partialsOf(pool.id).partials ?? []), ...making])].sort()
      return {
        pool: pool.id,
        info: this.info(pool.id),
        volumes: [...this.pools.get(pool.id)!.files.values()].filter((volume) => !making.has(volume.id)),
        ...(partials.length === 0 ? {} : { partials }),
      }
    })
  }

  private partialsOf(pool: string): { readonly partials?: ReadonlyArray<string> } {
    const partials = [...this.pools.get(pool)!.partials.keys()].sort()
    return partials.length === 0 ? {} : { partials }
  }

  /** Every half-made image on this disk, as "pool/volume". */
  partials(): ReadonlyArray<string> {
    return [...this.pools].flatMap(([id, pool]) =>
      [...pool.partials.keys()].map((volume) => `${id}/${volume}`),
    )
  }

  /**
   * The host went down at `nowUs`: each call still running is broken off where it was — half of
   * them before their last step (a create's image not yet moved into place, a snapshot or revert
   * not yet made), the other half just after it.
   */
  hostCrashed(nowUs: number): void {
    const running = this.running.filter((each) => each.dueUs > nowUs)
    this.running = []
    for (const { call, before } of running) {
      if (!this.prng.chance(500)) continue
      const pool = this.pools.get(call.pool.id)
      if (pool === undefined) continue
      if (call._tag === "createVolume") {
        const made = pool.files.get(call.volume.id)
        if (made === undefined) continue
        pool.files.delete(call.volume.id)
        pool.partials.set(call.volume.id, made.allocationBytes)
        this.brokenOff++
      } else if (call._tag === "createSnapshot") {
        const file = pool.files.get(call.volume)
        if (file === undefined) continue
        pool.files.set(call.volume, {
          ...file,
          snapshots: (file.snapshots ?? []).filter((name) => name !== call.snapshot),
        })
        this.snapshotContents.delete(`${call.volume}/${call.snapshot}`)
        this.brokenOff++
      } else if (call._tag === "revertSnapshot" && before !== undefined) {
        this.contents.set(call.volume, before)
        this.brokenOff++
      }
    }
  }

  /**
   * Carries a call out at once; its answer is due after `latencyUs` (at least 1 ms), and until
   * then it is running on the disk, for a crash to break off.
   */
  execute(call: StorageCall, nowUs: number): StorageCallResult {
    const before = call._tag === "revertSnapshot" ? (this.contents.get(call.volume) ?? 0) : undefined
    const result = this.carry(call)
    if (result.error === undefined)
      this.running.push({
        dueUs: nowUs + Math.max(1_000, result.latencyUs),
        call,
        ...(before === undefined ? {} : { before }),
      })
    return result
  }

  private carry(call: StorageCall): StorageCallResult {
    const slow = this.prng.chance(this.faults.slowPermille) ? this.prng.below(this.faults.slowUs) : 0
    const base = 2_000 + slow
    if (this.prng.chance(this.faults.failurePermille))
      return { latencyUs: base, error: { reason: "failed", detail: `${call._tag}: I/O error (simulated)` } }
    if (call._tag === "ensurePool") {
      if (!this.pools.has(call.pool.id))
        this.pools.set(call.pool.id, {
          capacityBytes: this.capacityBytes,
          files: new Map(),
          partials: new Map(),
        })
      return { latencyUs: base, pool: this.info(call.pool.id) }
    }
    const pool = this.pools.get(call.pool.id)
    if (pool === undefined)
      return {
        latencyUs: base,
        error: { reason: "no-such-pool", detail: `no pool ${call.pool.id} on this host` },
      }
    const missing = (volume: string) => ({
      latencyUs: base,
      error: { reason: "no-such-volume" as const, detail: `no volume ${volume} in pool ${call.pool.id}` },
    })
    switch (call._tag) {
      case "discardPartial":
        pool.partials.delete(call.volume)
        return { latencyUs: base }
      case "createVolume": {
        const { volume } = call
        if (pool.files.has(volume.id))
          return {
            latencyUs: base,
            error: { reason: "exists", detail: `pool ${call.pool.id} already holds ${volume.id}` },
          }
        // As btrfs's `subvolume create` on a path that is there: a half-made image is in the way.
        if (pool.partials.has(volume.id))
          return {
            latencyUs: base,
            error: { reason: "failed", detail: `a half-made image of ${volume.id} is in the way` },
          }
        const source = volume.cloneOf === undefined ? undefined : pool.files.get(volume.cloneOf)
        if (volume.cloneOf !== undefined && source === undefined) return missing(volume.cloneOf)
        const allocationBytes = source?.allocationBytes ?? freshAllocation
        if (allocationBytes > this.info(call.pool.id).availableBytes)
          return {
            latencyUs: base,
            error: { reason: "no-space", detail: `No space left on device (pool ${call.pool.id})` },
          }
        const made: VolumeInfo = {
          id: volume.id,
          path: `${call.pool.path}/${volume.id}.${volume.format}`,
          format: volume.format,
          capacityBytes: Math.max(volume.sizeBytes, source?.capacityBytes ?? 0),
          allocationBytes,
        }
        pool.files.set(volume.id, made)
        // A copy takes time with what it copies (1 ms a MiB).
        return { latencyUs: base + Math.floor(allocationBytes / 1024), volume: made }
      }
      case "resizeVolume": {
        const file = pool.files.get(call.volume)
        if (file === undefined) return missing(call.volume)
        if (call.sizeBytes < file.capacityBytes)
          return { latencyUs: base, error: { reason: "invalid", detail: `${call.volume} cannot shrink` } }
        const grown = { ...file, capacityBytes: call.sizeBytes }
        pool.files.set(call.volume, grown)
        return { latencyUs: base, volume: grown }
      }
      case "deleteVolume":
        if (!pool.files.delete(call.volume)) return missing(call.volume)
        this.contents.delete(call.volume)
        for (const key of [...this.snapshotContents.keys()])
          if (key.startsWith(`${call.volume}/`)) this.snapshotContents.delete(key)
        return { latencyUs: base }
      case "createSnapshot":
      case "deleteSnapshot":
      case "revertSnapshot": {
        const file = pool.files.get(call.volume)
        if (file === undefined) return missing(call.volume)
        const key = `${call.volume}/${call.snapshot}`
        const has = (file.snapshots ?? []).includes(call.snapshot)
        const noSnapshot = {
          latencyUs: base,
          error: {
            reason: "no-such-snapshot" as const,
            detail: `${call.volume} has no snapshot ${call.snapshot}`,
          },
        }
        if (call._tag === "createSnapshot") {
          if (file.format !== "qcow2")
            return { latencyUs: base, error: { reason: "unsupported", detail: `${call.volume} is raw` } }
          if (has) return { latencyUs: base, error: { reason: "exists", detail: `${call.snapshot} exists` } }
          pool.files.set(call.volume, { ...file, snapshots: [...(file.snapshots ?? []), call.snapshot] })
          this.snapshotContents.set(key, this.contents.get(call.volume) ?? 0)
          return { latencyUs: base }
        }
        if (!has) return noSnapshot
        if (call._tag === "deleteSnapshot") {
          const snapshots = (file.snapshots ?? []).filter((name) => name !== call.snapshot)
          pool.files.set(call.volume, { ...file, snapshots })
          this.snapshotContents.delete(key)
          return { latencyUs: base }
        }
        this.contents.set(call.volume, this.snapshotContents.get(key) ?? 0)
        return { latencyUs: base }
      }
    }
  }

  /** The host's one disk, as discovery would list it. */
  devices(): ReadonlyArray<DeviceInfo> {
    return [
      {
        name: "vda",
        path: "/dev/vda",
        sizeBytes: this.capacityBytes,
        type: "disk",
        rotational: false,
        smart: "unknown",
      },
    ]
  }

  /** A guest's write to a volume: its content changes (a new version). */
  write(volume: string): void {
    if ([...this.pools.values()].some((pool) => pool.files.has(volume)))
      this.contents.set(volume, ++this.writes)
  }
}
