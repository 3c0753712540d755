/**
 * The benchmark report: one HTML page (inline SVG, no scripts) with whatever sections have been
 * measured — the sync run and its peers, the latency-under-load curve, the scaling table, and the
 * simulator's scale study. Each command stores its section in `<report>.json` beside the page
 * and re-renders the page from all sections, so `acp bench sync` and `acp bench sim` fill one report.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import type { PeerFigure } from "./peers.ts"
import type { RunFigures } from "./sync.ts"

export interface SyncSection {
  readonly at: string
  readonly setup: string
  readonly main: RunFigures
  readonly idle: RunFigures
  readonly curve: ReadonlyArray<RunFigures>
  readonly scaling: ReadonlyArray<{ readonly nodes: number; readonly figures: RunFigures }>
  readonly peers: ReadonlyArray<PeerFigure>
}

export interface SimRow {
  readonly nodes: number
  readonly digestMs: number
  readonly convergenceMs: number | null
  readonly deliveriesPerChange: number
  readonly wallMs: number
}

export interface SimSection {
  readonly at: string
  readonly rows: ReadonlyArray<SimRow>
}

export interface ReportData {
  sync?: SyncSection
  sim?: SimSection
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"]/g, (char) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[char]!)

const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string | number | null>>) =>
  `<table><tr>${head.map((cell) => `<th>${escapeHtml(cell)}</th>`).join("")}</tr>${rows
    .map((row) => `<tr>${row.map((cell) => `<td>${escapeHtml(String(cell ?? "—"))}</td>`).join("")}</tr>`)
    .join("")}</table>`

/** Offered vs delivered rate (left axis) and p99 latency (right axis), one point per run. */
const curveSvg = (curve: ReadonlyArray<RunFigures>): string => {
  const points = curve.filter((run) => run.offeredPerSec !== null)
  if (points.length === 0) return ""
  const [width, height, pad] = [640, 320, 56]
  const maxRate = Math.max(...points.map((run) => Math.max(run.offeredPerSec!, run.updatesPerSec)))
  const maxP99 = Math.max(0.001, ...points.map((run) => run.latencyMsP99))
  const x = (rate: number) => pad + (rate / maxRate) * (width - 2 * pad)
  const y = (value: number, max: number) => height - pad - (value / max) * (height - 2 * pad)
  const polyline = (pick: (run: RunFigures) => number, max: number, colour: string) =>
    `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points
      .map((run) => `${x(run.offeredPerSec!).toFixed(1)},${y(pick(run), max).toFixed(1)}`)
      .join(" ")}"/>${points
      .map(
        (run) =>
          `<circle cx="${x(run.offeredPerSec!).toFixed(1)}" cy="${y(pick(run), max).toFixed(1)}" r="3" fill="${colour}"/>`,
      )
      .join("")}`
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="latency under load">
<rect width="${width}" height="${height}" fill="#fff"/>
<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#333"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${height - pad}" stroke="#333"/>
<line x1="${width - pad}" y1="${pad}" x2="${width - pad}" y2="${height - pad}" stroke="#333"/>
<line x1="${x(0)}" y1="${y(0, maxRate)}" x2="${x(maxRate)}" y2="${y(maxRate, maxRate)}" stroke="#bbb" stroke-dasharray="4 4"/>
${polyline((run) => run.updatesPerSec, maxRate, "#1f6feb")}
${polyline((run) => run.latencyMsP99, maxP99, "#d33")}
<text x="${width / 2}" y="${height - 12}" text-anchor="middle" font-size="12">offered updates/s (max ${Math.round(maxRate)})</text>
<text x="14" y="${height / 2}" font-size="12" fill="#1f6feb" transform="rotate(-90 14 ${height / 2})" text-anchor="middle">delivered updates/s</text>
<text x="${width - 14}" y="${height / 2}" font-size="12" fill="#d33" transform="rotate(90 ${width - 14} ${height / 2})" text-anchor="middle">p99 ms (max ${maxP99.toFixed(2)})</text>
</svg>`
}

const syncHtml = (sync: SyncSection): string => {
  const main = sync.main
  const peers = sync.peers.map((peer) => [
    peer.name,
    peer.updatesPerSec,
    peer.updatesPerSec === null ? null : (main.updatesPerSec / peer.updatesPerSec).toFixed(2),
    peer.detail,
  ])
  return `<h2>Sync throughput (${escapeHtml(sync.at)})</h2>
<p>${escapeHtml(sync.setup)}</p>
${table(
  [
    "run",
    "updates",
    "updates/s",
    "MB/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "lost",
    "CPU cores per node",
    "datagrams/update",
    "NACKs / repairs / snapshots",
  ],
  [
    ["as fast as possible", main, ""],
    ["200 updates/s", sync.idle, ""],
  ].map(([name, run]) => {
    const figures = run as RunFigures
    return [
      name as string,
      figures.updates,
      figures.updatesPerSec,
      figures.mbPerSec,
      figures.latencyMsP50,
      figures.latencyMsP99,
      figures.latencyMsMax,
      figures.lost,
      figures.cpuCoresPerNode.join(" / "),
      figures.datagramsPerUpdate,
      `${figures.repairs.nacks} / ${figures.repairs.repairs} / ${figures.repairs.snapshots}`,
    ]
  }),
)}
${peers.length === 0 ? "" : `<h3>Peers, same machine, same run</h3>${table(["peer", "updates/s to all 3", "ACP ÷ peer", "how"], peers)}`}
${
  sync.curve.length === 0
    ? ""
    : `<h3>Latency under load</h3>${curveSvg(sync.curve)}${table(
        ["offered/s", "delivered/s", "p50 ms", "p99 ms", "lost"],
        sync.curve.map((run) => [
          run.offeredPerSec,
          run.updatesPerSec,
          run.latencyMsP50,
          run.latencyMsP99,
          run.lost,
        ]),
      )}`
}
${
  sync.scaling.length === 0
    ? ""
    : `<h3>Scaling</h3>${table(
        ["nodes", "updates/s on all", "p50 ms", "p99 ms", "lost", "CPU cores per node"],
        sync.scaling.map(({ nodes, figures }) => [
          nodes,
          figures.updatesPerSec,
          figures.latencyMsP50,
          figures.latencyMsP99,
          figures.lost,
          figures.cpuCoresPerNode.join(" / "),
        ]),
      )}`
}`
}

const simHtml = (sim: SimSection): string =>
  `<h2>Simulator: CDB cost by cluster size (${escapeHtml(sim.at)})</h2>
<p>200 changes/s cluster-wide for 6 virtual s; a tenth of the nodes cut off from 1 s to the heal at 6 s.</p>
${table(
  ["nodes", "digest every ms", "converged ms after heal", "deliveries per change", "wall ms"],
  sim.rows.map((row) => [
    row.nodes,
    row.digestMs,
    row.convergenceMs,
    row.deliveriesPerChange.toFixed(1),
    row.wallMs,
  ]),
)}`

export const renderReport = (data: ReportData): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ACP benchmarks</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}</style>
</head><body><h1>ACP benchmarks</h1>
${data.sync === undefined ? "<p>No sync run yet: <code>npx acp bench sync --report …</code></p>" : syncHtml(data.sync)}
${data.sim === undefined ? "<p>No simulator study yet: <code>npx acp bench sim --report …</code></p>" : simHtml(data.sim)}
</body></html>
`

/** Stores one section beside the page and re-renders the page from every section. */
export const updateReport = (path: string, section: Partial<ReportData>): void => {
  const dataPath = `${path}.json`
  const previous: ReportData = existsSync(dataPath)
    ? (JSON.parse(readFileSync(dataPath, "utf8")) as ReportData)
    : {}
  const data = { ...previous, ...section }
  writeFileSync(dataPath, JSON.stringify(data, null, 2))
  writeFileSync(path, renderReport(data))
}
