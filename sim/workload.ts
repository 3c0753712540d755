/**
 * The workload: every node writes at the scenario's rate during the faulty phase (puts, deletes,
 * meta, hot keys every node writes, bursts, storms of statistics), through its composition as
 * any client of the API would.
 */

import type { WriteOp } from "../core/cdb/node.ts"
import type { DecisionCommand } from "../core/decision/state.ts"
import type { Sim } from "./events.ts"
import type { Hosts, SimNode } from "./host.ts"
import type { Prng } from "./prng.ts"

export class Workload {
  private readonly sim: Sim
  private readonly hosts: Hosts
  private readonly load: Prng
  private readonly healAtUs: number
  /** The decisions' own draws (so they move none of the writes' draws). */
  private readonly decisions: Prng
  /** Changes the workload asked for. */
  written = 0
  /** Decisions proposed. */
  proposed = 0

  constructor(sim: Sim, hosts: Hosts, load: Prng, healAtUs: number, decisions: Prng) {
    this.sim = sim
    this.hosts = hosts
    this.load = load
    this.healAtUs = healAtUs
    this.decisions = decisions
  }

  /** About ten decisions a second, cluster-wide, until the heal. */
  scheduleDecision(): void {
    const atUs = this.sim.nowUs + 1 + this.decisions.below(200_000)
    if (atUs < this.healAtUs) this.sim.queue.push(atUs, { type: "decide" })
  }

  /** Grants and releases of a small VLAN pool and placements, proposed on a random up node. */
  decide(): void {
    this.scheduleDecision()
    const up = this.sim.nodes.filter((node) => node.core !== null)
    if (up.length === 0) return
    // A client that follows the primary a node names (as one would after a refusal that names it).
    const asked = this.decisions.pick(up)
    const named = asked.core?.primary() ?? null
    const node = up.find((candidate) => candidate.id === named) ?? asked
    const roll = this.decisions.below(10)
    const holder = `p${this.decisions.below(6)}`
    const command: DecisionCommand =
      roll < 5
        ? { _tag: "Grant", pool: "vlan", holder, range: { from: 100, to: 103 } }
        : roll < 8
          ? { _tag: "Release", pool: "vlan", holder, value: 100 + this.decisions.below(4) }
          : {
              _tag: "Place",
              system: `s${this.decisions.below(4)}`,
              node: this.decisions.pick(this.sim.nodes).id,
            }
    this.proposed++
    const ticket = ++node.ticket
    this.hosts.decisionProposed(node, ticket, command)
    this.hosts.step(node, { _tag: "Propose", command, ticket })
  }

  schedule(node: SimNode): void {
    const perNodeRate = this.sim.options.writesPerSec / this.sim.options.nodes
    const meanUs = Math.max(1, Math.floor(1_000_000 / perNodeRate))
    const atUs = this.sim.nowUs + 1 + this.load.below(meanUs * 2)
    if (atUs < this.healAtUs) this.sim.queue.push(atUs, { type: "write", node: node.index })
  }

  write(node: SimNode): void {
    this.schedule(node)
    if (node.core === null) return
    const workload = this.sim.scenario.workload
    const burst = workload.burstSize > 0 && this.load.chance(5) ? workload.burstSize : 1
    const writes: Array<Omit<WriteOp, "requestId">> = []
    for (let index = 0; index < burst; index++) {
      const hot = this.load.chance(workload.hotPermille)
      const id = hot ? `hot-${this.load.below(8)}` : `${node.id}-${this.load.below(workload.keySpace)}`
      const roll = this.load.below(1000)
      const op =
        roll < workload.deletePermille
          ? "delete"
          : roll < workload.deletePermille + workload.metaPermille
            ? "meta"
            : "put"
      const value = op === "delete" ? null : this.value(workload.valueBytes)
      writes.push({ op, kind: op === "meta" ? "service" : "record", id, value })
    }
    this.written += writes.length
    this.hosts.clientWrite(node, writes)
    if (workload.statsStorm && this.load.chance(200)) {
      const values = Array.from({ length: 40 }, (_, index) => ({
        kind: "record",
        id: `${node.id}-${index}`,
        value: this.value(24),
      }))
      this.hosts.step(node, { _tag: "SetStats", values })
    }
  }

  private value(length: number): Uint8Array {
    const bytes = new Uint8Array(length)
    for (let index = 0; index < length; index++) bytes[index] = this.load.below(256)
    return bytes
  }
}
