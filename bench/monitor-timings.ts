/**
 * Choosing the monitor's timings from simulation: for several leases (heartbeat and quorum window
 * scaled with it), run the same seeds with every fault and report the failover p50/p99/max,
 * the false alarms, the fences, and any violation. The defaults in
 * `core/monitor/election.ts` are the row this study picks; the peer is Proxmox VE's documented
 * ~120 s from a node failure to recovery.
 *
 *   npm run bench:monitor-timings [-- --seeds 100]
 */
import { parseArgs } from "node:util"
import { progressOn } from "../adapters/cli/progress.ts"
import { defaultElectionTimings } from "../core/monitor/election.ts"
import { percentileOfSorted } from "../core/percentile.ts"
import { defaultSimOptions } from "../sim/scenario.ts"
import { simulate } from "../sim/world.ts"

const progress = progressOn()

const { values } = parseArgs({ options: { seeds: { type: "string", default: "100" } } })
const seeds = Number(values.seeds)
const candidates = [
  { heartbeatMs: 50, leaseMs: 750, quorumWindowMs: 200, electionJitterMs: 300 },
  { heartbeatMs: 100, leaseMs: 1500, quorumWindowMs: 400, electionJitterMs: 600 },
  { heartbeatMs: 200, leaseMs: 3000, quorumWindowMs: 800, electionJitterMs: 1200 },
]
const proxmoxFailoverMs = 120_000

console.log(
  "heartbeat  lease  window  jitter  failovers  p50 ms  p99 ms  max ms  alarms  false  fences  violations  vs Proxmox p99",
)
for (const candidate of candidates) {
  const timings = { ...defaultElectionTimings, ...candidate }
  const failovers: Array<number> = []
  let alarms = 0
  let falseAlarms = 0
  let fences = 0
  let violations = 0
  for (let seed = 1; seed <= seeds; seed++) {
    const result = simulate({ ...defaultSimOptions, seed, durationMs: 60_000, electionTimings: timings })
    failovers.push(...result.failoverSamplesMs)
    alarms += result.alarmsRaised
    falseAlarms += result.falseAlarms
    fences += result.fences
    violations += result.violations.length
    progress.update(`lease ${timings.leaseMs} ms: ${seed}/${seeds}`, seed / seeds)
  }
  progress.done()
  failovers.sort((left, right) => left - right)
  const at = (p: number) => percentileOfSorted(failovers, p) ?? 0
  console.log(
    [
      String(timings.heartbeatMs).padStart(9),
      String(timings.leaseMs).padStart(6),
      String(timings.quorumWindowMs).padStart(7),
      String(timings.electionJitterMs).padStart(7),
      String(failovers.length).padStart(10),
      String(at(50)).padStart(7),
      String(at(99)).padStart(7),
      String(failovers.at(-1) ?? 0).padStart(7),
      String(alarms).padStart(7),
      String(falseAlarms).padStart(6),
      String(fences).padStart(7),
      String(violations).padStart(11),
      `${(proxmoxFailoverMs / Math.max(1, at(99))).toFixed(0)}x faster`.padStart(15),
    ].join(" "),
  )
}
console.log(
  "failovers: every failover of every run, from the primary's crash or isolation to the next lease, counted while a majority is connected",
)
