/**
 * Convergence, after the heal: every node holds the same entries and stream positions, one
 * primary holds a lease, nobody is fenced, every alarm is cleared, every system is as its spec
 * says, no survivor's disk keeps a half-made image (what a create broken off by a crash left is
 * cleaned up, or it would hold its space for good), and every survivor has heard a digest of every other since the heal; that within
 * `digestsHeardWithinMs` (`heard`): on a network that keeps its promises digests reach every
 * node within a few heartbeats, through the relays too. (A relay that keyed what it forwarded
 * by sender, not by run, dropped a restarted node's digests for as long as it had been up before.)
 * Also the timeline (how far behind each node is, sampled) the report draws.
 */
import { compareVersions } from "../../core/cdb/hlc.ts"
import type { Sim } from "../events.ts"
import type { Faults } from "../faults.ts"
import type { SimNode } from "../host.ts"
import type { TimelineSample } from "../result.ts"
import type { ElectionChecker } from "./election.ts"
import type { VmChecker } from "./vm.ts"

/** How long after the heal every survivor must have heard a digest of every other. */
export const digestsHeardWithinMs = 5_000

export class ConvergenceChecker {
  private readonly sim: Sim
  private readonly election: ElectionChecker
  private readonly vm: VmChecker
  private readonly faults: Faults
  readonly timeline: Array<TimelineSample> = []
  private readonly sampleEveryUs: number
  private nextSampleUs = 0
  convergedAtUs: number | null = null
  private healedAtUs: number | undefined
  private heardChecked = false

  constructor(sim: Sim, election: ElectionChecker, vm: VmChecker, faults: Faults, sampleEveryUs: number) {
    this.sim = sim
    this.election = election
    this.vm = vm
    this.faults = faults
    this.sampleEveryUs = sampleEveryUs
  }

  /** Samples the timeline and, after the heal, tests convergence. */
  check(): void {
    const nowUs = this.sim.nowUs
    if (nowUs >= this.nextSampleUs) {
      this.nextSampleUs = nowUs + this.sampleEveryUs
      this.timeline.push({ atMs: Math.floor(nowUs / 1000), lag: this.lags() })
    }
    if (this.sim.healed) this.healedAtUs ??= nowUs
    if (
      !this.heardChecked &&
      this.healedAtUs !== undefined &&
      nowUs >= this.healedAtUs + digestsHeardWithinMs * 1000
    ) {
      this.heardChecked = true
      for (const [node, member] of this.unheard())
        this.sim.violate(
          "heard",
          `${node.id} has heard no digest of ${member.id} in the ${digestsHeardWithinMs / 1000} s since the heal`,
        )
    }
    if (this.sim.healed && this.convergedAtUs === null && this.isConverged()) {
      this.convergedAtUs = nowUs
      this.timeline.push({ atMs: Math.floor(nowUs / 1000), lag: this.lags() })
    }
  }

  /** The pairs of survivors (node, member) where the node has heard no digest of the member since the heal. */
  private unheard(): ReadonlyArray<readonly [SimNode, SimNode]> {
    const pairs: Array<readonly [SimNode, SimNode]> = []
    if (this.healedAtUs === undefined) return pairs
    const survivors = this.survivors()
    for (const node of survivors) {
      if (node.core === null) continue
      const sync = node.core.cdbCore.syncState()
      const sinceMs = node.localMs(this.healedAtUs)
      for (const member of survivors)
        if (member !== node && member.core !== null && sync.digestHeardMs(member.id) < sinceMs)
          pairs.push([node, member])
    }
    return pairs
  }

  private lags(): Array<number> {
    const best = new Map<string, number>()
    for (const node of this.sim.nodes) {
      if (node.core === null) continue
      for (const [origin, seq] of node.core.cdbCore.vector())
        best.set(origin, Math.max(best.get(origin) ?? 0, seq))
    }
    return this.sim.nodes.map((node) => {
      if (node.core === null) return -1
      let lag = 0
      for (const [origin, seq] of best) lag += seq - node.core.cdbCore.appliedUpTo(origin)
      return lag
    })
  }

