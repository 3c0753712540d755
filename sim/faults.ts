/**
 * The fault schedule as it stands at the current instant, and the ground truth the checkers
 * judge by: which links are cut, whose disk is full, whose hypervisor cannot start, and whether
 * a node (or a majority) can talk to the others both ways.
 */
import type { Sim } from "./events.ts"
import { relayOf, type SimNode } from "./host.ts"
import type { FaultEvent } from "./scenario.ts"

export class Faults {
  private readonly sim: Sim
  readonly active = new Set<FaultEvent>()
  /** The primary each "drift-beyond-bound" window cut off, by index, while the window lasts. */
  readonly slewed = new Map<FaultEvent, number>()
  /** Nodes down for good (fault "stay-down"), by index: never restarted, not even at the heal. */
  readonly lost = new Set<number>()

  constructor(sim: Sim) {
    this.sim = sim
  }

  /** Whether a datagram from node index `from` to `to` is cut off now. */
  blocked(from: number, to: number): boolean {
    for (const fault of this.active) {
      switch (fault.kind) {
        case "partition":
          if (fault.bridge === from || fault.bridge === to) break
          if (fault.side.includes(from) !== fault.side.includes(to)) return true
          break
        case "asymmetric":
          if (fault.node === from) return true
          break
        case "flapping": {
          const phase = Math.floor((this.sim.nowUs / 1000 - fault.atMs) / fault.periodMs)
          if ((fault.node === from || fault.node === to) && phase % 2 === 0) return true
          break
        }
        case "drift-beyond-bound": {
          const isolated = this.slewed.get(fault)
          if (isolated !== undefined && (isolated === from || isolated === to)) return true
          break
        }
        case "crash":
        case "stay-down":
        case "fsync-lie":
        case "disk-full":
        case "replay":
        case "service-failure":
        case "clock-step":
          break
      }
    }
    return false
  }

  /** Whether `node`'s store refuses commits now (fault "disk-full"). */
  diskFull(node: SimNode): boolean {
    for (const fault of this.active) if (fault.kind === "disk-full" && fault.node === node.index) return true
    return false
  }

  /** Whether `node`'s hypervisor service cannot start now (fault "service-failure"). */
  serviceDown(node: SimNode): boolean {
    for (const fault of this.active)
      if (fault.kind === "service-failure" && fault.node === node.index) return true
    return false
  }

  /** Whether the node is down for good (fault "stay-down"). */
  isLost(node: SimNode): boolean {
    return this.lost.has(node.index)
  }

  /** The share of datagrams the network loses now, per thousand (none after the heal). */
  lossPermille(): number {
    return this.sim.healed ? 0 : this.sim.scenario.schedule.rates.lossPermille
  }

  /** Whether the network keeps its promises (no loss, little reordering), as the liveness checkers require. */
  lossless(): boolean {
    const rates = this.sim.scenario.schedule.rates
    return this.sim.healed || (rates.lossPermille === 0 && rates.jitterUs <= 10_000)
  }

  /** Whether two nodes can exchange datagrams both ways now. */
  connected(a: SimNode, b: SimNode): boolean {
    return !this.blocked(a.index, b.index) && !this.blocked(b.index, a.index)
  }

  /** Can this node exchange datagrams with a majority (itself included)? */
  reachesMajority(node: SimNode): boolean {
    let count = 0
    for (const peer of this.sim.nodes)
      if (peer === node || (peer.core !== null && this.connected(node, peer))) count++
    return count >= Math.floor(this.sim.voters.length / 2) + 1
  }

  /**
   * Whether two nodes' CDBs can exchange datagrams both ways now: directly within a domain;
   * between domains only through both domains' relays, each up and connected (a domain has one
   * relay: with it down, its members hear no other domain's changes).
   */
  cdbConnected(a: SimNode, b: SimNode): boolean {
    if (a.domain === b.domain) return this.connected(a, b)
    const ra = relayOf(this.sim, a)
    const rb = relayOf(this.sim, b)
    if (ra === undefined || rb === undefined || ra.core === null || rb.core === null) return false
    return (
      (ra === a || this.connected(a, ra)) && this.connected(ra, rb) && (rb === b || this.connected(rb, b))
    )
  }

  /**
   * Is there a majority of up nodes, every pair of which can talk both ways, whose stores take
   * commits? A node whose disk is full can cast no vote (a vote is durable first) and write
   * nothing: it is no part of a majority that can elect or act (seed 1165: one node's full disk
   * left two voters of five, and the primary checker counted it in). With `viaCdb`, pairs must
   * reach each other's CDB (through the relays across domains), as the hypervisor's HA needs:
   * it acts only on a store in sync (seed 1000137: the relay of one domain down, its other
   * member heard the primary's monitor messages, which go direct, but no digest of a majority).
   */
  majorityConnected(viaCdb = false): boolean {
    const link = viaCdb
      ? (a: SimNode, b: SimNode) => this.cdbConnected(a, b)
      : (a: SimNode, b: SimNode) => this.connected(a, b)
    const group = this.sim.nodes.filter((node) => node.core !== null && !this.diskFull(node))
    // Greedily drop the least connected node until every pair in the group is connected.
    for (;;) {
      const degrees = group.map((node) => group.filter((peer) => peer !== node && link(node, peer)).length)
      const worst = degrees.indexOf(Math.min(...degrees))
      if (degrees[worst] === undefined || degrees[worst] === group.length - 1) break
      group.splice(worst, 1)
    }
    return group.length >= Math.floor(this.sim.voters.length / 2) + 1
  }
}
