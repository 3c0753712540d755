/**
 * The decision log's checkers in the simulator: state-machine safety (no two nodes ever apply
 * different decisions at one index, whatever the faults) and in-order application (each run of a
 * node applies indexes in increasing order, each once). The log's own rules (log matching, leader
 * completeness) are checked against a scripted adversary in `test/core/decision/log.test.ts`;
 * here it is the composition under every fault of the simulator.
 */
import type { DecisionAnswer, DecisionCommand } from "../../core/decision/state.ts"
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

  /** The oracle of the pools: who holds which value, from the decisions in index order (its own model, not the state machine's code). */
  private readonly holders = new Map<string, string>()
  private lastEpoch = 0

  decision(node: SimNode, index: number, command: DecisionCommand, answer: DecisionAnswer): void {
    this.applied++
    const text = JSON.stringify(command)
    const earlier = this.decided.get(index)
    if (earlier === undefined) {
      // Every node applies in index order, so the first sight of an index comes after every lower one.
      this.decided.set(index, { command: text, node: node.id })
      this.judge(index, command, answer)
    } else if (earlier.command !== text)
      this.sim.violate(
        "decisions",
        `${node.id} applied ${text} at index ${index}, where ${earlier.node} applied ${earlier.command}`,
      )
    const previous = this.last.get(node.id) ?? 0
    if (index <= previous)
      this.sim.violate("decisions", `${node.id} applied index ${index} after ${previous} in one run`)
    this.last.set(node.id, index)
  }

  /** The answer a sequential pool gives: a value granted only while free (or to its holder), released only by its holder, epochs rising. */
  private judge(index: number, command: DecisionCommand, answer: DecisionAnswer): void {
    const wrong = (why: string) =>
      this.sim.violate(
        "decisions",
        `index ${index}: ${JSON.stringify(command)} answered ${JSON.stringify(answer)}: ${why}`,
      )
    if ("epoch" in answer) {
      if (answer.epoch <= this.lastEpoch) wrong(`epoch ${answer.epoch} is not above ${this.lastEpoch}`)
      this.lastEpoch = Math.max(this.lastEpoch, answer.epoch)
    }
    if (command._tag === "Grant") {
      const candidates =
        command.value !== undefined
          ? [command.value]
          : Array.from(
              { length: (command.range?.to ?? 0) - (command.range?.from ?? 0) + 1 },
              (_, offset) => (command.range?.from ?? 0) + offset,
            )
      const free = candidates.filter((value) => {
        const holder = this.holders.get(`${command.pool}/${value}`)
        return holder === undefined || holder === command.holder
      })
      if (answer._tag === "Granted") {
        const holder = this.holders.get(`${command.pool}/${answer.value}`)
        if (holder !== undefined && holder !== command.holder) wrong(`${answer.value} is held by ${holder}`)
        this.holders.set(`${command.pool}/${answer.value}`, command.holder)
      } else if (free.length > 0) wrong(`${free.join(",")} ${free.length === 1 ? "is" : "are"} free`)
    }
    if (command._tag === "Release") {
      const key = `${command.pool}/${command.value}`
      const holds = this.holders.get(key) === command.holder
      if (answer._tag === "Released") {
        if (!holds) wrong(`${command.holder} did not hold it`)
        this.holders.delete(key)
      } else if (holds) wrong(`${command.holder} held it`)
    }
  }
}
