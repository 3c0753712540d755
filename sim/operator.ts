/**
 * The operator, with the hypervisor in the loop: creates the systems once a primary is likely
 * (placed by the scheduler, 3 in 4 HA; the others boot from a volume in their node's pool), then every few seconds of the faulty phase operates on
 * one through a random live node (start, stop, suspend, resume, reboot, migrate), as the API does;
 * while some node is cut off from the majority, half of them through such a node (an operator
 * keeps using the node their client talks to, and a node cut off still serves its API), on a
 * system the majority has changed since if there is one.
 */
import { compareVersions } from "../core/cdb/hlc.ts"
import type { SystemSpecValue } from "../core/hypervisor/hypervisor.ts"
import { newTask, planOperation } from "../core/hypervisor/requests.ts"
import {
  defaultSchedulerPolicy,
  liveNodes,
  place,
  placedSystems,
  requestFor,
} from "../core/hypervisor/scheduler.ts"
import { decodeValue, encodeValue } from "../core/hypervisor/values.ts"
import { systemsIn } from "../core/hypervisor/view.ts"
import {
  admitDelete,
  admitSnapshot,
  admitVolume,
  planRevert,
  type StorageReader,
} from "../core/storage/admission.ts"
import { admitOperation, specReader } from "../core/storage/disks.ts"
import type {
  SnapshotSpecValue,
  StoragePoolSpecValue,
  StorageTaskValue,
  StorageVolumeSpecValue,
} from "../core/storage/storage.ts"
import type { ElectionChecker } from "./checkers/election.ts"
import type { StorageChecker } from "./checkers/storage.ts"
import type { Sim } from "./events.ts"
import type { Faults } from "./faults.ts"
import type { Hosts, SimNode } from "./host.ts"
import { Prng } from "./prng.ts"

/** What the API's storage rules read, from a simulated node's store (no statistics: its node decides on space). */
const storageReaderOf = (store: NonNullable<SimNode["core"]>["store"]): StorageReader =>
  specReader((kind) => store.list(kind))

/** Whether `acp storage volume list` through this store shows the volume available. */
const availableIn = (store: NonNullable<SimNode["core"]>["store"], volume: string) =>
  store
    .metaOf("storage-volume", volume)
    .some((slot) => decodeValue<{ state?: string }>(slot.value)?.state === "available")

export class Operator {
  private readonly sim: Sim
  private readonly hosts: Hosts
  private readonly election: ElectionChecker
  private readonly operator: Prng
  private readonly faults: Faults
  /** Whether an operation goes through a node cut off, when there is one (its own generator: the rest is drawn as before). */
  private readonly side: Prng
  private operations = 0
  /** Where the scheduler first placed each system. */
  readonly created: Array<{ system: string; node: string; ha: boolean }> = []

  /** Storage operations: their own generator (the systems' draws stay as they were), and checker. */
  private readonly disks: Prng
  private readonly snapshotting: Prng
  private readonly storage: StorageChecker
  private volumes = 0
  private snapshots = 0
  /** Revert tasks asked for: task id → the volume and snapshot, until the checker has seen it end. */
  private readonly reverts = new Map<string, { readonly volume: string; readonly snapshot: string }>()

  constructor(
    sim: Sim,
    hosts: Hosts,
    election: ElectionChecker,
    faults: Faults,
    operator: Prng,
    storage: StorageChecker,
  ) {
    this.sim = sim
    this.hosts = hosts
    this.election = election
    this.faults = faults
    this.operator = operator
    this.side = Prng.labelled(sim.options.seed, "operator-side")
    this.disks = Prng.labelled(sim.options.seed, "operator-storage")
    this.snapshotting = Prng.labelled(sim.options.seed, "operator-snapshots")
    this.storage = storage
  }

