import { describe, expect, it } from "vitest"
import type {
  DeviceInfo,
  PoolInfo,
  ShareDefinition,
  StorageErrorReason,
  VolumeInfo,
} from "../../../core/ports/storage.ts"
import {
  type DeviceMetaValue,
  type DeviceSpecValue,
  defaultStorageTimings,
  type Input,
  type Output,
  type PoolMetaValue,
  type ShareMetaValue,
  type ShareSpecValue,
  type SnapshotMetaValue,
  StorageNode,
  type StoragePoolSpecValue,
  type StorageTaskValue,
  type StorageVolumeSpecValue,
  type View,
  type VolumeMetaValue,
} from "../../../core/storage/storage.ts"

const mib = 1024 * 1024

/**
 * The storage core against a driver that answers at once from a map of pools and their files,
 * and can be told to fail the next call for a target. Time moves only when the test says so.
 */
class Harness {
  readonly core: StorageNode
  nowMs = 0
  readonly pools = new Map<
    string,
    { capacityBytes: number; files: Map<string, VolumeInfo>; partials?: Set<string> }
  >()
  readonly poolMeta = new Map<string, PoolMetaValue>()
  readonly volumeMeta = new Map<string, VolumeMetaValue>()
  readonly calls: Array<string> = []
  readonly failNext = new Map<string, StorageErrorReason>()
  /** Targets whose calls the driver has carried out but not yet answered (a slow copy). */
  readonly slow = new Set<string>()
  readonly unanswered: Array<{ target: string; answer: Input }> = []
  poolSpecs: Array<{ id: string; spec: StoragePoolSpecValue }> = []
  volumeSpecs: Array<{ id: string; spec: StorageVolumeSpecValue }> = []
  tombstones = new Set<string>()
  inUse = new Set<string>()
  active = new Set<string>()
  snapshots: Array<{ id: string; spec: { name: string; volume: string } }> = []
  snapshotTombstones = new Set<string>()
  tasks: Array<{ id: string; spec: StorageTaskValue }> = []
  readonly snapshotMeta = new Map<string, SnapshotMetaValue>()
  readonly taskWrites = new Map<string, StorageTaskValue>()
  devices: Array<DeviceInfo> = []
  shares: Array<{ id: string; spec: ShareSpecValue }> = []
  readonly applied: Array<ReadonlyArray<ShareDefinition>> = []
  readonly shareMeta = new Map<string, ShareMetaValue>()
  failShares: StorageErrorReason | undefined
  readonly deviceSpecs = new Map<string, DeviceSpecValue>()
  readonly deviceMeta = new Map<string, DeviceMetaValue>()
  capacityOfNewPools = 100 * mib
  private deadlineMs = Number.POSITIVE_INFINITY

  constructor() {
    this.core = new StorageNode({ ...defaultStorageTimings, self: "n1", poolRoot: "/pools" }, 0)
  }

  pool(id: string, spec: Partial<StoragePoolSpecValue> = {}): void {
    this.poolSpecs.push({ id, spec: { name: id, driver: "dir", node: "n1", shared: false, ...spec } })
  }

  volume(id: string, sizeBytes: number, spec: Partial<StorageVolumeSpecValue> = {}): void {
    this.volumeSpecs = this.volumeSpecs.filter((volume) => volume.id !== id)
    this.volumeSpecs.push({ id, spec: { name: id, pool: "p1", sizeBytes, format: "qcow2", ...spec } })
  }

  view(): View {
    return {
      pools: this.poolSpecs,
      volumes: this.volumeSpecs,
      deleted: (volume) => this.tombstones.has(volume),
      inUse: this.inUse,
      active: this.active,
      snapshots: this.snapshots,
      snapshotDeleted: (snapshot) => this.snapshotTombstones.has(snapshot),
      tasks: this.tasks,
      devices: [...this.deviceSpecs].map(([id, spec]) => ({ id, spec })),
      shares: this.shares,
    }
  }

  info(pool: string): PoolInfo {
    const { capacityBytes, files } = this.pools.get(pool)!
    const allocationBytes = [...files.values()].reduce((sum, file) => sum + file.allocationBytes, 0)
    return { capacityBytes, allocationBytes, availableBytes: capacityBytes - allocationBytes }
  }

  /** Feeds one input, then carries out every call and observation until nothing is left. */
  feed(input: Input): void {
    const queue: Array<Input> = [input]
    while (queue.length > 0) {
      for (const output of this.core.handle(queue.shift()!, this.nowMs)) queue.push(...this.carry(output))
    }
  }

