/**
 * The decision log's checkers in the simulator: state-machine safety (no two nodes ever apply
 * different decisions at one index, whatever the faults) and in-order application (each run of a
 * node applies indexes in increasing order, each once). The log's own rules (log matching, leader
 * completeness) are checked against a scripted adversary in `test/core/decision/log.test.ts`;
 * here it is the composition under every fault of the simulator. And from the clients' side: the
 * history of every proposal (when it was made, when and how its node answered it) must be
 * linearizable against a sequential model of the allocations (`core/oracle/decisions.ts`),
 * checked at the end of the run — an answer given for a decision later lost, or given twice
 * different, has no legal order. A proposal refused (not the primary) took no effect and is left
 * out; one never answered (its node crashed, its entry was cut) may have taken effect, or not.
 * The primary's own proposals (the HA round's placements, tickets below zero) are in the history
 * too: they raise the epochs the clients' answers carry.
 */
import type { DecisionAnswer, DecisionCommand } from "../../core/decision/state.ts"
import { allocationModel } from "../../core/oracle/decisions.ts"
import { checkLinearizable, explainNoOrder, type Operation } from "../../core/oracle/linearizability.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

export class DecisionChecker {
  private readonly sim: Sim
  /** index → the decision applied there (as JSON), and who applied it first. */
  private readonly decided = new Map<number, { readonly command: string; readonly node: string }>()
  /** Per node, the last index its current run applied. */
  private readonly last = new Map<string, number>()
  applied = 0
  /** Placements committed, where first applied (`SimResult.hypervisor.placements`). */
  readonly placements: Array<{
    readonly atMs: number
    readonly index: number
    readonly system: string
    readonly node: string
    readonly epoch: number
  }> = []
  /** The clients' history, by "node ticket" (a service's: "node#run ticket"). */
  private readonly history = new Map<string, Operation<DecisionCommand, DecisionAnswer>>()
  /** Per node, its runs so far: a service's tickets start again with each. */
  private readonly runs = new Map<string, number>()

  constructor(sim: Sim) {
    this.sim = sim
  }

  /** A client proposed `command` on `node` now, as its ticket `ticket`. */
  proposed(node: SimNode, ticket: number, command: DecisionCommand): void {
    this.history.set(this.keyOf(node, ticket), { invokedUs: this.sim.nowUs, op: command })
  }

  private keyOf(node: SimNode, ticket: number): string {
    return ticket > 0 ? `${node.id} ${ticket}` : `${node.id}#${this.runs.get(node.id) ?? 0} ${ticket}`
  }

  /** The node answered the proposal: applied, with this answer. */
  answered(node: SimNode, ticket: number, answer: DecisionAnswer): void {
    const key = this.keyOf(node, ticket)
    const operation = this.history.get(key)
    if (operation === undefined || operation.returnedUs !== undefined) return
    this.history.set(key, { ...operation, returnedUs: this.sim.nowUs, result: answer })
  }

  /** The node refused the proposal before it reached the log: it took no effect. */
  refused(node: SimNode, ticket: number): void {
    const key = this.keyOf(node, ticket)
    if (this.history.get(key)?.returnedUs === undefined) this.history.delete(key)
  }

  /** At the end of the run: is the clients' history linearizable? */
  final(): void {
    const history = [...this.history.values()]
    if (history.length === 0) return
    const verdict = checkLinearizable(allocationModel, history, 200_000)
    if (verdict._tag !== "NotLinearizable") return
    const show = (index: number) => {
      const operation = history[index]!
      return `${JSON.stringify(operation.op)} at ${Math.floor(operation.invokedUs / 1000)} ms → ${operation.result === undefined ? "no answer" : `${JSON.stringify(operation.result)} at ${Math.floor(operation.returnedUs! / 1000)} ms`}`
    }
    this.sim.violate(
      "linearizability",
      `the clients' decisions have ${explainNoOrder(verdict, history.length, show)}`,
    )
  }

  /** A node (re)started: its composition applies from its snapshot on. */
  started(node: SimNode): void {
    this.last.delete(node.id)
    this.runs.set(node.id, (this.runs.get(node.id) ?? 0) + 1)
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
      if (answer._tag === "Placed")
        this.placements.push({
          atMs: Math.floor(this.sim.nowUs / 1000),
          index,
          system: answer.system,
          node: answer.node,
          epoch: answer.epoch,
        })
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