  /** Creates the systems through a live node (the primary if there is one). */
  createSystems(): void {
    const sim = this.sim
    const node = this.election.primaryNow() ?? sim.nodes.find((candidate) => candidate.core !== null)
    // Nothing to create them through, or no node's capacity known yet: try again in a second (seed
    // 5 with 12 systems, two domains, placed none at 1.5 s and ran its whole sweep without any).
    const again = () => {
      if (sim.nowUs + 1_000_000 < sim.options.durationMs * 1000)
        sim.queue.push(sim.nowUs + 1_000_000, { type: "create-systems" })
    }
    if (node === undefined || node.core === null) {
      again()
      return
    }
    const nowMs = node.localMs(sim.nowUs)
    const existing = systemsIn(node.core.store)
    const placed = [...placedSystems(existing)]
    const writes: Array<{ op: "put"; kind: string; id: string; value: Uint8Array }> = []
    for (let index = 0; index < sim.systems; index++) {
      const id = `vm${index + 1}`
      // A system that is not HA boots from a volume in its node's local pool (which pins it there).
      const ha = index % 4 !== 3
      const disk = `${id}-disk0`
      const spec: SystemSpecValue = {
        name: id as SystemSpecValue["name"],
        cpus: 1 + this.operator.below(2),
        memoryMiB: this.operator.pick([512, 1024, 2048]),
        disks: ha
          ? []
          : [{ volume: disk as SystemSpecValue["disks"][number]["volume"], bus: "virtio", boot: true }],
        nics: [],
        ha,
        desired: "running",
        placement: { affinity: [], antiAffinity: [] },
      }
      const decision = place(requestFor(id, spec), node.core.capacities(), placed, defaultSchedulerPolicy)
      if (decision._tag === "Unplaceable") continue
      const owner = decision.node as NonNullable<SystemSpecValue["node"]>
      placed.push({ ...requestFor(id, spec), node: decision.node })
      this.created.push({ system: id, node: decision.node, ha: spec.ha })
      if (!ha) {
        const volume: StorageVolumeSpecValue = {
          name: disk,
          pool: `pool-${owner}`,
          sizeBytes: 1024 ** 3,
          format: "qcow2",
        }
        writes.push({ op: "put", kind: "storage-volume", id: disk, value: encodeValue(volume) })
      }
      writes.push(
        { op: "put", kind: "system", id, value: encodeValue({ ...spec, node: owner }) },
        {
          op: "put",
          kind: "task",
          id: `create-${id}`,
          value: encodeValue(newTask("create", id, owner, {}, nowMs)),
        },
      )
    }
    if (writes.length === 0) {
      again()
      return
    }
    // A local pool on every node, some thin ones over-committed.
    for (const member of sim.nodes) {
      const overcommit = this.disks.pick([1, 1, 1.5])
      const pool: StoragePoolSpecValue = {
        name: `pool-${member.id}`,
        driver: "dir",
        node: member.id,
        shared: false,
        overcommit,
      }
      this.storage.poolCreated(`pool-${member.id}`, overcommit)
      writes.push({
        op: "put",
        kind: "storage-pool",
        id: `pool-${member.id}`,
        value: encodeValue({ ...pool, devices: [] }),
      })
    }
    this.hosts.clientWrite(node, writes)
    sim.queue.push(sim.nowUs + 1_000_000 + this.operator.below(3_000_000), { type: "operate" })
    sim.queue.push(sim.nowUs + 500_000 + this.disks.below(1_000_000), { type: "operate-storage" })
    sim.queue.push(sim.nowUs + 700_000 + this.snapshotting.below(1_000_000), { type: "operate-snapshots" })
  }

  /**
   * Twice a second or so in the faulty phase, through a random live node with the API's rules
   * checked on its store: a snapshot of a volume, a guest's write to one (its content changes,
   * on the disk of the pool's host), a revert to a snapshot (a task for the pool's node), or a
   * snapshot deleted. No write and no second revert while a revert of the volume is open, as
   * seen from that node, so the `storage-snapshot` checker can compare what a finished revert
   * left with what the snapshot held.
   */
  operateSnapshots(): void {
    const sim = this.sim
    if (sim.healed) return
    sim.queue.push(sim.nowUs + 200_000 + this.snapshotting.below(600_000), { type: "operate-snapshots" })
    const live = sim.nodes.filter((node) => node.core !== null)
    if (live.length === 0) return
    const node = this.snapshotting.pick(live)
    const store = node.core!.store
    const reader = storageReaderOf(store)
    const open = new Set<string>()
    for (const [id, revert] of this.reverts) {
      const task = decodeValue<StorageTaskValue>(store.get("task", id)?.value)
      if (task === undefined || task.state === "queued" || task.state === "running") open.add(revert.volume)
      else {
        if (task.state === "succeeded") this.storage.revertFinished(revert.volume, revert.snapshot, id)
        this.reverts.delete(id)
      }
    }
    // An operator snapshots what `acp storage volume list` shows available (a failed one has no image).
    const available = (volume: string) => availableIn(store, volume)
    const volumes = reader
      .volumes()
      .filter((volume) => volume.spec.format === "qcow2" && !open.has(volume.id) && available(volume.id))
    const snapshots = (reader.snapshots?.() ?? []).filter((snapshot) => !open.has(snapshot.spec.volume))
    const operation = this.snapshotting.pick([
      "snapshot",
      "snapshot",
      "write",
      "write",
      "revert",
      "revert",
      "delete",
    ] as const)
    if (operation === "snapshot" || operation === "write") {
      if (volumes.length === 0) return
      const { id: volume } = this.snapshotting.pick(volumes)
      if (operation === "write") {
        // A guest's write lands on the host that has the pool (wherever the store is).
        for (const host of sim.nodes) host.storage.write(volume)
        return
      }
      const id = `snap${++this.snapshots}`
      const spec = { name: id, volume }
      if (admitSnapshot(reader, id, spec as SnapshotSpecValue) !== undefined) return
      this.hosts.clientWrite(node, [{ op: "put", kind: "storage-snapshot", id, value: encodeValue(spec) }])
      return
    }
    if (snapshots.length === 0) return
    const { id: snapshot, spec } = this.snapshotting.pick(snapshots)
    if (operation === "delete") {
      this.hosts.clientWrite(node, [{ op: "delete", kind: "storage-snapshot", id: snapshot, value: null }])
      return
    }
    const plan = planRevert(reader, snapshot, Math.floor(sim.nowUs / 1000))
    if ("reason" in plan) return
    const id = `revert-${++this.snapshots}`
    this.reverts.set(id, { volume: spec.volume, snapshot })
    this.hosts.clientWrite(node, [{ op: "put", kind: "task", id, value: encodeValue(plan.task) }])
  }