  changed(): void {
    this.feed({ _tag: "ViewChanged", view: this.view() })
  }

  /** Moves time on, stepping the core at each deadline it asked for. */
  advance(ms: number): void {
    const until = this.nowMs + ms
    while (this.deadlineMs <= until) {
      this.nowMs = this.deadlineMs
      this.deadlineMs = Number.POSITIVE_INFINITY
      this.feed({ _tag: "DeadlineReached" })
    }
    this.nowMs = until
  }

  /** Answers the calls held for `target`. */
  answer(target: string): void {
    this.slow.delete(target)
    for (const held of this.unanswered.filter((each) => each.target === target)) {
      this.unanswered.splice(this.unanswered.indexOf(held), 1)
      this.feed(held.answer)
    }
  }

  private carry(output: Output): ReadonlyArray<Input> {
    if (output._tag === "Call" && this.slow.has(output.target)) {
      const [answer] = this.carryNow(output)
      this.unanswered.push({ target: output.target, answer: answer! })
      return []
    }
    return this.carryNow(output)
  }

  private carryNow(output: Output): ReadonlyArray<Input> {
    switch (output._tag) {
      case "WritePoolMeta":
        this.poolMeta.set(output.pool, output.meta)
        return []
      case "WriteVolumeMeta":
        this.volumeMeta.set(output.volume, output.meta)
        return []
      case "WriteSnapshotMeta":
        this.snapshotMeta.set(output.snapshot, output.meta)
        return []
      case "WriteTask":
        this.taskWrites.set(output.id, output.spec)
        return []
      case "ObserveDevices":
        return [{ _tag: "DevicesObserved", devices: this.devices }]
      case "ApplyShares":
        this.applied.push(output.shares)
        return [
          this.failShares === undefined
            ? { _tag: "SharesApplied", requestId: output.requestId }
            : {
                _tag: "SharesApplied",
                requestId: output.requestId,
                error: { reason: this.failShares, detail: "planted" },
              },
        ]
      case "WriteShareMeta":
        this.shareMeta.set(output.share, output.meta)
        return []
      case "WriteDevice":
        this.deviceSpecs.set(output.device, output.spec)
        return []
      case "WriteDeviceMeta":
        this.deviceMeta.set(output.device, output.meta)
        return []
      case "ArmDeadline":
        this.deadlineMs = Math.min(this.deadlineMs, output.atMs)
        return []
      case "Observe":
        return [
          {
            _tag: "Observed",
            pools: output.pools.map((pool) =>
              this.pools.has(pool.id)
                ? {
                    pool: pool.id,
                    info: this.info(pool.id),
                    volumes: [...this.pools.get(pool.id)!.files.values()],
                    ...(this.pools.get(pool.id)!.partials?.size
                      ? { partials: [...this.pools.get(pool.id)!.partials!].sort() }
                      : {}),
                  }
                : { pool: pool.id, error: { reason: "no-such-pool", detail: "not built" } },
            ),
          },
        ]
      case "Call": {
        const { call, requestId, target } = output
        this.calls.push(`${call._tag} ${target}`)
        const failure = this.failNext.get(target)
        if (failure !== undefined) {
          this.failNext.delete(target)
          return [{ _tag: "CallDone", requestId, error: { reason: failure, detail: `planted ${failure}` } }]
        }
        switch (call._tag) {
          case "ensurePool":
            this.pools.set(call.pool.id, { capacityBytes: this.capacityOfNewPools, files: new Map() })
            return [{ _tag: "CallDone", requestId, pool: this.info(call.pool.id) }]
          case "createVolume": {
            const files = this.pools.get(call.pool.id)!.files
            const source = call.volume.cloneOf === undefined ? undefined : files.get(call.volume.cloneOf)
            const volume: VolumeInfo = {
              id: call.volume.id,
              path: `${call.pool.path}/${call.volume.id}.${call.volume.format}`,
              format: call.volume.format,
              capacityBytes: Math.max(call.volume.sizeBytes, source?.capacityBytes ?? 0),
              allocationBytes: mib,
            }
            this.pools.get(call.pool.id)!.files.set(volume.id, volume)
            return [{ _tag: "CallDone", requestId, volume }]
          }
          case "resizeVolume": {
            const files = this.pools.get(call.pool.id)!.files
            const volume = { ...files.get(call.volume)!, capacityBytes: call.sizeBytes }
            files.set(call.volume, volume)
            return [{ _tag: "CallDone", requestId, volume }]
          }
          case "deleteVolume":
            this.pools.get(call.pool.id)!.files.delete(call.volume)
            return [{ _tag: "CallDone", requestId }]
          case "discardPartial":
            this.pools.get(call.pool.id)!.partials?.delete(call.volume)
            return [{ _tag: "CallDone", requestId }]
          case "createSnapshot":
          case "deleteSnapshot":
          case "revertSnapshot": {
            const files = this.pools.get(call.pool.id)!.files
            const file = files.get(call.volume)!
            const has = (file.snapshots ?? []).includes(call.snapshot)
            if (call._tag === "createSnapshot" && has)
              return [{ _tag: "CallDone", requestId, error: { reason: "exists", detail: "there" } }]
            if (call._tag !== "createSnapshot" && !has)
              return [{ _tag: "CallDone", requestId, error: { reason: "no-such-snapshot", detail: "gone" } }]
            const others = (file.snapshots ?? []).filter((name) => name !== call.snapshot)
            if (call._tag === "createSnapshot")
              files.set(call.volume, { ...file, snapshots: [...others, call.snapshot] })
            if (call._tag === "deleteSnapshot") files.set(call.volume, { ...file, snapshots: others })
            return [{ _tag: "CallDone", requestId }]
          }
        }
      }
    }
  }
}

