/**
 * The simulator's study of the CDB's cost by cluster size (from the CDB issue): each run writes
 * 200 changes/s cluster-wide for 6 virtual seconds while a tenth of the nodes is cut off from
 * 1 s until the heal at 6 s; it reports the convergence time after the heal and the datagrams
 * delivered per change written. Digest timing scales with size (every node digests to every
 * node: O(N²)). Used by `acp bench sim` and `npm run bench:sim-scale`.
 */
import { simulate } from "../sim/world.ts"
import type { SimRow } from "./report.ts"

export const digestMsFor = (nodes: number): number => (nodes <= 10 ? 200 : nodes <= 100 ? 1000 : 5000)

export const simStudyRow = (
  nodes: number,
): SimRow & { readonly deliveries: number; readonly changes: number } => {
  const digestMs = digestMsFor(nodes)
  const isolated = Array.from({ length: Math.max(1, Math.floor(nodes / 10)) }, (_, index) => index * 10)
  const started = performance.now()
  const result = simulate({
    seed: 1,
    nodes,
    domains: 1,
    durationMs: 6_000,
    faults: [],
    writesPerSec: 200,
    livenessBoundMs: 120_000,
    canary: false,
    timings: { heartbeatMs: digestMs, suspectAfterMs: digestMs * 5, deadAfterMs: digestMs * 15 },
    schedule: {
      rates: { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 },
      driftPpm: Array.from({ length: nodes }, () => 0),
      events: [{ kind: "partition", atMs: 1_000, durationMs: 5_000, side: isolated }],
    },
  })
  if (result.violations.length > 0) throw new Error(`${nodes} nodes: ${result.violations[0]?.message}`)
  return {
    nodes,
    digestMs,
    convergenceMs: result.convergenceMs,
    deliveriesPerChange: result.datagramsDelivered / Math.max(1, result.changesWritten),
    deliveries: result.datagramsDelivered,
    changes: result.changesWritten,
    wallMs: Math.round(performance.now() - started),
  }
}
