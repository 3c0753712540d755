/**
 * The storage service of one node as a sans-I/O state machine, as the hypervisor's is: it reads
 * what the CDB wants (the pools that live on this node, the volumes in them, the volumes deleted)
 * and what its driver last reported (each pool's figures and image files), and answers with
 * driver calls and meta writes. The node carries the calls out through the storage port, the
 * simulator through its simulated driver. Same core, same decisions.
 *
 * Reconciliation is level-triggered, one driver call per pool or volume at a time: a pool is
 * built where it is missing; a volume is made where its pool has no file for it, grown where its
 * file is smaller than its spec; a file whose volume the store holds a tombstone for is deleted.
 * A file the store knows nothing of is never deleted (a store that lost objects must not take
 * their disks with it): the pool's meta lists it as an orphan.
 *
 * The pool's node is the one authority on its space: a volume is made only if the sizes of the
 * volumes in the pool, this one's included, stay within the pool's capacity times its
 * over-commit; one that does not fit fails with the pool and both figures named, and is not
 * tried again until its spec changes or space is freed. The API refuses early on the same rule
 * (from the pool's figures); this is what holds when two clients race.
 */
import {
  type DeviceInfo,
  type PoolDefinition,
  type PoolDriver,
  type PoolInfo,
  poolCapabilities,
  type ShareDefinition,
  type StorageErrorReason,
  type VolumeDefinition,
  type VolumeFormat,
  type VolumeInfo,
  whyNoSnapshots,
} from "../ports/storage.ts"
import {
  type DeviceMetaValue,
  type DeviceSpecValue,
  deviceRecords,
  type ShareMetaValue,
  type ShareSpecValue,
  type SnapshotMetaValue,
  type SnapshotSpecValue,
  type StorageTaskValue,
} from "./objects.ts"

export * from "./objects.ts"

export interface StoragePoolSpecValue {
  readonly name: string
  readonly driver: PoolDriver
  readonly node?: string
  readonly shared: boolean
  readonly path?: string
  readonly overcommit?: number
  readonly source?: string
}

export interface StorageVolumeSpecValue {
  readonly name: string
  readonly pool: string
  readonly sizeBytes: number
  readonly format: VolumeFormat
  readonly source?: string
  readonly shareable?: boolean
}

export type PoolState = "building" | "active" | "failed" | "deleting"
export type VolumeState = "creating" | "available" | "attached" | "resizing" | "failed" | "deleting"

export interface PoolMetaValue {
  readonly state: PoolState
  readonly capabilities?: (typeof poolCapabilities)[PoolDriver]
  readonly path?: string
  readonly orphans?: ReadonlyArray<string>
  readonly detail?: string
}

export interface VolumeMetaValue {
  readonly state: VolumeState
  readonly path?: string
  readonly capacityBytes?: number
  readonly detail?: string
}

export interface StorageConfig {
  readonly self: string
  /** Where a pool with no path of its own lives on this node: `${poolRoot}/${pool id}`. */
  readonly poolRoot: string
  /** How often the driver is asked for every pool's figures and files. */
  readonly observeEveryMs: number
  /** Wait after a driver failure before the same pool or volume is tried again. */
  readonly retryMs: number
  /** How often the host's block devices are listed (and their SMART health read). */
  readonly devicesEveryMs?: number
}

export const defaultStorageTimings = {
  observeEveryMs: 2_000,
  retryMs: 5_000,
  devicesEveryMs: 30_000,
} as const

export interface View {
  /** Every pool in the store. */
  readonly pools: ReadonlyArray<{ readonly id: string; readonly spec: StoragePoolSpecValue }>
  /** Every volume in the store. */
  readonly volumes: ReadonlyArray<{ readonly id: string; readonly spec: StorageVolumeSpecValue }>
  /** Whether the store holds a tombstone for this volume (it was deleted). */
  readonly deleted: (volume: string) => boolean
  /** Volumes a system's spec names as a disk. */
  readonly inUse: ReadonlySet<string>
  /** Volumes that are disks of a system not wanted stopped (a revert would pull the disk from under it). */
  readonly active?: ReadonlySet<string>
  /** Every snapshot in the store. */
  readonly snapshots?: ReadonlyArray<{ readonly id: string; readonly spec: SnapshotSpecValue }>
  /** Whether the store holds a tombstone for this snapshot. */
  readonly snapshotDeleted?: (snapshot: string) => boolean
  /** Every share in the store. */
  readonly shares?: ReadonlyArray<{ readonly id: string; readonly spec: ShareSpecValue }>
  /** Every storage device in the store. */
  readonly devices?: ReadonlyArray<{ readonly id: string; readonly spec: DeviceSpecValue }>
  /** Storage tasks (reverts) this node owns that are queued or running. */
  readonly tasks?: ReadonlyArray<{ readonly id: string; readonly spec: StorageTaskValue }>
}

