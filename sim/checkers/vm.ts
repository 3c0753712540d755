/**
 * The hypervisor's checkers: no system is ever active (running, paused, shutting down) on two
 * hosts at once (`vm`, safety); every HA system of a crashed host runs again within `haBoundMs`
 * of connected majority (`ha`); after the heal every system is as its spec says (convergence);
 * a system's placement token (its spec's epoch, DESIGN.md: "a holder acts only with the current
 * token") never goes back in any node's store (`epoch`): a spec written from a stale store, with
 * the epoch it held, undid a move and the system ran on two nodes (seed 3000397). Excused: an
 * operation through a node whose store believed itself caught up (cut off a moment before, it
 * cannot know what it missed; the others' claims hold the stale placement off; the decision log
 * is to close this race).
 */
import type { Change } from "../../core/cdb/codec.ts"
import { compareVersions, type Version } from "../../core/cdb/hlc.ts"
import {
  defaultHypervisorTimings,
  domainNameOf,
  type SystemSpecValue,
} from "../../core/hypervisor/hypervisor.ts"
import { decodeValue } from "../../core/hypervisor/values.ts"
import type { NodeCore } from "../../core/node/node.ts"
import type { Sim } from "../events.ts"
import type { Faults } from "../faults.ts"
import type { SimNode } from "../host.ts"
import { show } from "./model.ts"

/** How long an HA system of a crashed node may stay down while a majority is connected (the hypervisor issue's goal). */
export const haBoundMs = 15_000

/** An HA system whose node crashed while running it, until it runs again somewhere. */
interface Outage {
  readonly system: string
  readonly from: string
  readonly atUs: number
  /** Restarted whenever no majority is connected: the bound counts only time the cluster could act. */
  sinceUs: number
}

const isActive = (state: string | undefined) =>
  state === "running" || state === "paused" || state === "shutting-down"

export class VmChecker {
  private readonly sim: Sim
  private readonly faults: Faults
  private readonly outages = new Map<string, Outage>()
  /** From the crash of a node to each of its HA systems running on another node (virtual ms). */
  readonly failovers: Array<number> = []
  restartedInPlace = 0

  /** How many times a new primary took office (the election checker's count). */
  private readonly primaryChanges: () => number
  private primaryChangesSeen = 0

  constructor(sim: Sim, faults: Faults, primaryChanges: () => number) {
    this.sim = sim
    this.faults = faults
    this.primaryChanges = primaryChanges
  }

  /** The highest epoch each node's store has held of each system's spec. */
  private readonly epochs = new Map<string, number>()
  /** Versions of specs that operations wrote through a store that believed itself caught up. */
  private readonly excused = new Set<string>()

  /**
   * An operation's writes (a client's), through a node whose store believed itself caught up or
   * not — when the operation was checked (`SimNode.writeInSync`, as the API checks it before it
   * writes), not after the write: a node's own new change can make its store not caught up at
   * once (seed 8001046 read it after, and took a checked operation for one that was not).
   */
  written(node: SimNode, changes: ReadonlyArray<Change>, source: string): void {
    if (source !== "client" || (node.writeInSync ?? node.core?.authority().caughtUp) !== true) return
    for (const change of changes)
      if (change.kind === "system" && change.op === "put") this.excused.add(show(change))
  }

  /**
   * Changes a node applied, or wrote: no system's spec, as its store now holds it, has an epoch
   * lower than one the store held before.
   */
  changed(node: SimNode, changes: ReadonlyArray<Change>): void {
    const store = node.core?.store
    if (store === undefined) return
    for (const change of changes) {
      if (change.kind !== "system" || change.op === "meta") continue
      const key = `${node.id}\u0000${change.id}`
      const entry = store.get("system", change.id)
      if (entry?.value == null) {
        this.epochs.delete(key)
        continue
      }
      const epoch = decodeValue<SystemSpecValue>(entry.value)?.epoch ?? 0
      const held = this.epochs.get(key) ?? 0
      if (epoch < held && this.excused.has(show(entry.version))) this.epochs.set(key, epoch)
      else if (epoch < held)
        this.sim.violate(
          "epoch",
          `${node.id} holds a spec of ${change.id} with epoch ${epoch} (written by ${entry.version.origin}) after epoch ${held}: a placement undone`,
        )
      else this.epochs.set(key, epoch)
    }
  }

  /**
   * A domain just became active (running or paused) on `node`; no other host may have that
   * system's domain active at the same instant. Also ends an outage: the HA system runs again.
   */
  systemActive(system: string, node: SimNode): void {
    const domain = domainNameOf(system)
    for (const other of this.sim.nodes) {
      const state = other.vmm.stateOf(domain)
      if (other !== node && isActive(state))
        this.sim.violate("vm", `system ${system} is active on ${node.id} while ${other.id} has it ${state}`)
    }
    const outage = this.outages.get(system)
    if (outage === undefined) return
    this.outages.delete(system)
    if (outage.from === node.id) this.restartedInPlace++
    else this.failovers.push(Math.floor((this.sim.nowUs - outage.atUs) / 1000))
  }

