/**
 * Fencing: every node cut off from a majority for longer than the fence bound must have fenced
 * itself. "Cut off" is ground truth seen through the node's own quorum window: no majority
 * (itself included) has been up and connected to it both ways within the last window — each way
 * open at some moment of the window, as the node counts a peer (it heard the peer, and the peer
 * says it heard it, each within the window). Both ways open at one instant was stricter than
 * that rule: a node whose peer's outgoing cut ended just as its own began (seed 9311446) heard
 * the peer's pings say it was heard a moment before, counted it for 400 ms, and unfenced — as
 * the rule it implements says, while the checker had it cut off since long before.
 */
import { fenceBoundMs } from "../../core/monitor/election.ts"
import { clockOffsetToleratedMs } from "../../core/transport/replay.ts"
import type { Sim } from "../events.ts"
import type { Faults } from "../faults.ts"
import type { SimNode } from "../host.ts"
import { l3DelayUs } from "../network.ts"
import type { ElectionTimings } from "../scenario.ts"

export const checkFencing = (sim: Sim, faults: Faults, timings: ElectionTimings): void => {
  const nowUs = sim.nowUs
  // The bound the core promises, plus the largest delivery delay the network may add — and, under
  // fault "replay", the delay an adversary can still fake: a datagram sealed just before a
  // receiver's restart, played back within the tolerated clock offset of it (seed 1459).
  const replaySlackUs = sim.scenario.schedule.events.some((fault) => fault.kind === "replay")
    ? 2 * clockOffsetToleratedMs * 1000
    : 0
  const boundUs =
    fenceBoundMs(timings) * 1000 + sim.scenario.schedule.rates.jitterUs + l3DelayUs + replaySlackUs
  const windowUs = timings.quorumWindowMs * 1000
  const majority = Math.floor(sim.voters.length / 2) + 1
  for (const node of sim.nodes) {
    if (node.core === null) continue
    for (const peer of sim.nodes)
      if (peer !== node && peer.core !== null && !faults.blocked(peer.index, node.index))
        node.lastConnectedUs[peer.index] = nowUs
  }
  const open = (from: SimNode, to: SimNode) => {
    const atUs = to.lastConnectedUs[from.index] ?? 0
    return atUs > 0 && nowUs - atUs <= windowUs
  }
  for (const node of sim.nodes) {
    const recent = sim.nodes.filter((peer) => peer !== node && open(peer, node) && open(node, peer)).length
    if (node.core === null || recent + 1 >= majority) {
      node.cutOffSinceUs = null
      continue
    }
    node.cutOffSinceUs ??= nowUs
    if (nowUs - node.cutOffSinceUs > boundUs && !node.fenced) {
      sim.violate(
        "fence",
        `${node.id} has been cut off from a majority since ${Math.floor(node.cutOffSinceUs / 1000)} ms and has not fenced itself`,
      )
      node.cutOffSinceUs = nowUs
    }
  }
}
