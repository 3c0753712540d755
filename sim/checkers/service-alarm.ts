/**
 * Fault "service-failure": a hypervisor service that has been failing for the alarm's threshold
 * (and a slack for its state to reach the primary) is alarmed by a primary that has held office
 * throughout, hears the node over a network that keeps its promises, and whose store and the
 * node's took every commit in the window; that primary's health says why (`service-alarm`).
 */
import { serviceFailingRule } from "../../core/node/node.ts"
import type { Sim } from "../events.ts"
import { relayOf, type SimNode } from "../host.ts"
import type { FaultEvent } from "../scenario.ts"
import type { ElectionChecker } from "./election.ts"

/** How long after the alarm's threshold the primary must have raised it. */
const serviceAlarmSlackMs = 3_000

type ServiceFailure = Extract<FaultEvent, { kind: "service-failure" }>

export class ServiceAlarmChecker {
  private readonly sim: Sim
  private readonly election: ElectionChecker
  /** Windows in which the checker could and did look (the others had a fault in the way). */
  checks = 0

  constructor(sim: Sim, election: ElectionChecker) {
    this.sim = sim
    this.election = election
  }

  /** The fault began: the check is due at its threshold and slack, if the window lasts that long. */
  scheduleFor(fault: ServiceFailure): void {
    const checkAtMs = fault.atMs + serviceFailingRule.raiseAfterMs + serviceAlarmSlackMs
    if (checkAtMs < fault.atMs + fault.durationMs)
      this.sim.queue.push(checkAtMs * 1000, { type: "service-alarm-check", fault })
  }

  check(fault: ServiceFailure): void {
    const sim = this.sim
    const node = sim.nodes[fault.node]!
    const primary = this.election.primaryNow()
    const rates = sim.scenario.schedule.rates
    const windowFromMs = fault.atMs
    const overlaps = (kinds: ReadonlyArray<FaultEvent["kind"]>, index?: number) =>
      sim.scenario.schedule.events.some(
        (other) =>
          kinds.includes(other.kind) &&
          (index === undefined || ("node" in other && other.node === index)) &&
          other.atMs < sim.nowUs / 1000 &&
          other.atMs + other.durationMs > windowFromMs,
      )
    // Across domains the node's word reaches the primary only through both domains' relays: a
    // relay down, or with a full disk (it drops what it cannot commit), is a fault in the way
    // (seed 1000469: d1's relay had a full disk the whole window).
    const relaysDown = (a: SimNode, b: SimNode) =>
      a.domain !== b.domain &&
      [a, b].some((member) => {
        const relay = relayOf(sim, member)
        return (
          relay === undefined ||
          overlaps(["disk-full", "crash", "fsync-lie", "stay-down", "service-failure"], relay.index)
        )
      })
    if (
      sim.healed ||
      node.core === null ||
      primary === undefined ||
      primary === node ||
      primary.leaseFromUs > windowFromMs * 1000 ||
      rates.lossPermille > 0 ||
      rates.jitterUs > 10_000 ||
      overlaps(["partition", "asymmetric", "flapping"]) ||
      overlaps(["disk-full"], node.index) ||
      overlaps(["disk-full"], primary.index) ||
      relaysDown(node, primary)
    )
      return
    this.checks++
    const id = `service-failing.${node.id}.hypervisor`
    if (!primary.core!.openAlarms().some((alarm) => alarm.id === id))
      sim.violate(
        "service-alarm",
        `${node.id}'s hypervisor has failed since ${fault.atMs} ms, yet primary ${primary.id} has raised no ${id}`,
      )
    const reason = `hypervisor on ${node.id} backing-off`
    const health = primary.core!.health(primary.localMs(sim.nowUs))
    if (!health.cluster.reasons.some((entry) => entry.reason.startsWith(reason)))
      sim.violate("service-alarm", `${primary.id}'s health does not say "${reason}"`)
  }
}
