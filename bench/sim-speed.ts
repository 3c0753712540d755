/**
 * Simulator speed: how much faster than real time the simulator runs one cluster.
 * 5 nodes, 1 domain, 1000 changes/s cluster-wide, all faults, one thread. The peer is the wall
 * clock itself: the figure is virtual time ÷ wall time (goal: at least 1000×).
 *
 *   npm run bench:sim-speed [-- --seeds 5 --duration 60s]
 */
import { parseArgs } from "node:util"
import { progressOn } from "../adapters/cli/progress.ts"
import { defaultSimOptions } from "../sim/scenario.ts"
import { simulate } from "../sim/world.ts"

const progress = progressOn()

const { values } = parseArgs({
  options: { seeds: { type: "string", default: "5" }, duration: { type: "string", default: "60" } },
})
const seeds = Number(values.seeds)
const durationMs = Number.parseInt(values.duration, 10) * 1000

const rows: Array<{ seed: number; virtualMs: number; wallMs: number; events: number; changes: number }> = []
for (let seed = 1; seed <= seeds; seed++) {
  const started = performance.now()
  const result = simulate({ ...defaultSimOptions, seed, durationMs, writesPerSec: 1000 })
  const wallMs = performance.now() - started
  if (result.violations.length > 0) throw new Error(`seed ${seed} violated: ${result.violations[0]?.message}`)
  rows.push({
    seed,
    virtualMs: result.virtualMs,
    wallMs,
    events: result.events,
    changes: result.changesWritten,
  })
  progress.update(`seed ${seed}/${seeds}: ${(result.virtualMs / wallMs).toFixed(0)}x real time`, seed / seeds)
}
progress.done()
const virtualMs = rows.reduce((sum, row) => sum + row.virtualMs, 0)
const wallMs = rows.reduce((sum, row) => sum + row.wallMs, 0)
const events = rows.reduce((sum, row) => sum + row.events, 0)
console.log("seed  virtual s  wall ms  x real time  events/s (wall)")
for (const row of rows) {
  console.log(
    `${String(row.seed).padEnd(5)} ${(row.virtualMs / 1000).toFixed(0).padStart(9)} ${row.wallMs.toFixed(0).padStart(8)} ${(row.virtualMs / row.wallMs).toFixed(0).padStart(12)} ${(row.events / (row.wallMs / 1000)).toFixed(0).padStart(16)}`,
  )
}
console.log(
  `all: ${(virtualMs / wallMs).toFixed(0)}x real time (goal 1000x), ${(events / (wallMs / 1000)).toFixed(0)} events/s, ${(virtualMs / 1000).toFixed(0)} virtual s in ${(wallMs / 1000).toFixed(1)} wall s`,
)
