/**
 * The false-alarm rate of the monitor's default rules. Runs seeds whose faults heal quickly
 * (flapping links, loss, reordering, duplication: a slow or lossy network, not a dead node), then
 * seeds with every fault, and counts the alarms raised about a node that was, in truth, up and
 * connected to the primary at that moment. The peer is the design target: zero false alarms.
 *
 *   npm run bench:false-alarms [-- --seeds 200]
 */
import { parseArgs } from "node:util"
import { progressOn } from "../adapters/cli/progress.ts"
import { defaultSimOptions, type FaultName } from "../sim/scenario.ts"
import { simulate } from "../sim/world.ts"

const progress = progressOn()

const { values } = parseArgs({ options: { seeds: { type: "string", default: "200" } } })
const seeds = Number(values.seeds)

const study = (label: string, faults: ReadonlyArray<FaultName>) => {
  let raised = 0
  let falseAlarms = 0
  let runs = 0
  for (let seed = 1; seed <= seeds; seed++) {
    const result = simulate({ ...defaultSimOptions, seed, durationMs: 60_000, faults })
    raised += result.alarmsRaised
    falseAlarms += result.falseAlarms
    runs++
    progress.update(`${label}: ${runs}/${seeds} seeds`, runs / seeds)
  }
  progress.done()
  return { label, runs, raised, falseAlarms }
}

const rows = [
  study("quick-healing faults (flapping, loss, reordering, duplication)", [
    "flapping",
    "loss",
    "reordering",
    "duplication",
  ]),
  study("all faults", defaultSimOptions.faults),
]
console.log(
  "faults                                                          seeds  alarms  false  false per 1000 virtual min",
)
for (const row of rows) {
  const minutes = row.runs
  console.log(
    `${row.label.padEnd(63)} ${String(row.runs).padStart(5)} ${String(row.raised).padStart(7)} ${String(row.falseAlarms).padStart(6)} ${((row.falseAlarms / minutes) * 1000).toFixed(1).padStart(10)}`,
  )
}