  /** The host went down with its node: its HA systems that were running are now in an outage. */
  hostCrashed(node: SimNode): void {
    for (const { name, state } of node.vmm.list()) {
      if (state !== "running" && state !== "paused") continue
      const system = name.slice("acp-".length)
      const spec = decodeValue<SystemSpecValue>(node.core?.store.get("system", system)?.value)
      if (spec?.ha === true && !this.sim.healed)
        this.outages.set(system, { system, from: node.id, atUs: this.sim.nowUs, sinceUs: this.sim.nowUs })
    }
  }

  /**
   * An HA system of a crashed node runs again (anywhere) within `haBoundMs` of time during which
   * a majority was up and connected — longer on a lossy network: the bound grows by 3% for each
   * 1% of datagrams lost (×1.9 at 30% loss), as every exchange it takes may need a retry — and
   * from the last change of primary: a new primary moves nothing until every authority the
   * previous one gave has run out (`haFenceMs`), so each change starts the wait again. A
   * system the operator has since stopped, or whose starts keep failing (the hypervisor gives up
   * after `maxStartFailures`), is excused.
   */
  checkHaLiveness(): void {
    if (this.outages.size === 0) return
    const connected = this.faults.majorityConnected(true)
    const boundMs = haBoundMs * (1 + (3 * this.faults.lossPermille()) / 1000)
    const newPrimary = this.primaryChanges() !== this.primaryChangesSeen
    this.primaryChangesSeen = this.primaryChanges()
    for (const outage of [...this.outages.values()]) {
      // A node whose hypervisor cannot start is alive and heard: nothing moves its HA systems
      // (the design has no promise for it yet), so its outages do not count while it lasts.
      const from = this.sim.byId.get(outage.from)
      if (!connected || newPrimary || (from !== undefined && this.faults.serviceDown(from))) {
        outage.sinceUs = this.sim.nowUs
        continue
      }
      if (this.sim.nowUs - outage.sinceUs <= boundMs * 1000) continue
      this.outages.delete(outage.system)
      const spec = this.latestSpec(outage.system)
      if (spec === undefined || !spec.ha || spec.desired === "stopped") continue
      const owner = this.sim.nodes.find((node) => node.id === spec.node)
      if (owner !== undefined && owner.vmm.startFailuresOf(domainNameOf(outage.system)) > 0) continue
      this.sim.violate(
        "ha",
        `HA system ${outage.system} of ${outage.from} (crashed at ${Math.floor(outage.atUs / 1000)} ms) has not run again for ${Math.round(boundMs)} ms with a majority connected; its spec places it on ${spec.node ?? "no node"}`,
      )
    }
  }

  /** Ground truth: the newest spec of a system any live node holds. */
  private latestSpec(system: string): SystemSpecValue | undefined {
    let best: { version: Version; value: Uint8Array | null } | undefined
    for (const node of this.sim.nodes) {
      const entry = node.core?.store.get("system", system)
      if (entry !== undefined && (best === undefined || compareVersions(entry.version, best.version) > 0))
        best = entry
    }
    return decodeValue<SystemSpecValue>(best?.value)
  }

  /**
   * Convergence for the hypervisor: every system as its spec says, on its node only (a system
   * whose starts all failed is excused: the hypervisor gave up on it, with a reason in its meta).
   */
  unsettled(core: NodeCore): ReadonlyArray<string> {
    const unsettled: Array<string> = []
    const known = new Set<string>()
    for (const entry of core.store.list("system")) {
      const spec = decodeValue<SystemSpecValue>(entry.value)
      if (spec === undefined) continue
      known.add(domainNameOf(entry.id))
      const domain = domainNameOf(entry.id)
      const active = this.sim.nodes.flatMap((node) => {
        const state = node.vmm.stateOf(domain)
        return isActive(state) ? [`${node.id}:${state}`] : []
      })
      const owner = this.sim.nodes.find((node) => node.id === spec.node)
      // A system that is not HA stays with its node, down for good or not: nothing runs it.
      const stranded = owner !== undefined && this.faults.isLost(owner) && !spec.ha
      const expected = spec.desired === "stopped" || stranded ? [] : [`${spec.node}:${spec.desired}`]
      const gaveUp =
        owner !== undefined &&
        owner.vmm.startFailuresOf(domain) >= defaultHypervisorTimings.maxStartFailures &&
        active.length === 0
      if (!gaveUp && active.join(",") !== expected.join(","))
        unsettled.push(
          `system ${entry.id}: wanted ${expected.join(",") || "stopped"}, is ${active.join(",") || "stopped"}`,
        )
    }
    for (const node of this.sim.nodes)
      for (const { name, state } of node.vmm.list())
        if (!known.has(name) && isActive(state)) unsettled.push(`orphan ${name} on ${node.id}: ${state}`)
    return unsettled
  }
}
