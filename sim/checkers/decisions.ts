/**
 * The decision log's checkers in the simulator: state-machine safety (no two nodes ever apply
 * different decisions at one index, whatever the faults) and in-order application (each run of a
 * node applies indexes in increasing order, each once). The log's own rules (log matching, leader
 * completeness) are checked against a scripted adversary in `test/core/decision/log.test.ts`;
 * here it is the composition under every fault of the simulator.
 */
import type { DecisionCommand } from "../../core/decision/state.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

export class DecisionChecker {
  private readonly sim: Sim
  /** index → the decision applied there (as JSON), and who applied it first. */
  private readonly decided = new Map<number, { readonly command: string; readonly node: string }>()
  /** Per node, the last index its current run applied. */
  private readonly last = new Map<string, number>()
  applied = 0

  constructor(sim: Sim) {
    this.sim = sim
  }

  /** A node (re)started: its composition applies from its snapshot on. */
  started(node: SimNode): void {
    this.last.delete(node.id)
  }

  decision(node: SimNode, index: number, command: DecisionCommand): void {
    this.applied++
    const text = JSON.stringify(command)
    const earlier = this.decided.get(index)
    if (earlier === undefined) this.decided.set(index, { command: text, node: node.id })
    else if (earlier.command !== text)
      this.sim.violate(
        "decisions",
        `${node.id} applied ${text} at index ${index}, where ${earlier.node} applied ${earlier.command}`,
      )
    const previous = this.last.get(node.id) ?? 0
    if (index <= previous)
      this.sim.violate("decisions", `${node.id} applied index ${index} after ${previous} in one run`)
    this.last.set(node.id, index)
  }
}