  /**
   * Three times a second or so in the faulty phase, a storage operation through a random live node, with
   * the API's rules checked on that node's store first: a volume made (or cloned) in a random
   * pool, one grown, one deleted. Sizes are large beside the pools' capacities, so clients race
   * for the space and the pools' nodes must refuse some.
   */
  operateStorage(): void {
    const sim = this.sim
    if (sim.healed) return
    sim.queue.push(sim.nowUs + 100_000 + this.disks.below(500_000), { type: "operate-storage" })
    const live = sim.nodes.filter((node) => node.core !== null)
    if (live.length === 0) return
    const node = this.disks.pick(live)
    const store = node.core!.store
    const reader = storageReaderOf(store)
    const volumes = reader.volumes()
    const gib = 1024 ** 3
    const operation = this.disks.pick([
      "create",
      "create",
      "create",
      "clone",
      "grow",
      "delete",
      "delete",
      "attach",
    ] as const)
    if (operation === "attach") {
      this.attachVolume(node, reader)
      return
    }
    if (operation === "delete" || operation === "grow" || operation === "clone") {
      if (volumes.length === 0) return
      const { id, spec } = this.disks.pick(volumes)
      if (operation === "delete") {
        if (admitDelete(reader, "storage-volume", id) !== undefined) return
        this.storage.clientDeleted(id)
        this.hosts.clientWrite(node, [{ op: "delete", kind: "storage-volume", id, value: null }])
        return
      }
      const next: StorageVolumeSpecValue =
        operation === "grow"
          ? { ...spec, sizeBytes: spec.sizeBytes + gib }
          : {
              name: `vol${++this.volumes}`,
              pool: spec.pool,
              sizeBytes: spec.sizeBytes,
              format: spec.format,
              source: id,
            }
      const target = operation === "grow" ? id : `vol${this.volumes}`
      if (admitVolume(reader, target, next) !== undefined) return
      this.hosts.clientWrite(node, [
        { op: "put", kind: "storage-volume", id: target, value: encodeValue(next) },
      ])
      return
    }
    const pools = store.list("storage-pool")
    if (pools.length === 0) return
    const id = `vol${++this.volumes}`
    const spec: StorageVolumeSpecValue = {
      name: id,
      pool: this.disks.pick(pools).id,
      sizeBytes: this.disks.pick([1, 2, 4, 8]) * gib,
      format: this.disks.pick(["qcow2", "raw"] as const),
    }
    if (admitVolume(reader, id, spec) !== undefined) return
    this.hosts.clientWrite(node, [{ op: "put", kind: "storage-volume", id, value: encodeValue(spec) }])
  }