export type StorageCall =
  | { readonly _tag: "ensurePool"; readonly pool: PoolDefinition }
  | { readonly _tag: "createVolume"; readonly pool: PoolDefinition; readonly volume: VolumeDefinition }
  | {
      readonly _tag: "resizeVolume"
      readonly pool: PoolDefinition
      readonly volume: string
      readonly sizeBytes: number
    }
  | { readonly _tag: "deleteVolume"; readonly pool: PoolDefinition; readonly volume: string }
  /** Remove what a create broken off by a crash left of this volume. */
  | { readonly _tag: "discardPartial"; readonly pool: PoolDefinition; readonly volume: string }
  | {
      readonly _tag: "createSnapshot" | "deleteSnapshot" | "revertSnapshot"
      readonly pool: PoolDefinition
      readonly volume: string
      readonly snapshot: string
    }

export interface Observed {
  readonly pool: string
  readonly info?: PoolInfo
  readonly volumes?: ReadonlyArray<VolumeInfo>
  /** Volumes with a half-made image left by a create that was broken off (a crash). */
  readonly partials?: ReadonlyArray<string>
  readonly error?: { readonly reason: StorageErrorReason; readonly detail: string }
}

export type Input =
  | { readonly _tag: "ViewChanged"; readonly view: View }
  | { readonly _tag: "Observed"; readonly pools: ReadonlyArray<Observed> }
  | {
      readonly _tag: "CallDone"
      readonly requestId: number
      /** What the call made: the pool's figures, or the volume as it is now. */
      readonly pool?: PoolInfo
      readonly volume?: VolumeInfo
      readonly error?: { readonly reason: StorageErrorReason; readonly detail: string }
    }
  | { readonly _tag: "DevicesObserved"; readonly devices: ReadonlyArray<DeviceInfo> }
  | {
      readonly _tag: "SharesApplied"
      readonly requestId: number
      readonly error?: { readonly reason: StorageErrorReason; readonly detail: string }
    }
  | { readonly _tag: "DeadlineReached" }

export type Output =
  | { readonly _tag: "Call"; readonly requestId: number; readonly target: string; readonly call: StorageCall }
  /** Ask the driver for these pools' figures and files (answered with `Observed`). */
  | { readonly _tag: "Observe"; readonly pools: ReadonlyArray<PoolDefinition> }
  | { readonly _tag: "WritePoolMeta"; readonly pool: string; readonly meta: PoolMetaValue }
  | { readonly _tag: "WriteVolumeMeta"; readonly volume: string; readonly meta: VolumeMetaValue }
  | { readonly _tag: "WriteSnapshotMeta"; readonly snapshot: string; readonly meta: SnapshotMetaValue }
  /** Serve exactly these shares (answered with `SharesApplied`). */
  | {
      readonly _tag: "ApplyShares"
      readonly requestId: number
      readonly shares: ReadonlyArray<ShareDefinition>
    }
  | { readonly _tag: "WriteShareMeta"; readonly share: string; readonly meta: ShareMetaValue }
  /** Ask for the host's block devices (answered with `DevicesObserved`). */
  | { readonly _tag: "ObserveDevices" }
  | { readonly _tag: "WriteDevice"; readonly device: string; readonly spec: DeviceSpecValue }
  | { readonly _tag: "WriteDeviceMeta"; readonly device: string; readonly meta: DeviceMetaValue }
  | { readonly _tag: "WriteTask"; readonly id: string; readonly spec: StorageTaskValue }
  | { readonly _tag: "ArmDeadline"; readonly atMs: number }

