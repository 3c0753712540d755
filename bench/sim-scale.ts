/**
 * How the CDB's cost grows with cluster size, in the simulator: 10, 100 and 1000 nodes. Each run
 * writes 200 changes/s cluster-wide for 6 virtual seconds while a tenth of the nodes is cut off
 * from 1 s until the heal at 6 s; it reports the convergence time after the heal and the datagrams delivered
 * per change written. Digest timing scales with size (every node digests to every node: O(N²)).
 * Writes a table to stdout and a plot to reports/sim-scale.html.
 *
 *   npm run bench:sim-scale [-- --sizes 10,100,1000]
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { digestMsFor, simStudyRow } from "./sim-study.ts"

const { values } = parseArgs({ options: { sizes: { type: "string", default: "10,100,1000" } } })
const sizes = values.sizes.split(",").map(Number)

const rows: Array<ReturnType<typeof simStudyRow>> = []
for (const nodes of sizes) {
  process.stderr.write(`${nodes} nodes (digest every ${digestMsFor(nodes)} ms)... `)
  const row = simStudyRow(nodes)
  rows.push(row)
  process.stderr.write(`converged ${row.convergenceMs} ms after the heal, ${row.wallMs} ms wall\n`)
}

console.log("nodes  digest ms  converge ms  deliveries/change  deliveries  changes  wall ms")
for (const row of rows) {
  console.log(
    `${String(row.nodes).padEnd(6)} ${String(row.digestMs).padStart(9)} ${String(row.convergenceMs).padStart(12)} ${row.deliveriesPerChange.toFixed(1).padStart(18)} ${String(row.deliveries).padStart(11)} ${String(row.changes).padStart(8)} ${String(row.wallMs).padStart(8)}`,
  )
}

const width = 640
const height = 300
const pad = 50
const logX = (n: number) =>
  pad + ((Math.log10(n) - 1) / Math.max(1, Math.log10(Math.max(...sizes)) - 1)) * (width - 2 * pad)
const maxPer = Math.max(...rows.map((row) => row.deliveriesPerChange))
const maxConv = Math.max(1, ...rows.map((row) => row.convergenceMs ?? 0))
const line = (pick: (row: (typeof rows)[number]) => number, max: number) =>
  rows
    .map(
      (row) =>
        `${logX(row.nodes).toFixed(1)},${(height - pad - (pick(row) / max) * (height - 2 * pad)).toFixed(1)}`,
    )
    .join(" ")
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect x="${pad}" y="${pad}" width="${width - 2 * pad}" height="${height - 2 * pad}" fill="none" stroke="#999"/>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${line((row) => row.deliveriesPerChange, maxPer)}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="${line((row) => row.convergenceMs ?? 0, maxConv)}"/>
${rows.map((row) => `<text x="${logX(row.nodes) - 10}" y="${height - pad + 16}">${row.nodes}</text>`).join("")}
<text x="${pad}" y="${pad - 20}" fill="#1f77b4">datagram deliveries per change (max ${maxPer.toFixed(0)})</text>
<text x="${pad + 300}" y="${pad - 20}" fill="#d62728">convergence after heal, ms (max ${maxConv})</text>
<text x="${width / 2 - 40}" y="${height - 10}">nodes (log scale)</text></svg>`
mkdirSync("reports", { recursive: true })
writeFileSync(
  "reports/sim-scale.html",
  `<!doctype html><meta charset="utf-8"><title>ACP CDB: cost by cluster size (simulated)</title><h1>CDB cost by cluster size (simulated)</h1>${svg}<pre>${JSON.stringify(rows, null, 2)}</pre>`,
)
console.log("plot: reports/sim-scale.html")
