/**
 * Simulator speed: how much faster than real time the simulator runs one cluster, and the same
 * seeds on a baseline commit in the same run (its tree checked out beside this one), so the
 * figure before a change and after it come from one machine at one time.
 * 5 nodes, 1 domain, all faults, one thread; by default 1000 changes/s cluster-wide (the heavy
 * workload) — `--writes 200` is `acp sim`'s default. Printed: virtual ÷ wall time (goal 1000×;
 * TigerBeetle's VOPR runs at about 700×), events and datagram deliveries per wall second.
 *
 *   npm run bench:sim-speed [-- --seeds 5 --duration 60 --writes 1000 --baseline 625de99]
 */
import { execFileSync } from "node:child_process"
import { existsSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { progressOn } from "../adapters/cli/progress.ts"
import type { SimOptions } from "../sim/scenario.ts"
import type { SimResult } from "../sim/world.ts"

const progress = progressOn()
const root = fileURLToPath(new URL("..", import.meta.url))

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "5" },
    duration: { type: "string", default: "60" },
    writes: { type: "string", default: "1000" },
    /** The commit to compare with: the simulator before the one-node-core work, by default. */
    baseline: { type: "string", default: "625de99" },
  },
})
const seeds = Number(values.seeds)
const durationMs = Number.parseInt(values.duration, 10) * 1000
const writesPerSec = Number(values.writes)

interface Simulator {
  readonly label: string
  readonly simulate: (options: SimOptions) => SimResult
  readonly defaults: Omit<SimOptions, "seed">
}

/** The simulator of a commit, from a worktree of it beside this checkout (made once, kept). */
const simulatorAt = async (ref: string): Promise<Simulator> => {
  const commit = execFileSync("git", ["rev-parse", "--short", ref], { cwd: root, encoding: "utf8" }).trim()
  const dir = join(tmpdir(), `acp-baseline-${commit}`)
  if (!existsSync(dir)) {
    execFileSync("git", ["worktree", "add", "--detach", dir, commit], { cwd: root, stdio: "ignore" })
    symlinkSync(join(root, "node_modules"), join(dir, "node_modules"))
  }
  const world = (await import(join(dir, "sim/world.ts"))) as { simulate: Simulator["simulate"] }
  const scenario = (await import(join(dir, "sim/scenario.ts"))) as {
    defaultSimOptions: Simulator["defaults"]
  }
  return { label: `baseline ${commit}`, simulate: world.simulate, defaults: scenario.defaultSimOptions }
}

const current = async (): Promise<Simulator> => {
  const world = await import("../sim/world.ts")
  const scenario = await import("../sim/scenario.ts")
  return { label: "this tree", simulate: world.simulate, defaults: scenario.defaultSimOptions }
}

interface Row {
  readonly seed: number
  readonly virtualMs: number
  readonly wallMs: number
  readonly events: number
  readonly deliveries: number
}

const measure = (simulator: Simulator, step: (done: number) => void): ReadonlyArray<Row> => {
  const rows: Array<Row> = []
  for (let seed = 1; seed <= seeds; seed++) {
    const started = performance.now()
    const result = simulator.simulate({ ...simulator.defaults, seed, durationMs, writesPerSec })
    const wallMs = performance.now() - started
    if (result.violations.length > 0)
      throw new Error(`${simulator.label}: seed ${seed} violated: ${result.violations[0]?.message}`)
    rows.push({
      seed,
      virtualMs: result.virtualMs,
      wallMs,
      events: result.events,
      deliveries: result.datagramsDelivered,
    })
    step(seed)
  }
  return rows
}

const summary = (rows: ReadonlyArray<Row>) => {
  const virtualMs = rows.reduce((sum, row) => sum + row.virtualMs, 0)
  const wallMs = rows.reduce((sum, row) => sum + row.wallMs, 0)
  return {
    speed: virtualMs / wallMs,
    eventsPerSec: rows.reduce((sum, row) => sum + row.events, 0) / (wallMs / 1000),
    deliveriesPerSec: rows.reduce((sum, row) => sum + row.deliveries, 0) / (wallMs / 1000),
    virtualS: virtualMs / 1000,
    wallS: wallMs / 1000,
  }
}

const simulators = [await current(), await simulatorAt(values.baseline)]
const results = simulators.map((simulator, index) => ({
  simulator,
  rows: measure(simulator, (seed) =>
    progress.update(`${simulator.label}: seed ${seed}/${seeds}`, (index * seeds + seed) / (2 * seeds)),
  ),
}))
progress.done()
console.log(
  `5 nodes, all faults, ${writesPerSec} writes/s, ${durationMs / 1000} s of faults per seed, seeds 1..${seeds}`,
)
console.log("simulator          seed  virtual s  wall ms  x real time  events/s (wall)  deliveries/s (wall)")
for (const { simulator, rows } of results)
  for (const row of rows)
    console.log(
      `${simulator.label.padEnd(18)} ${String(row.seed).padEnd(5)} ${(row.virtualMs / 1000).toFixed(0).padStart(9)} ${row.wallMs.toFixed(0).padStart(8)} ${(row.virtualMs / row.wallMs).toFixed(0).padStart(12)} ${(row.events / (row.wallMs / 1000)).toFixed(0).padStart(16)} ${(row.deliveries / (row.wallMs / 1000)).toFixed(0).padStart(20)}`,
    )
const [now, before] = results.map(({ rows }) => summary(rows))
for (const [index, figures] of [now!, before!].entries())
  console.log(
    `${results[index]!.simulator.label}: ${figures.speed.toFixed(0)}x real time (goal 1000x), ${figures.eventsPerSec.toFixed(0)} events/s, ${figures.deliveriesPerSec.toFixed(0)} deliveries/s, ${figures.virtualS.toFixed(0)} virtual s in ${figures.wallS.toFixed(1)} wall s`,
  )
console.log(`this tree ÷ baseline: ${(now!.speed / before!.speed).toFixed(2)}x the speed`)