  /** The nodes that must converge: every node but those down for good (fault "stay-down"). */
  private survivors() {
    return this.sim.nodes.filter((node) => !this.faults.isLost(node))
  }

  /** An open alarm the cluster cannot clear: about a node down for good (its subject names it). */
  private excused(alarm: { readonly id: string }): boolean {
    const subject = alarm.id.split(".")[1]
    return this.sim.nodes.some((node) => node.id === subject && this.faults.isLost(node))
  }

  private isConverged(): boolean {
    const nodes = this.survivors()
    const first = nodes[0]?.core ?? null
    if (first === null) return false
    const fingerprint = first.cdbCore.fingerprint()
    if (!nodes.every((node) => node.core !== null && node.core.cdbCore.fingerprint() === fingerprint))
      return false
    const vector = JSON.stringify(first.cdbCore.vector())
    if (!nodes.every((node) => JSON.stringify(node.core!.cdbCore.vector()) === vector)) return false
    if (this.unheard().length > 0) return false
    // The monitor too: one primary with a lease, nobody fenced, and every alarm cleared.
    return (
      this.election.primaryNow() !== undefined &&
      nodes.every((node) => !node.fenced) &&
      nodes.every((node) => node.storage.partials().length === 0) &&
      first.openAlarms().every((alarm) => this.excused(alarm)) &&
      (this.sim.systems === 0 || this.vm.unsettled(first).length === 0)
    )
  }

  /** After convergence: every live node holds identical entries (returns the reference store). */
  final() {
    const nodes = this.survivors()
    const stores = nodes.map((node) => node.core!.cdbCore.allEntries())
    const reference = stores[0]!
    const first = nodes[0]!.id
    stores.forEach((store, index) => {
      const id = nodes[index]!.id
      if (store.length !== reference.length) {
        this.sim.violate(
          "convergence",
          `${id} holds ${store.length} entries, ${first} holds ${reference.length}`,
        )
        return
      }
      for (let position = 0; position < store.length; position++) {
        const [key, entry] = store[position]!
        const [referenceKey, referenceEntry] = reference[position]!
        if (key !== referenceKey || compareVersions(entry.version, referenceEntry.version) !== 0) {
          this.sim.violate("convergence", `${id} and ${first} differ at ${key.replace("\u0000", "/")}`)
          return
        }
      }
    })
    return reference
  }

  /** Why the cluster did not converge. */
  pending(): ReadonlyArray<string> {
    const pending: Array<string> = []
    const nodes = this.sim.nodes
    for (const node of nodes) {
      if (node.core === null) pending.push(`${node.id}: down${this.faults.isLost(node) ? " for good" : ""}`)
      else for (const gap of node.core.cdbCore.gapsReport()) pending.push(`${node.id} lacks ${gap}`)
    }
    const fingerprints = nodes.map((node) => `${node.id}=${node.core?.cdbCore.fingerprint() ?? "down"}`)
    pending.push(`fingerprints: ${fingerprints.join(" ")}`)
    const primary = this.election.primaryNow()
    pending.push(
      primary === undefined
        ? "no primary holds a lease"
        : `primary ${primary.id} (term ${primary.leaseTerm})`,
    )
    for (const node of nodes) if (node.fenced) pending.push(`${node.id} is fenced`)
    for (const node of this.survivors())
      for (const partial of node.storage.partials())
        pending.push(
          `${node.id}'s disk keeps the half-made image of ${partial} (a create broken off by a crash)`,
        )
    for (const [node, member] of this.unheard())
      pending.push(`${node.id} has heard no digest of ${member.id} since the heal`)
    const first = this.survivors()[0]?.core ?? null
    if (first !== null) {
      for (const alarm of first.openAlarms())
        if (!this.excused(alarm)) pending.push(`alarm ${alarm.id} is ${alarm.state}`)
      if (this.sim.systems > 0) pending.push(...this.vm.unsettled(first))
    }
    return pending
  }
}
