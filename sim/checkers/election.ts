/**
 * The monitor's checkers: one primary per term (`election`), never two leases at one instant of
 * true time (`lease`), and a connected, stable majority never without a primary for longer than
 * the election bound (`primary`). It keeps the book of who held a lease when, and measures each
 * failover: from the primary's crash or isolation to the next primary holding a lease.
 */
import type { Sim } from "../events.ts"
import type { Faults } from "../faults.ts"
import type { SimNode } from "../host.ts"
import { l3DelayUs } from "../network.ts"

/** How long a connected, stable majority may go without a primary (the failover goal). */
export const electionBoundMs = 5_000

export class ElectionChecker {
  private readonly sim: Sim
  private readonly faults: Faults
  private readonly termPrimary = new Map<number, string>()
  private readonly intervals: Array<{ node: string; term: number; fromMs: number; toMs: number }> = []
  readonly failovers: Array<number> = []
  /** Set while the primary is gone (crashed or cut off) and no successor holds a lease yet. */
  private failoverFrom: { readonly atUs: number; readonly node: string; readonly term: number } | null = null
  primaryChanges = 0
  /** Since when (global µs) a majority has been up and connected, every pair both ways; null if none is. */
  private majoritySinceUs: number | null = 0
  private lastPrimaryUs = 0
  fences = 0

  constructor(sim: Sim, faults: Faults) {
    this.sim = sim
    this.faults = faults
  }

  becamePrimary(node: SimNode, term: number): void {
    const trace = this.sim.trace
    trace.number(7)
    trace.number(this.sim.nowUs)
    trace.number(node.index)
    trace.number(term)
    const holder = this.termPrimary.get(term)
    if (holder !== undefined && holder !== node.id) {
      this.sim.violate("election", `${node.id} and ${holder} both became primary in term ${term}`)
    }
    this.termPrimary.set(term, node.id)
  }

  /** A lease begins: no other node may hold a valid one at this instant (true time). */
  leaseRenewed(node: SimNode, term: number, untilUs: number): void {
    const nowUs = this.sim.nowUs
    for (const other of this.sim.nodes) {
      if (other !== node && other.leaseUntilUs > nowUs) {
        this.sim.violate(
          "lease",
          `${node.id} holds a lease (term ${term}) while ${other.id} still holds one (term ${other.leaseTerm}) until ${Math.floor(other.leaseUntilUs / 1000)} ms`,
        )
      }
    }
    // The primary the failover clock was started for renewed its lease with acknowledgements sent
    // after the fault began (not ones already in flight): a majority still acknowledges it, so
    // there was no failover (a brief flap, say) and the clock stops.
    const inFlightUs = l3DelayUs + this.sim.scenario.schedule.rates.jitterUs + 1_000
    if (
      this.failoverFrom !== null &&
      this.failoverFrom.node === node.id &&
      this.failoverFrom.term === term &&
      nowUs - this.failoverFrom.atUs > inFlightUs
    ) {
      this.failoverFrom = null
    }
    const fresh = node.leaseUntilUs <= nowUs || node.leaseTerm !== term
    if (fresh) {
      if (node.leaseFromUs > 0 && node.leaseUntilUs > node.leaseFromUs) {
        this.intervals.push({
          node: node.id,
          term: node.leaseTerm,
          fromMs: Math.floor(node.leaseFromUs / 1000),
          toMs: Math.floor(Math.min(node.leaseUntilUs, nowUs) / 1000),
        })
      }
      this.primaryChanges++
      node.leaseFromUs = nowUs
      if (
        this.failoverFrom !== null &&
        (this.failoverFrom.node !== node.id || this.failoverFrom.term !== term)
      ) {
        this.failovers.push(Math.floor((nowUs - this.failoverFrom.atUs) / 1000))
        this.failoverFrom = null
      }
    }
    node.leaseTerm = term
    node.leaseUntilUs = Math.max(node.leaseUntilUs, untilUs)
  }

  /** The lease ends now (step-down or crash); its interval is recorded when the next one starts, or at the end. */
  endLease(node: SimNode): void {
    if (node.leaseUntilUs > this.sim.nowUs) node.leaseUntilUs = this.sim.nowUs
  }

  /** The primary crashed or was cut off: start the failover clock, unless one is already running. */
  primaryGone(node: SimNode): void {
    if (this.sim.healed || this.failoverFrom !== null || node.leaseUntilUs <= this.sim.nowUs) return
    this.failoverFrom = { atUs: this.sim.nowUs, node: node.id, term: node.leaseTerm }
  }

  /** Everything healed: a failover still being timed is not one the faults caused any more. */
  healed(): void {
    this.failoverFrom = null
  }

  /** The node holding a lease now, as the book says. */
  primaryNow(): SimNode | undefined {
    return this.sim.nodes.find((node) => node.leaseUntilUs > this.sim.nowUs)
  }

  /**
   * Liveness of the election: a majority that has been connected and stable for longer than the
   * election bound has a primary. Checked only where the network keeps its promises (no loss),
   * and it pauses the failover clock while no majority is connected.
   */
  checkLiveness(): void {
    const nowUs = this.sim.nowUs
    if (!this.faults.majorityConnected()) {
      this.majoritySinceUs = null
      if (this.failoverFrom !== null) this.failoverFrom = { ...this.failoverFrom, atUs: nowUs }
      return
    }
    this.majoritySinceUs ??= nowUs
    if (this.primaryNow() !== undefined) {
      this.lastPrimaryUs = nowUs
      return
    }
    const withoutUs = nowUs - Math.max(this.majoritySinceUs, this.lastPrimaryUs)
    if (this.faults.lossless() && withoutUs > electionBoundMs * 1000) {
      this.sim.violate(
        "primary",
        `no primary for ${Math.floor(withoutUs / 1000)} ms while a majority has been connected since ${Math.floor(this.majoritySinceUs / 1000)} ms`,
      )
      this.lastPrimaryUs = nowUs
    }
  }

  /** Who was primary when: one interval per lease held, those still running included. */
  primaries(): ReadonlyArray<{ node: string; term: number; fromMs: number; toMs: number }> {
    return [
      ...this.intervals,
      ...this.sim.nodes
        .filter((node) => node.leaseFromUs > 0 && node.leaseUntilUs > node.leaseFromUs)
        .map((node) => ({
          node: node.id,
          term: node.leaseTerm,
          fromMs: Math.floor(node.leaseFromUs / 1000),
          toMs: Math.floor(Math.min(node.leaseUntilUs, this.sim.nowUs) / 1000),
        })),
    ].sort((left, right) => left.fromMs - right.fromMs)
  }
}