/** A pool's definition on this node, or undefined for a pool that lives on another. */
export const poolOn = (
  config: Pick<StorageConfig, "self" | "poolRoot">,
  id: string,
  spec: StoragePoolSpecValue,
): PoolDefinition | undefined =>
  spec.node === config.self && !spec.shared
    ? {
        id,
        driver: spec.driver,
        path: spec.path ?? `${config.poolRoot}/${id}`,
        ...(spec.source === undefined ? {} : { source: spec.source }),
      }
    : undefined

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(2)} GiB`

/** Why a volume does not fit its pool, or undefined if it does (`sizes`: the others' sizes). */
export const doesNotFit = (
  pool: { readonly id: string; readonly capacityBytes: number; readonly overcommit: number },
  othersBytes: number,
  volume: { readonly id: string; readonly sizeBytes: number },
): string | undefined => {
  const limit = Math.floor(pool.capacityBytes * pool.overcommit)
  const free = Math.max(0, limit - othersBytes)
  return volume.sizeBytes <= free
    ? undefined
    : `volume ${volume.id} needs ${volume.sizeBytes} bytes (${gib(volume.sizeBytes)}); pool ${pool.id} has ${free} of ${limit} bytes (${gib(free)} of ${gib(limit)}) left to give`
}

/** The size a create makes: its own, or its source's if that is larger (a clone copies it whole). */
const sizeMade = (volume: VolumeDefinition, files: ReadonlyMap<string, VolumeInfo>): number =>
  Math.max(
    volume.sizeBytes,
    volume.cloneOf === undefined ? 0 : (files.get(volume.cloneOf)?.capacityBytes ?? 0),
  )

interface Failure {
  /** The spec (or pool) it failed for: a changed spec is tried again at once. */
  readonly key: string
  readonly reason: StorageErrorReason
  readonly detail: string
  readonly atMs: number
}

export class StorageNode {
  readonly config: StorageConfig
  private view: View = { pools: [], volumes: [], deleted: () => false, inUse: new Set() }
  private readonly observed = new Map<string, Observed>()
  /** Pool or volume id → the request in flight on it (a snapshot's call holds its volume). */
  private readonly inFlight = new Map<string, number>()
  private readonly requests = new Map<
    number,
    { readonly target: string; readonly lock: string; readonly call: StorageCall; readonly task?: string }
  >()
  /** Revert tasks this node has finished, until the store shows them finished. */
  private readonly tasksDone = new Set<string>()
  private readonly failures = new Map<string, Failure>()
  private readonly published = new Map<string, string>()
  private requestId = 0
  private nextObserveMs: number
  private observing = false
  private nextDevicesMs: number
  private observingDevices = false
  /** The shares the server serves (as a key), the apply in flight, and the last that failed. */
  private sharesApplied: string | undefined
  private sharesInFlight: { readonly requestId: number; readonly key: string } | undefined
  private sharesFailure:
    | {
        readonly reason: StorageErrorReason
        readonly detail: string
        readonly key: string
        readonly atMs: number
      }
    | undefined
  /** Calls answered so far, and when the observation in flight was asked for. */
  private callsDone = 0
  private callsDoneAtObserve = 0
  private outputs: Array<Output> = []

  constructor(config: StorageConfig, nowMs: number) {
    this.config = config
    this.nextObserveMs = nowMs
    this.nextDevicesMs = nowMs
  }

  /** The host's devices as this node's objects (`objects.ts`): specs that changed, and meta. */
  private onDevices(devices: ReadonlyArray<DeviceInfo>): void {
    const records = deviceRecords(this.config.self, devices, this.view.devices ?? [])
    for (const { id, spec } of records.specs) this.outputs.push({ _tag: "WriteDevice", device: id, spec })
    for (const { id, meta } of records.metas) this.publishDevice(id, meta)
  }

  /**
   * The shares of this node's active pools, served together by its one share server: when the
   * set it should serve differs from what it serves, it is applied whole (one apply at a time; a
   * failed one again after the retry wait, or at once when the set changes). Each share's meta
   * says whether it is exported, and if not, why.
   */
  private reconcileShares(pools: ReturnType<StorageNode["localPools"]>, nowMs: number): void {
    const wanted: Array<ShareDefinition> = []
    for (const { id, spec } of this.view.shares ?? []) {
      const pool = pools.find((each) => each.id === spec.pool)
      if (pool === undefined) continue
      if (this.observed.get(pool.id)?.info === undefined) {
        this.publishShare(id, { state: "unexported", detail: `pool ${spec.pool} is not active` })
        continue
      }
      const inside = spec.path.replace(/^\/+|\/+$/g, "")
      const path =
        inside === "" || inside === "." ? pool.definition.path : `${pool.definition.path}/${inside}`
      wanted.push({ id, path, clients: spec.clients, access: spec.access ?? "rw" })
    }
    const key = JSON.stringify(wanted)
    const failure = this.sharesFailure?.key === key ? this.sharesFailure : undefined
    for (const share of wanted)
      this.publishShare(
        share.id,
        this.sharesApplied === key
          ? { state: "exported", path: share.path, export: `/${share.id}` }
          : failure !== undefined
            ? { state: "failed", path: share.path, detail: `${failure.reason}: ${failure.detail}` }
            : { state: "unexported", path: share.path, detail: "being exported" },
      )
    if (this.sharesInFlight !== undefined || this.sharesApplied === key) return
    if (this.sharesApplied === undefined && wanted.length === 0) return
    if (failure !== undefined && nowMs < failure.atMs + this.config.retryMs) return
    const requestId = ++this.requestId
    this.sharesInFlight = { requestId, key }
    this.outputs.push({ _tag: "ApplyShares", requestId, shares: wanted })
  }

  private publishShare(id: string, meta: ShareMetaValue): void {
    if (this.changed(`share\u0000${id}`, meta)) this.outputs.push({ _tag: "WriteShareMeta", share: id, meta })
  }

  private publishDevice(id: string, meta: DeviceMetaValue): void {
    if (this.changed(`device\u0000${id}`, meta))
      this.outputs.push({ _tag: "WriteDeviceMeta", device: id, meta })
  }

  handle(input: Input, nowMs: number): ReadonlyArray<Output> {
    switch (input._tag) {
      case "ViewChanged":
        this.view = input.view
        // A finished task is forgotten once the store no longer lists it open.
        for (const id of [...this.tasksDone])
          if (!(input.view.tasks ?? []).some((task) => task.id === id)) this.tasksDone.delete(id)
        break
      case "Observed":
        this.observing = false
        // Taken while a call finished, it may predate what the call made: look again at once.
        if (this.callsDone !== this.callsDoneAtObserve) this.nextObserveMs = nowMs
        else for (const pool of input.pools) this.observed.set(pool.pool, pool)
        break
      case "CallDone":
        this.onCallDone(input, nowMs)
        break
      case "DevicesObserved":
        this.observingDevices = false
        this.onDevices(input.devices)
        break
      case "SharesApplied":
        if (this.sharesInFlight?.requestId !== input.requestId) break
        if (input.error === undefined) {
          this.sharesApplied = this.sharesInFlight.key
          this.sharesFailure = undefined
        } else this.sharesFailure = { ...input.error, key: this.sharesInFlight.key, atMs: nowMs }
        this.sharesInFlight = undefined
        break
      case "DeadlineReached":
        break
    }
    if (nowMs >= this.nextDevicesMs && !this.observingDevices) {
      this.observingDevices = true
      this.nextDevicesMs = nowMs + (this.config.devicesEveryMs ?? defaultStorageTimings.devicesEveryMs)
      this.outputs.push({ _tag: "ObserveDevices" })
    }
    const pools = this.localPools()
    if (nowMs >= this.nextObserveMs && !this.observing && pools.length > 0) {
      this.observing = true
      this.callsDoneAtObserve = this.callsDone
      this.nextObserveMs = nowMs + this.config.observeEveryMs
      this.outputs.push({ _tag: "Observe", pools: pools.map((pool) => pool.definition) })
    }
    this.reconcile(pools, nowMs)
    this.reconcileShares(pools, nowMs)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  private localPools() {
    return this.view.pools.flatMap(({ id, spec }) => {
      const definition = poolOn(this.config, id, spec)
      return definition === undefined ? [] : [{ id, spec, definition }]
    })
  }

  private onCallDone(input: Extract<Input, { readonly _tag: "CallDone" }>, nowMs: number): void {
    const request = this.requests.get(input.requestId)
    if (request === undefined) return
    this.requests.delete(input.requestId)
    this.inFlight.delete(request.lock)
    this.callsDone++
    const { call } = request
    const pool = this.observed.get(call.pool.id)
    if (call._tag === "createSnapshot" || call._tag === "deleteSnapshot" || call._tag === "revertSnapshot") {
      this.onSnapshotDone(request, input, nowMs)
      return
    }
    if (input.error !== undefined) {
      this.failures.set(request.target, {
        key: this.keyOf(request.target),
        reason: input.error.reason,
        detail: input.error.detail,
        atMs: nowMs,
      })
      // What failed may have changed what is there: look again soon.
      this.nextObserveMs = Math.min(this.nextObserveMs, nowMs + this.config.retryMs)
      return
    }
    this.failures.delete(request.target)
    const volumes = new Map((pool?.volumes ?? []).map((volume) => [volume.id, volume]))
    switch (call._tag) {
      case "ensurePool":
        this.observed.set(call.pool.id, {
          pool: call.pool.id,
          ...(input.pool === undefined ? {} : { info: input.pool }),
          volumes: [...volumes.values()],
        })
        return
      case "createVolume":
      case "resizeVolume":
        if (input.volume !== undefined) volumes.set(input.volume.id, input.volume)
        break
      case "deleteVolume":
        volumes.delete(call.volume)
        break
      case "discardPartial":
        break
    }
    if (pool === undefined) return
    // A create that finished moved its image into place; a discard took what was left: no part is left either way.
    const whole =
      call._tag === "createVolume" ? call.volume.id : call._tag === "discardPartial" ? call.volume : undefined
    const partials = (pool.partials ?? []).filter((volume) => volume !== whole)
    const { partials: _before, ...rest } = pool
    this.observed.set(pool.pool, {
      ...rest,
      volumes: [...volumes.values()],
      ...(partials.length === 0 ? {} : { partials }),
    })
  }

  /**
   * A snapshot call answered. A create that finds the snapshot there already, or a delete that
   * finds it (or its volume) gone, did what was asked: after a restart the core asks again for
   * what it cannot know it did. A revert finishes its task either way, saying which.
   */
  private onSnapshotDone(
    request: { readonly target: string; readonly call: StorageCall; readonly task?: string },
    input: Extract<Input, { readonly _tag: "CallDone" }>,
    nowMs: number,
  ): void {
    const call = request.call as Extract<StorageCall, { readonly snapshot: string }>
    const reason = input.error?.reason
    const done =
      reason === undefined ||
      (call._tag === "createSnapshot" && reason === "exists") ||
      (call._tag === "deleteSnapshot" && (reason === "no-such-snapshot" || reason === "no-such-volume"))
    if (call._tag === "revertSnapshot") {
      if (request.task !== undefined)
        this.finishTask(
          request.task,
          nowMs,
          input.error === undefined ? undefined : `${input.error.reason}: ${input.error.detail}`,
          `volume ${call.volume} reverted to snapshot ${call.snapshot}`,
        )
      return
    }
    if (!done) {
      this.failures.set(request.target, {
        key: this.keyOf(request.target),
        reason: input.error!.reason,
        detail: input.error!.detail,
        atMs: nowMs,
      })
      return
    }
    this.failures.delete(request.target)
    const pool = this.observed.get(call.pool.id)
    if (pool === undefined) return
    const volumes = (pool.volumes ?? []).map((volume) => {
      if (volume.id !== call.volume) return volume
      const others = (volume.snapshots ?? []).filter((name) => name !== call.snapshot)
      return { ...volume, snapshots: call._tag === "createSnapshot" ? [...others, call.snapshot] : others }
    })
    this.observed.set(pool.pool, { ...pool, volumes })
  }

  private finishTask(id: string, nowMs: number, error: string | undefined, note: string): void {
    const task = this.view.tasks?.find((each) => each.id === id)
    this.tasksDone.add(id)
    if (task === undefined) return
    this.outputs.push({
      _tag: "WriteTask",
      id,
      spec: {
        ...task.spec,
        state: error === undefined ? "succeeded" : "failed",
        log: [...task.spec.log, { atMs: nowMs, line: error ?? note }],
        ...(error === undefined ? {} : { error }),
      },
    })
  }

  /** What a failure was for: the volume's spec or the pool's, as JSON. */
  private keyOf(target: string): string {
    const volume = this.view.volumes.find((each) => each.id === target)
    if (volume !== undefined) return JSON.stringify(volume.spec)
    const snapshot = this.view.snapshots?.find((each) => each.id === target)
    if (snapshot !== undefined) return JSON.stringify(snapshot.spec)
    const pool = this.view.pools.find((each) => each.id === target)
    return pool === undefined ? "" : JSON.stringify(pool.spec)
  }

  /**
   * A failure that still holds: for the same spec, and either one that trying again cannot
   * mend (a request the driver calls invalid or cannot do) or one whose wait is not over.
   */
  private failureOf(target: string, nowMs: number): Failure | undefined {
    const failure = this.failures.get(target)
    if (failure === undefined || failure.key !== this.keyOf(target)) return undefined
    const lasting = failure.reason === "invalid" || failure.reason === "unsupported"
    return lasting || nowMs < failure.atMs + this.config.retryMs ? failure : undefined
  }

  private call(target: string, call: StorageCall, lock = target, task?: string): void {
    const requestId = ++this.requestId
    this.inFlight.set(lock, requestId)
    this.requests.set(requestId, { target, lock, call, ...(task === undefined ? {} : { task }) })
    this.outputs.push({ _tag: "Call", requestId, target, call })
  }

  private reconcile(pools: ReturnType<StorageNode["localPools"]>, nowMs: number): void {
    for (const { id, spec, definition } of pools) {
      const observed = this.observed.get(id)
      const capabilities = poolCapabilities[spec.driver]
      const failure = this.failureOf(id, nowMs)
      if (observed === undefined) continue // the first observation tells whether it is there
      if (observed.info === undefined && !this.inFlight.has(id)) {
        if (failure === undefined) this.call(id, { _tag: "ensurePool", pool: definition })
      }
      // A pool that failed stays failed while it is tried again (not "building" between tries).
      const lastFailure = this.failures.get(id)
      const failed = failure ?? (lastFailure?.key === this.keyOf(id) ? lastFailure : undefined)
      const state: PoolState =
        observed.info !== undefined ? "active" : failed !== undefined ? "failed" : "building"
      const known = new Set(this.view.volumes.map((volume) => volume.id))
      const orphans = (observed.volumes ?? [])
        .map((volume) => volume.id)
        .filter((volume) => !known.has(volume) && !this.view.deleted(volume))
      this.publishPool(id, {
        state,
        capabilities,
        path: definition.path,
        ...(orphans.length === 0 ? {} : { orphans }),
        ...(state === "failed" && failed !== undefined
          ? { detail: `${failed.reason}: ${failed.detail}` }
          : {}),
      })
      if (observed.info !== undefined) this.reconcileVolumes(id, spec, definition, observed, nowMs)
    }
  }

  private reconcileVolumes(
    poolId: string,
    spec: StoragePoolSpecValue,
    pool: PoolDefinition,
    observed: Observed,
    nowMs: number,
  ): void {
    const files = new Map((observed.volumes ?? []).map((volume) => [volume.id, volume]))
    // What a create broken off by a crash left goes first, whether its volume is still wanted (a
    // new create would trip over it) or not (it would hold its space for good).
    for (const volume of observed.partials ?? []) {
      if (this.inFlight.has(volume) || this.failureOf(volume, nowMs) !== undefined) continue
      this.call(volume, { _tag: "discardPartial", pool, volume })
    }
    // Files of deleted volumes go (a volume still named by a system waits).
    for (const file of files.values()) {
      if (!this.view.deleted(file.id) || this.inFlight.has(file.id) || this.view.inUse.has(file.id)) continue
      if (this.failureOf(file.id, nowMs) === undefined)
        this.call(file.id, { _tag: "deleteVolume", pool, volume: file.id })
    }
    // Space already given: every file's size (a deleted volume's too, until its file is gone),
    // and what the calls in flight will add (a volume being made, one being grown).
    let givenBytes = 0
    for (const file of files.values()) givenBytes += file.capacityBytes
    for (const { call } of this.requests.values()) {
      if (call.pool.id !== poolId) continue
      if (call._tag === "createVolume" && !files.has(call.volume.id))
        givenBytes += sizeMade(call.volume, files)
      if (call._tag === "resizeVolume")
        givenBytes += Math.max(0, call.sizeBytes - (files.get(call.volume)?.capacityBytes ?? 0))
    }
    const info = observed.info!
    const limits = { id: poolId, capacityBytes: info.capacityBytes, overcommit: spec.overcommit ?? 1 }
    const wanted = this.view.volumes
      .filter((volume) => volume.spec.pool === poolId)
      .sort((left, right) => (left.id < right.id ? -1 : 1))
    for (const { id, spec: volume } of wanted) {
      const file = files.get(id)
      const failure = this.failureOf(id, nowMs)
      if (this.inFlight.has(id)) {
        const request = this.requests.get(this.inFlight.get(id)!)
        this.publishVolume(id, {
          state:
            request?.call._tag === "resizeVolume"
              ? "resizing"
              : file === undefined
                ? "creating"
                : "available",
          ...(file === undefined ? {} : { path: file.path, capacityBytes: file.capacityBytes }),
        })
        continue
      }
      if (file === undefined) {
        // A clone waits while its source changes (it would copy it half-grown).
        if (volume.source !== undefined && this.inFlight.has(volume.source)) {
          this.publishVolume(id, { state: "creating" })
          continue
        }
        const source = volume.source === undefined ? undefined : files.get(volume.source)
        // A clone is as large as its source at least, whatever its spec says (grown since).
        const sizeBytes = Math.max(volume.sizeBytes, source?.capacityBytes ?? 0)
        const fits = doesNotFit(limits, givenBytes, { id, sizeBytes })
        const missingSource =
          volume.source !== undefined && source === undefined
            ? `the volume ${volume.source} to clone is not in pool ${poolId}`
            : undefined
        const holding = failure ?? (fits === undefined ? undefined : { reason: "no-space", detail: fits })
        if (holding !== undefined || missingSource !== undefined) {
          this.publishVolume(id, {
            state: "failed",
            detail: holding === undefined ? missingSource! : `${holding.reason}: ${holding.detail}`,
          })
          continue
        }
        givenBytes += sizeBytes
        this.call(id, {
          _tag: "createVolume",
          pool,
          volume: {
            id,
            sizeBytes: volume.sizeBytes,
            format: volume.format,
            ...(volume.source === undefined ? {} : { cloneOf: volume.source }),
          },
        })
        this.publishVolume(id, { state: "creating" })
        continue
      }
      if (file.capacityBytes < volume.sizeBytes) {
        const growth = volume.sizeBytes - file.capacityBytes
        const fits = doesNotFit(limits, givenBytes, { id, sizeBytes: growth })
        // Not while it is being copied (a clone of it in flight): it waits for the copy.
        const copying = [...this.requests.values()].some(
          ({ call }) => call._tag === "createVolume" && call.volume.cloneOf === id,
        )
        if (copying) continue
        if (failure === undefined && fits === undefined) {
          givenBytes += growth
          this.call(id, { _tag: "resizeVolume", pool, volume: id, sizeBytes: volume.sizeBytes })
          this.publishVolume(id, { state: "resizing", path: file.path, capacityBytes: file.capacityBytes })
          continue
        }
        const why = failure === undefined ? `no-space: ${fits}` : `${failure.reason}: ${failure.detail}`
        this.publishVolume(id, {
          state: this.view.inUse.has(id) ? "attached" : "available",
          path: file.path,
          capacityBytes: file.capacityBytes,
          detail: `cannot grow to ${volume.sizeBytes} bytes: ${why}`,
        })
        continue
      }
      this.publishVolume(id, {
        state: this.view.inUse.has(id) ? "attached" : "available",
        path: file.path,
        capacityBytes: file.capacityBytes,
      })
    }
    for (const file of files.values()) this.reconcileSnapshots(spec, pool, file, nowMs)
    // A revert with nothing to revert ends at once, saying why (it would wait forever).
    for (const { id, spec: task } of this.view.tasks ?? []) {
      if (task.operation !== "storage.revert" || this.tasksDone.has(id)) continue
      const snapshot = (this.view.snapshots ?? []).find((each) => each.id === task.target.id)
      const volume = this.view.volumes.find(
        (each) => each.id === (snapshot?.spec.volume ?? task.parameters.volume),
      )
      if (volume !== undefined && volume.spec.pool !== poolId) continue
      if (snapshot === undefined)
        this.finishTask(id, nowMs, `there is no storage-snapshot ${task.target.id}`, "")
      else if (volume === undefined || (!files.has(volume.id) && !this.inFlight.has(volume.id)))
        this.finishTask(id, nowMs, `volume ${snapshot.spec.volume} has no image in pool ${poolId}`, "")
    }
  }

  /**
   * A volume's snapshots, one call at a time on the volume (after its own): a snapshot whose
   * object is deleted goes; one the store wants is taken; a revert task this node owns runs
   * when the volume is no running system's disk. A snapshot on a volume or pool that cannot have
   * one fails, saying so from the pool's capabilities.
   */
  private reconcileSnapshots(
    spec: StoragePoolSpecValue,
    pool: PoolDefinition,
    file: VolumeInfo,
    nowMs: number,
  ): void {
    const wanted = (this.view.snapshots ?? []).filter((snapshot) => snapshot.spec.volume === file.id)
    const onDisk = new Set(file.snapshots ?? [])
    const cannot = whyNoSnapshots(spec.driver, file.id, file.format)
    const busy = () => this.inFlight.has(file.id)
    for (const name of onDisk) {
      if (busy()) break
      if (this.view.snapshotDeleted?.(name) === true && this.failureOf(name, nowMs) === undefined)
        this.call(name, { _tag: "deleteSnapshot", pool, volume: file.id, snapshot: name }, file.id)
    }
    for (const { id } of wanted) {
      if (onDisk.has(id)) {
        this.publishSnapshot(id, { state: "available" })
        continue
      }
      const failure = this.failureOf(id, nowMs)
      const unable =
        cannot !== undefined
          ? `unsupported: ${cannot}`
          : failure === undefined
            ? undefined
            : `${failure.reason}: ${failure.detail}`
      if (unable !== undefined) {
        this.publishSnapshot(id, { state: "failed", detail: unable })
        continue
      }
      this.publishSnapshot(id, { state: "creating" })
      if (!busy()) this.call(id, { _tag: "createSnapshot", pool, volume: file.id, snapshot: id }, file.id)
    }
    for (const { id, spec: task } of this.view.tasks ?? []) {
      if (task.operation !== "storage.revert" || this.tasksDone.has(id) || busy()) continue
      const snapshot = (this.view.snapshots ?? []).find((each) => each.id === task.target.id)
      if (snapshot?.spec.volume !== file.id) continue
      if (this.view.active?.has(file.id) === true) {
        this.finishTask(
          id,
          nowMs,
          `volume ${file.id} is a disk of a system that is not stopped; stop it first`,
          "",
        )
        continue
      }
      if (!onDisk.has(snapshot.id)) {
        this.finishTask(id, nowMs, `volume ${file.id} has no snapshot ${snapshot.id} (yet)`, "")
        continue
      }
      this.call(
        snapshot.id,
        { _tag: "revertSnapshot", pool, volume: file.id, snapshot: snapshot.id },
        file.id,
        id,
      )
    }
  }

  private publishPool(id: string, meta: PoolMetaValue): void {
    if (this.changed(`pool\u0000${id}`, meta)) this.outputs.push({ _tag: "WritePoolMeta", pool: id, meta })
  }

  private publishSnapshot(id: string, meta: SnapshotMetaValue): void {
    if (this.changed(`snapshot\u0000${id}`, meta))
      this.outputs.push({ _tag: "WriteSnapshotMeta", snapshot: id, meta })
  }

  private publishVolume(id: string, meta: VolumeMetaValue): void {
    if (this.changed(`volume\u0000${id}`, meta))
      this.outputs.push({ _tag: "WriteVolumeMeta", volume: id, meta })
  }

  private changed(key: string, value: unknown): boolean {
    const text = JSON.stringify(value)
    if (this.published.get(key) === text) return false
    this.published.set(key, text)
    return true
  }

  private nextDeadline(nowMs: number): number {
    let next = this.localPools().length > 0 ? this.nextObserveMs : Number.POSITIVE_INFINITY
    if (!this.observingDevices) next = Math.min(next, this.nextDevicesMs)
    if (this.sharesFailure !== undefined && this.sharesFailure.atMs + this.config.retryMs > nowMs)
      next = Math.min(next, this.sharesFailure.atMs + this.config.retryMs)
    for (const failure of this.failures.values()) {
      const retryAt = failure.atMs + this.config.retryMs
      if (retryAt > nowMs) next = Math.min(next, retryAt)
    }
    return Math.max(next, nowMs + 1)
  }
}
