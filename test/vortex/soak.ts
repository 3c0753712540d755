/**
 * Many harness runs, a few at a time: `node test/vortex/soak.ts [--runs 20] [--duration 300]
 * [--parallel 2] [--seed 1000]`. Each run is `acp vortex --json` with every fault kind on its own
 * ports; the table gives, per seed, the writes, the faults injected, failovers, new primaries,
 * convergence and violations, and the totals at the end. Exits 1 if any run had a violation (its
 * directory is kept).
 */
import { spawn } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const flag = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? fallback : Number(process.argv[index + 1])
}
const runs = flag("runs", 20)
const duration = flag("duration", 300)
const parallel = flag("parallel", 2)
const firstSeed = flag("seed", 1000)

interface Figures {
  readonly writes: { readonly ok: number; readonly refused: number; readonly unknown: number }
  readonly faults: Readonly<Record<string, number>>
  readonly failovers: ReadonlyArray<{ readonly ms: number }>
  readonly elections: ReadonlyArray<{ readonly ms: number }>
  readonly convergenceMs: number | null
}
interface Row {
  readonly seed: number
  readonly wallS: number
  readonly figures?: Figures
  readonly violations: ReadonlyArray<{ readonly check: string; readonly message: string }>
  readonly error?: string
}

const one = (seed: number, slot: number) =>
  new Promise<Row>((resolve) => {
    const started = performance.now()
    const child = spawn(
      process.execPath,
      [
        join(root, "dist/acp.mjs"),
        "vortex",
        "--seed",
        String(seed),
        "--duration",
        String(duration),
        "--base-port",
        String(32_000 + slot * 1_000),
        "--dir",
        `/tmp/acp-soak-${seed}`,
        // Kept: each history can be judged again (`acp vortex --check <dir>`).
        "--keep",
        "--json",
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    )
    let out = ""
    child.stdout.on("data", (chunk) => {
      out += chunk
    })
    child.on("close", () => {
      const wallS = Math.round((performance.now() - started) / 1000)
      const line = out.trim().split("\n").at(-1) ?? ""
      try {
        const result = JSON.parse(line) as { figures: Figures; violations: Row["violations"] }
        resolve({ seed, wallS, figures: result.figures, violations: result.violations })
      } catch {
        resolve({ seed, wallS, violations: [], error: out.slice(-500) || "no output" })
      }
    })
  })

const p50 = (values: ReadonlyArray<number>) =>
  values.length === 0
    ? "-"
    : `${([...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]! / 1000).toFixed(1)}`
const max = (values: ReadonlyArray<number>) =>
  values.length === 0 ? "-" : `${(Math.max(...values) / 1000).toFixed(1)}`

const rows: Array<Row> = []
let next = 0
const worker = async (slot: number) => {
  while (next < runs) {
    const seed = firstSeed + next++
    const row = await one(seed, slot)
    rows.push(row)
    const figures = row.figures
    process.stdout.write(
      figures === undefined
        ? `seed ${seed}: failed to run: ${row.error}\n`
        : `seed ${seed}: ${row.wallS} s, writes ${figures.writes.ok}/${figures.writes.refused}/${figures.writes.unknown}, faults ${Object.values(figures.faults).reduce((a, b) => a + b, 0)}, failovers ${figures.failovers.length} (p50 ${p50(figures.failovers.map((f) => f.ms))} s, max ${max(figures.failovers.map((f) => f.ms))} s), primaries ${figures.elections.length} (max ${max(figures.elections.map((e) => e.ms))} s), converged ${figures.convergenceMs === null ? "never" : `${(figures.convergenceMs / 1000).toFixed(1)} s`}, violations ${row.violations.length}${row.violations.map((v) => `\n    ${v.check}: ${v.message}`).join("")}\n`,
    )
  }
}
await Promise.all(Array.from({ length: parallel }, (_, slot) => worker(slot)))

const ran = rows.filter((row) => row.figures !== undefined)
const faults: Record<string, number> = {}
for (const row of ran)
  for (const [kind, count] of Object.entries(row.figures!.faults)) faults[kind] = (faults[kind] ?? 0) + count
const failovers = ran.flatMap((row) => row.figures!.failovers.map((f) => f.ms))
const elections = ran.flatMap((row) => row.figures!.elections.map((e) => e.ms))
const convergence = ran.map((row) => row.figures!.convergenceMs).filter((ms) => ms !== null)
const violations = rows.reduce((sum, row) => sum + row.violations.length, 0)
process.stdout.write(
  [
    "",
    `${rows.length} runs of ${duration} s (seeds ${firstSeed}..${firstSeed + runs - 1}), ${rows.length - ran.length} failed to run`,
    `writes acknowledged ${ran.reduce((sum, row) => sum + row.figures!.writes.ok, 0)}, refused ${ran.reduce((sum, row) => sum + row.figures!.writes.refused, 0)}, unknown ${ran.reduce((sum, row) => sum + row.figures!.writes.unknown, 0)}`,
    `faults: ${Object.entries(faults)
      .sort()
      .map(([kind, count]) => `${kind} ${count}`)
      .join(", ")}`,
    `HA failovers ${failovers.length}: p50 ${p50(failovers)} s, max ${max(failovers)} s; new primaries ${elections.length}: p50 ${p50(elections)} s, max ${max(elections)} s; convergence after the heal p50 ${p50(convergence)} s, max ${max(convergence)} s`,
    `violations: ${violations}`,
    "",
  ].join("\n"),
)
process.exitCode = violations > 0 || ran.length < rows.length ? 1 : 0
