/**
 * The storage checkers, on what each simulated host's disk holds (not on what any node
 * believes):
 * - `storage-space` (safety): a pool never gives more than its capacity times its over-commit —
 *   the sizes of the volumes in it add up to no more, after every call its node made. Clients
 *   race through different nodes; the pool's node is the one authority on its space.
 * - `storage-delete` (safety): a volume's image is deleted only once a client deleted the
 *   volume: a node never takes a disk with it that the cluster still holds (a store behind, a
 *   view that lost an object, a file it did not make).
 * - `storage-snapshot` (safety): a revert task that says it succeeded left its volume holding
 *   exactly what the snapshot held when its node took it (the content, as the disk's version).
 * - `storage-attach` (safety): a volume that is not shareable is open in at most one active
 *   guest at a time (the domains' image files, on every host, each time one becomes active).
 * - `storage-lost` (safety, at each host crash and once converged): no volume is lost when a
 *   call breaks off half-way (a crash mid-create, mid-snapshot, mid-revert): every volume the
 *   cluster is told is available (its pool's node's meta) has its image on that node's disk,
 *   whole. That no half-made image is left behind is part of convergence (`convergence.ts`).
 */
import { decodeValue } from "../../core/hypervisor/values.ts"
import type { StorageCall, StoragePoolSpecValue, VolumeMetaValue } from "../../core/storage/storage.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

const activeStates: ReadonlySet<string> = new Set(["running", "paused", "shutting-down"])

export class StorageChecker {
  private readonly sim: Sim
  /** The volumes a client deleted (through the API's rules). */
  private readonly deletedByClients = new Set<string>()
  /** Each pool's over-commit, as the client that made it wrote it. */
  private readonly overcommit = new Map<string, number>()
  calls = 0
  /** Volumes the operator attached to a system (each then checked by `storage-attach` when its domain is active). */
  attaches = 0
  /** Reverts whose result was checked against what their snapshot held. */
  revertsChecked = 0
  /** What each snapshot held when its node took it ("volume/snapshot" → content version). */
  private readonly taken = new Map<string, { readonly node: SimNode; readonly content: number }>()

  constructor(sim: Sim) {
    this.sim = sim
  }

  poolCreated(pool: string, overcommit: number): void {
    this.overcommit.set(pool, overcommit)
  }

  clientDeleted(volume: string): void {
    this.deletedByClients.add(volume)
  }

  /** A revert task the store shows succeeded (no write to the volume since it was asked for). */
  revertFinished(volume: string, snapshot: string, task: string): void {
    this.revertsChecked++
    const taken = this.taken.get(`${volume}/${snapshot}`)
    if (taken === undefined) {
      this.sim.violate(
        "storage-snapshot",
        `task ${task} says ${volume} was reverted to ${snapshot}, which no node took`,
      )
      return
    }
    // A volume deleted since (its snapshots first, then itself: the operator may do both before
    // it sees the revert finished) holds nothing to compare.
    if (![...taken.node.storage.pools.values()].some((pool) => pool.files.has(volume))) return
    const now = taken.node.storage.contents.get(volume) ?? 0
    if (now !== taken.content)
      this.sim.violate(
        "storage-snapshot",
        `task ${task} says ${volume} was reverted to ${snapshot}, but it holds version ${now}, not the snapshot's ${taken.content}`,
      )
  }

  /**
   * A domain just became active (or had a disk attached) on `node`: no image file it opens is
   * open in another active domain, on any host, unless its volume is shareable.
   */
  domainActive(domain: string, node: SimNode): void {
    const store = node.core?.store
    for (const path of node.vmm.disksOf(domain)) {
      const file = path.slice(path.lastIndexOf("/") + 1)
      const volume = file.slice(0, file.lastIndexOf(".") < 0 ? file.length : file.lastIndexOf("."))
      const spec = decodeValue<{ readonly shareable?: boolean }>(store?.get("storage-volume", volume)?.value)
      if (spec?.shareable === true) continue
      for (const other of this.sim.nodes)
        for (const { name, state } of other.vmm.list()) {
          if ((other === node && name === domain) || !activeStates.has(state)) continue
          if (other.vmm.disksOf(name).includes(path))
            this.sim.violate(
              "storage-attach",
              `volume ${volume} (${path}) is open in ${domain} on ${node.id} and in ${name} on ${other.id}, and it is not shareable`,
            )
        }
    }
  }

  /** Once converged: every volume the reference node's store says is available is whole on its pool's disk. */
  final(reference: SimNode, survivors: ReadonlyArray<SimNode>): void {
    this.availableOnDisk(reference, survivors, "")
  }

  /** A host went down (what it was doing broken off): what its node said is available is on its disk. */
  hostCrashed(node: SimNode): void {
    if (node.core !== null) this.availableOnDisk(node, [node], " after its crash")
  }

  private availableOnDisk(reference: SimNode, owners: ReadonlyArray<SimNode>, when: string): void {
    const store = reference.core!.store
    for (const { id, value } of store.list("storage-volume")) {
      const spec = decodeValue<{ readonly pool: string }>(value)
      if (spec === undefined) continue
      const pool = decodeValue<StoragePoolSpecValue>(store.get("storage-pool", spec.pool)?.value)
      const owner = owners.find((node) => node.id === pool?.node)
      if (owner === undefined) continue
      const meta = store.metaOf("storage-volume", id).find((slot) => slot.node === owner.id)
      const state = decodeValue<VolumeMetaValue>(meta?.value)?.state
      if (state !== "available" && state !== "attached") continue
      if (!owner.storage.pools.get(spec.pool)?.files.has(id))
        this.sim.violate(
          "storage-lost",
          `volume ${id} is ${state} in pool ${spec.pool} by ${owner.id}'s meta, but ${owner.id}'s disk has no image of it${when}`,
        )
    }
  }

  /** A call the node on `node`'s host just carried out (`failed`: the driver refused it). */
  executed(node: SimNode, call: StorageCall, failed: boolean): void {
    this.calls++
    if (failed) return
    if (call._tag === "createSnapshot")
      this.taken.set(`${call.volume}/${call.snapshot}`, {
        node,
        content: node.storage.contents.get(call.volume) ?? 0,
      })
    if (call._tag === "deleteVolume" && !this.deletedByClients.has(call.volume))
      this.sim.violate(
        "storage-delete",
        `${node.id} deleted volume ${call.volume} from pool ${call.pool.id}, which no client deleted`,
      )
    if (call._tag !== "createVolume" && call._tag !== "resizeVolume") return
    const pool = node.storage.pools.get(call.pool.id)
    if (pool === undefined) return
    let given = 0
    for (const file of pool.files.values()) given += file.capacityBytes
    const limit = Math.floor(pool.capacityBytes * (this.overcommit.get(call.pool.id) ?? 1))
    if (given > limit)
      this.sim.violate(
        "storage-space",
        `pool ${call.pool.id} on ${node.id} gives ${given} bytes after ${call._tag} of ${call._tag === "createVolume" ? call.volume.id : call.volume}: more than its ${limit}`,
      )
  }
}