  /**
   * A volume of its node's pool attached to a system that is not HA (an HA one would be pinned
   * by it), through `node`, with the rules the API applies (another system's disk is refused),
   * so the `storage-attach` checker sees what gets through.
   */
  private attachVolume(node: SimNode, reader: StorageReader): void {
    const sim = this.sim
    if (sim.systems === 0) return
    const system = `vm${1 + this.disks.below(sim.systems)}`
    const spec = decodeValue<SystemSpecValue>(node.core!.store.get("system", system)?.value)
    if (spec === undefined || spec.ha) return
    // One of the volumes `acp storage volume list` shows available in the pool of the system's
    // node (one whose create failed for want of space would keep the system waiting for good).
    const volumes = reader
      .volumes()
      .filter((each) => each.spec.pool === `pool-${spec.node}` && availableIn(node.core!.store, each.id))
    if (volumes.length === 0) return
    const { id: volume } = this.disks.pick(volumes)
    const inSync = node.core!.authority().caughtUp
    const parameters = { volume }
    const plan = this.plan(node, system, spec, "attach", parameters, inSync)
    if (!("task" in plan) || plan.system === undefined || plan.system === null) return
    if (admitOperation(reader, system, spec, "attach", parameters) !== undefined) return
    this.operations++
    this.storage.attaches++
    this.hosts.clientWrite(
      node,
      [
        { op: "put", kind: "system", id: system, value: encodeValue(plan.system) },
        { op: "put", kind: "task", id: `op-${this.operations}`, value: encodeValue(plan.task) },
      ],
      inSync,
    )
  }

  /** An operation on a system planned through `node`, as its API would plan it. */
  private plan(
    node: SimNode,
    system: string,
    spec: SystemSpecValue | undefined,
    operation: string,
    parameters: Readonly<Record<string, string>>,
    inSync: boolean,
  ) {
    return planOperation({
      system,
      spec,
      operation,
      parameters,
      nowMs: node.localMs(this.sim.nowUs),
      nodes: this.sim.nodes.map((member) => member.id),
      live: liveNodes(node.core!.capacities()),
      inSync,
    })
  }

  /** The systems whose spec `node` holds at an older version than a node of the majority does. */
  private behind(node: SimNode, live: ReadonlyArray<SimNode>): ReadonlyArray<string> {
    const majority = live.filter((other) => other !== node && this.faults.reachesMajority(other))
    const ids: Array<string> = []
    for (let index = 1; index <= this.sim.systems; index++) {
      const id = `vm${index}`
      const held = node.core!.store.get("system", id)?.version
      const newer = majority.some((other) => {
        const version = other.core!.store.get("system", id)?.version
        return version !== undefined && (held === undefined || compareVersions(version, held) > 0)
      })
      if (newer) ids.push(id)
    }
    return ids
  }

  /** Every few seconds of the faulty phase, an operation on a system through a random live node. */
  operate(): void {
    const sim = this.sim
    if (sim.healed) return
    sim.queue.push(sim.nowUs + 1_000_000 + this.operator.below(3_000_000), { type: "operate" })
    const live = sim.nodes.filter((node) => node.core !== null)
    if (live.length === 0) return
    const drawn = this.operator.pick(live)
    // A node cut off operates on the store it has, which may lack what the majority did since
    // (a start through such a node once undid a migration: seed 3000397, found after 193 s),
    // and the adversary picks a system the majority has changed since, when there is one (the
    // race a stale store loses). Once the node's store says it is not caught up the operation
    // must be refused; in the moments before, a node cannot know what it has missed, and the
    // placement it writes back is a stale one the others' claims must hold off (the decision
    // log is to close that race).
    const cutOff = live.filter((candidate) => !this.faults.reachesMajority(candidate))
    const viaCutOff = cutOff.length > 0 && this.side.chance(500)
    const node = viaCutOff ? this.side.pick(cutOff) : drawn
    const random = `vm${1 + this.operator.below(sim.systems)}`
    const behind = viaCutOff ? this.behind(node, live) : []
    const system = behind.length > 0 ? this.side.pick(behind) : random
    const operation = this.operator.pick([
      "start",
      "start",
      "start",
      "stop",
      "suspend",
      "resume",
      "resume",
      "reboot",
      "migrate",
      "migrate",
    ])
    const to = this.operator.pick(sim.nodes).id
    const inSync = node.core!.authority().caughtUp
    const spec = decodeValue<SystemSpecValue>(node.core!.store.get("system", system)?.value)
    const parameters: Record<string, string> = operation === "migrate" ? { to } : {}
    const plan = this.plan(node, system, spec, operation, parameters, inSync)
    if (!("task" in plan)) return
    // The storage rules the API adds (a system pinned by its disks does not migrate off their node).
    if (admitOperation(storageReaderOf(node.core!.store), system, spec, operation, parameters) !== undefined)
      return
    this.operations++
    const id = `op-${this.operations}`
    this.hosts.clientWrite(
      node,
      [
        ...(plan.system === undefined || plan.system === null
          ? []
          : [{ op: "put" as const, kind: "system", id: system, value: encodeValue(plan.system) }]),
        { op: "put", kind: "task", id, value: encodeValue(plan.task) },
      ],
      inSync,
    )
  }
}
