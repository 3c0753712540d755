/**
 * The fault schedule as it stands at the current instant, and the ground truth the checkers
 * judge by: which links are cut, whose disk is full, whose hypervisor cannot start, and whether
 * a node (or a majority) can talk to the others both ways.
 */
import type { Sim } from "./events.ts"
import type { SimNode } from "./host.ts"
import type { FaultEvent } from "./scenario.ts"

export class Faults {
  private readonly sim: Sim
  readonly active = new Set<FaultEvent>()
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
        case "crash":
        case "stay-down":
        case "fsync-lie":
        case "disk-full":
        case "replay":
        case "service-failure":
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
   * Is there a majority of up nodes, every pair of which can talk both ways, whose stores take
   * commits? A node whose disk is full can cast no vote (a vote is durable first) and write
   * nothing: it is no part of a majority that can elect or act (seed 1165: one node's full disk
   * left two voters of five, and the primary checker counted it in).
   */
  majorityConnected(): boolean {
    const group = this.sim.nodes.filter((node) => node.core !== null && !this.diskFull(node))
    // Greedily drop the least connected node until every pair in the group is connected.
    for (;;) {
      const degrees = group.map(
        (node) => group.filter((peer) => peer !== node && this.connected(node, peer)).length,
      )
      const worst = degrees.indexOf(Math.min(...degrees))
      if (degrees[worst] === undefined || degrees[worst] === group.length - 1) break
      group.splice(worst, 1)
    }
    return group.length >= Math.floor(this.sim.voters.length / 2) + 1
  }
}