describe("storage core", () => {
  it("builds the pools that live on this node, and only those, and says what each can do", () => {
    const h = new Harness()
    h.pool("p1")
    h.pool("p2", { node: "n2" })
    h.pool("p3", { path: "/srv/fast" })
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "ensurePool p3"])
    expect(h.poolMeta.get("p1")).toEqual({
      state: "active",
      path: "/pools/p1",
      capabilities: { snapshot: true, clone: true, thin: true, shared: false, onlineResize: true },
    })
    expect(h.poolMeta.get("p3")?.path).toBe("/srv/fast")
    expect(h.poolMeta.has("p2")).toBe(false)
    // Built once: the next observations find it there.
    h.advance(10_000)
    expect(h.calls).toEqual(["ensurePool p1", "ensurePool p3"])
  })

  it("makes a volume, grows it when its spec grows, and marks it attached while a system names it", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("v1", 10 * mib)
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "createVolume v1"])
    expect(h.volumeMeta.get("v1")).toEqual({
      state: "available",
      path: "/pools/p1/v1.qcow2",
      capacityBytes: 10 * mib,
    })
    h.volume("v1", 20 * mib)
    h.changed()
    expect(h.calls.at(-1)).toBe("resizeVolume v1")
    expect(h.volumeMeta.get("v1")?.capacityBytes).toBe(20 * mib)
    h.inUse.add("v1")
    h.changed()
    expect(h.volumeMeta.get("v1")?.state).toBe("attached")
    expect(h.calls).toHaveLength(3)
  })

  it("refuses a volume that does not fit, naming the pool and both figures, and makes it once space is freed", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("big", 60 * mib)
    h.volume("huge", 50 * mib)
    h.changed()
    // Each fits alone; together they exceed the 100 MiB: the first in order is made, not both.
    expect(h.calls).toEqual(["ensurePool p1", "createVolume big"])
    expect(h.volumeMeta.get("huge")).toEqual({
      state: "failed",
      detail:
        "no-space: volume huge needs 52428800 bytes (0.05 GiB); pool p1 has 41943040 of 104857600 bytes (0.04 GiB of 0.10 GiB) left to give",
    })
    expect(h.pools.get("p1")!.files.has("huge")).toBe(false)
    // The first goes (deleted: a tombstone); then the second fits.
    h.volumeSpecs = h.volumeSpecs.filter((volume) => volume.id !== "big")
    h.tombstones.add("big")
    h.changed()
    // (the delete answers at once here: the space it frees is given at that step)
    expect(h.calls.slice(2)).toEqual(["deleteVolume big", "createVolume huge"])
    expect(h.volumeMeta.get("huge")?.state).toBe("available")
  })

  // Found by the simulator's storage-space checker (seeds 2003 and 3000397): each of these let a
  // pool give more than it has.
  it("counts what calls in flight will take, whatever the order of the volumes' ids", () => {
    const h = new Harness()
    h.pool("p1")
    h.changed()
    h.slow.add("z")
    h.volume("z", 60 * mib)
    h.changed()
    // z is being made (its answer not back): a, before it in order, must not take its space.
    h.volume("a", 50 * mib)
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "createVolume z"])
    expect(h.volumeMeta.get("a")?.state).toBe("failed")
    h.answer("z")
    expect(h.volumeMeta.get("z")?.state).toBe("available")
  })

  it("a deleted volume's file takes its space until it is gone", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("old", 80 * mib)
    h.changed()
    h.slow.add("old")
    h.volumeSpecs = []
    h.tombstones.add("old")
    h.volume("new", 40 * mib)
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "createVolume old", "deleteVolume old"])
    expect(h.volumeMeta.get("new")?.state).toBe("failed")
    h.answer("old")
    expect(h.calls.at(-1)).toBe("createVolume new")
  })

  it("a clone is as large as its source, and waits while its source grows", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("base", 30 * mib)
    h.changed()
    h.slow.add("base")
    h.volume("base", 40 * mib)
    h.volume("copy", 30 * mib, { source: "base" })
    h.changed()
    expect(h.calls.slice(2)).toEqual(["resizeVolume base"])
    expect(h.volumeMeta.get("copy")).toEqual({ state: "creating" })
    h.answer("base")
    expect(h.calls.at(-1)).toBe("createVolume copy")
    expect(h.pools.get("p1")!.files.get("copy")?.capacityBytes).toBe(40 * mib)
    // Counted at its source's size: 40 + 40 given, 20 left.
    h.volume("last", 30 * mib)
    h.changed()
    expect(h.volumeMeta.get("last")?.state).toBe("failed")
  })

  it("over-commit lets a thin pool give more than its capacity, up to the factor", () => {
    const h = new Harness()
    h.pool("p1", { overcommit: 2 })
    h.volume("a", 90 * mib)
    h.volume("b", 90 * mib)
    h.volume("c", 90 * mib)
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "createVolume a", "createVolume b"])
    expect(h.volumeMeta.get("c")?.state).toBe("failed")
  })

  it("deletes only files whose volume was deleted; a file the store does not know is an orphan, left alone", () => {
    const h = new Harness()
    h.pool("p1")
    h.changed()
    const stray = (id: string): VolumeInfo => ({
      id,
      path: `/pools/p1/${id}.qcow2`,
      format: "qcow2",
      capacityBytes: mib,
      allocationBytes: mib,
    })
    h.pools.get("p1")!.files.set("gone", stray("gone"))
    h.pools.get("p1")!.files.set("unknown", stray("unknown"))
    h.tombstones.add("gone")
    h.advance(defaultStorageTimings.observeEveryMs)
    expect(h.calls).toEqual(["ensurePool p1", "deleteVolume gone"])
    expect([...h.pools.get("p1")!.files.keys()]).toEqual(["unknown"])
    h.advance(defaultStorageTimings.observeEveryMs)
    expect(h.poolMeta.get("p1")?.orphans).toEqual(["unknown"])
    // A deleted volume that a system still names waits.
    h.pools.get("p1")!.files.set("busy", stray("busy"))
    h.tombstones.add("busy")
    h.inUse.add("busy")
    h.advance(defaultStorageTimings.observeEveryMs)
    expect(h.calls).toHaveLength(2)
  })

  it("discards what a create broken off by a crash left, of a volume still wanted (then made) or deleted, and not while a create runs", () => {
    // A node restarted after a crash: its pool holds two half-made images.
    const h = new Harness()
    h.pools.set("p1", {
      capacityBytes: 100 * mib,
      files: new Map(),
      partials: new Set(["wanted", "deleted"]),
    })
    h.pool("p1")
    h.tombstones.add("deleted")
    h.volume("wanted", mib)
    h.slow.add("wanted")
    h.changed()
    // The discard holds the volume's lock: its create waits for it.
    expect(h.calls).toEqual(["discardPartial deleted", "discardPartial wanted"])
    expect(h.volumeMeta.get("wanted")?.state).toBe("creating")
    h.answer("wanted")
    expect(h.calls.slice(2)).toEqual(["createVolume wanted"])
    expect([...h.pools.get("p1")!.partials!]).toEqual([])
    expect(h.volumeMeta.get("wanted")?.state).toBe("available")
    // A partial seen while the volume's create is in flight is that create's own: left alone.
    h.volume("next", mib)
    h.slow.add("next")
    h.changed()
    h.pools.get("p1")!.partials!.add("next")
    h.advance(defaultStorageTimings.observeEveryMs)
    expect(h.calls.slice(3)).toEqual(["createVolume next"])
  })

  it("tries a failed call again after the retry wait; one the driver cannot do only once its spec changes", () => {
    const h = new Harness()
    h.pool("p1")
    h.changed()
    h.failNext.set("v1", "failed")
    h.volume("v1", mib)
    h.changed()
    expect(h.volumeMeta.get("v1")).toEqual({ state: "failed", detail: "failed: planted failed" })
    h.advance(defaultStorageTimings.retryMs - 1)
    expect(h.calls.filter((call) => call === "createVolume v1")).toHaveLength(1)
    h.advance(1)
    expect(h.calls.filter((call) => call === "createVolume v1")).toHaveLength(2)
    expect(h.volumeMeta.get("v1")?.state).toBe("available")

    h.failNext.set("v2", "unsupported")
    h.volume("v2", mib, { format: "raw" })
    h.changed()
    h.advance(10 * defaultStorageTimings.retryMs)
    expect(h.calls.filter((call) => call === "createVolume v2")).toHaveLength(1)
    expect(h.volumeMeta.get("v2")?.detail).toBe("unsupported: planted unsupported")
    h.volume("v2", mib, { format: "qcow2" })
    h.changed()
    expect(h.calls.filter((call) => call === "createVolume v2")).toHaveLength(2)
    expect(h.volumeMeta.get("v2")?.state).toBe("available")
  })

  it("an observation taken before a call finished is not taken for what is there", () => {
    const h = new Harness()
    h.pool("p1")
    h.changed()
    const before = { pool: "p1", info: h.info("p1"), volumes: [] }
    h.volume("v1", mib)
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "createVolume v1"])
    // The driver's answer to an observation asked for before v1 was made comes after it.
    h.feed({ _tag: "Observed", pools: [before] })
    expect(h.calls).toEqual(["ensurePool p1", "createVolume v1"])
    expect(h.volumeMeta.get("v1")?.state).toBe("available")
  })

  it("a clone waits for its source to be in the pool", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("copy", mib, { source: "base" })
    h.changed()
    expect(h.volumeMeta.get("copy")).toEqual({
      state: "failed",
      detail: "the volume base to clone is not in pool p1",
    })
    h.volume("base", mib)
    h.changed()
    h.changed()
    expect(h.calls).toEqual(["ensurePool p1", "createVolume base", "createVolume copy"])
  })

  it("takes the snapshots the store wants, refuses them on raw volumes saying why, and removes deleted ones", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("v1", 10 * mib)
    h.volume("r1", 10 * mib, { format: "raw" })
    h.snapshots = [
      { id: "s1", spec: { name: "s1", volume: "v1" } },
      { id: "s2", spec: { name: "s2", volume: "r1" } },
    ]
    h.changed()
    h.advance(2_000)
    expect(h.calls.filter((call) => call.includes("Snapshot"))).toEqual(["createSnapshot s1"])
    expect(h.snapshotMeta.get("s1")).toEqual({ state: "available" })
    expect(h.snapshotMeta.get("s2")).toEqual({
      state: "failed",
      detail: "unsupported: volume r1 is raw: a dir pool snapshots qcow2 volumes only",
    })
    expect(h.pools.get("p1")!.files.get("v1")!.snapshots).toEqual(["s1"])
    h.snapshots = []
    h.snapshotTombstones.add("s1")
    h.changed()
    h.advance(2_000)
    expect(h.calls.filter((call) => call.includes("Snapshot"))).toEqual([
      "createSnapshot s1",
      "deleteSnapshot s1",
    ])
    expect(h.pools.get("p1")!.files.get("v1")!.snapshots).toEqual([])
  })

  it("after a restart, a snapshot already there is available without a call, and one answered 'exists' is too", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("v1", 10 * mib)
    h.snapshots = [{ id: "s1", spec: { name: "s1", volume: "v1" } }]
    h.changed()
    h.advance(2_000)
    const again = new Harness()
    for (const [id, pool] of h.pools) again.pools.set(id, pool)
    again.poolSpecs = h.poolSpecs
    again.volumeSpecs = h.volumeSpecs
    again.snapshots = h.snapshots
    again.changed()
    again.advance(2_000)
    expect(again.calls.filter((call) => call.includes("Snapshot"))).toEqual([])
    expect(again.snapshotMeta.get("s1")).toEqual({ state: "available" })
  })

  it("runs a revert task on a stopped volume and finishes it; refuses it while a running system has the disk", () => {
    const h = new Harness()
    h.pool("p1")
    h.volume("v1", 10 * mib)
    h.snapshots = [{ id: "s1", spec: { name: "s1", volume: "v1" } }]
    h.changed()
    h.advance(2_000)
    const task = (id: string): { id: string; spec: StorageTaskValue } => ({
      id,
      spec: {
        operation: "storage.revert",
        target: { kind: "storage-snapshot", id: "s1" },
        owner: "n1",
        parameters: {},
        state: "queued",
        log: [],
        createdMs: 0,
      },
    })
    h.active.add("v1")
    h.tasks = [task("t1")]
    h.changed()
    expect(h.taskWrites.get("t1")).toMatchObject({
      state: "failed",
      error: "volume v1 is a disk of a system that is not stopped; stop it first",
    })
    expect(h.calls).not.toContain("revertSnapshot s1")
    h.active.clear()
    h.tasks = [task("t2")]
    h.changed()
    expect(h.calls.filter((call) => call === "revertSnapshot s1")).toHaveLength(1)
    expect(h.taskWrites.get("t2")).toMatchObject({ state: "succeeded" })
    expect(h.taskWrites.get("t2")!.log.at(-1)?.line).toBe("volume v1 reverted to snapshot s1")
    // Done once: the view still showing it queued does not run it again.
    h.changed()
    h.advance(4_000)
    expect(h.calls.filter((call) => call === "revertSnapshot s1")).toHaveLength(1)
  })

  it("publishes the host's block devices as this node's objects, a SMART failure as failed, a vanished one as offline", () => {
    const h = new Harness()
    const disk = {
      name: "sda",
      path: "/dev/sda",
      sizeBytes: 100 * mib,
      type: "disk",
      rotational: true,
      smart: "passed",
    } as const
    h.devices = [
      disk,
      { ...disk, name: "nvme0n1", path: "/dev/nvme0n1", rotational: false, smart: "unknown" },
    ]
    h.changed()
    expect([...h.deviceSpecs]).toEqual([
      ["n1.sda", { name: "sda", node: "n1", path: "/dev/sda", medium: "hdd" }],
      ["n1.nvme0n1", { name: "nvme0n1", node: "n1", path: "/dev/nvme0n1", medium: "nvme" }],
    ])
    expect(h.deviceMeta.get("n1.sda")).toMatchObject({
      state: "online",
      smart: "passed",
      sizeBytes: 100 * mib,
    })
    h.changed() // the store now holds them, as a real node's would tell its services
    h.devices = [{ ...disk, smart: "failed" }]
    h.advance(30_000)
    expect(h.deviceMeta.get("n1.sda")).toMatchObject({ state: "failed", smart: "failed" })
    expect(h.deviceMeta.get("n1.nvme0n1")).toEqual({ state: "offline" })
  })

  it("serves the shares of its active pools together, says which are exported, and applies again when the set changes", () => {
    const h = new Harness()
    h.pool("p1")
    h.pool("p2", { node: "n2" })
    h.shares = [
      {
        id: "media",
        spec: { name: "media", pool: "p1", protocol: "nfs", path: "media", clients: ["198.18.0.0/15"] },
      },
      { id: "elsewhere", spec: { name: "x", pool: "p2", protocol: "nfs", path: "", clients: ["10.0.0.1"] } },
    ]
    h.changed()
    expect(h.applied).toEqual([
      [{ id: "media", path: "/pools/p1/media", clients: ["198.18.0.0/15"], access: "rw" }],
    ])
    expect(h.shareMeta.get("media")).toEqual({ state: "exported", path: "/pools/p1/media", export: "/media" })
    expect(h.shareMeta.has("elsewhere")).toBe(false)
    h.advance(10_000)
    expect(h.applied).toHaveLength(1)
    h.failShares = "unsupported"
    h.shares = [
      ...h.shares,
      {
        id: "docs",
        spec: { name: "docs", pool: "p1", protocol: "nfs", path: "/docs/", clients: ["a"], access: "ro" },
      },
    ]
    h.changed()
    expect(h.applied.at(-1)?.map((share) => [share.id, share.path, share.access])).toEqual([
      ["media", "/pools/p1/media", "rw"],
      ["docs", "/pools/p1/docs", "ro"],
    ])
    expect(h.shareMeta.get("docs")).toEqual({
      state: "failed",
      path: "/pools/p1/docs",
      detail: "unsupported: planted",
    })
    h.failShares = undefined
    h.advance(defaultStorageTimings.retryMs)
    expect(h.shareMeta.get("docs")).toEqual({ state: "exported", path: "/pools/p1/docs", export: "/docs" })
    h.shares = []
    h.changed()
    expect(h.applied.at(-1)).toEqual([])
  })
})
