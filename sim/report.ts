/**
 * A run as a page a person can open: one row per node (down time in red, one-way isolation and
 * flapping in amber), partitions as shaded bands, the heal as a line, and each node's
 * convergence lag (changes behind the most advanced node) as a curve. Pure: a string from a result.
 */
import type { SimResult } from "./world.ts"

const escapeHtml = (text: string) =>
  text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!)

export const renderReport = (result: SimResult): string => {
  const width = 1000
  const rowHeight = 22
  const left = 60
  const top = 30
  const endMs = Math.max(1, result.virtualMs)
  const x = (ms: number) => left + (Math.min(ms, endMs) / endMs) * (width - left - 10)
  const rowsHeight = result.nodes * rowHeight
  // Primaries: a green bar on the node's row for each lease held, labelled with its term.
  const primaryBars = result.primaries.map((interval) => {
    const node = Number(interval.node.slice(1)) - 1
    const x0 = x(interval.fromMs)
    const x1 = Math.max(x0 + 1, x(interval.toMs))
    return `<rect x="${x0}" y="${top + node * rowHeight + 8}" width="${x1 - x0}" height="5" fill="#2a2"><title>${interval.node} primary in term ${interval.term}, ${interval.fromMs}-${interval.toMs} ms</title></rect><text x="${x0 + 2}" y="${top + node * rowHeight + 7}" font-size="9" fill="#2a2">t${interval.term}</text>`
  })
  const lagTop = top + rowsHeight + 40
  const lagHeight = 160
  const maxLag = Math.max(1, ...result.timeline.flatMap((sample) => sample.lag))
  const parts: Array<string> = []
  for (const fault of result.faultWindows) {
    const x0 = x(fault.atMs)
    const x1 = x(Math.min(fault.atMs + fault.durationMs, result.healAtMs))
    if (fault.kind === "partition") {
      parts.push(
        `<rect x="${x0}" y="${top}" width="${Math.max(1, x1 - x0)}" height="${rowsHeight}" fill="#6b8cff" opacity="0.15"><title>partition ${fault.side.map((n) => `n${n + 1}`).join(",")} | rest, ${fault.atMs}-${fault.atMs + fault.durationMs} ms</title></rect>`,
      )
      for (const node of fault.side)
        parts.push(
          `<rect x="${x0}" y="${top + node * rowHeight + 16}" width="${Math.max(1, x1 - x0)}" height="3" fill="#3355cc"/>`,
        )
    } else if (fault.kind === "drift-beyond-bound") {
      parts.push(
        `<rect x="${x0}" y="${top}" width="${Math.max(1, x1 - x0)}" height="${rowsHeight}" fill="#cf3c8a" opacity="0.12"><title>drift beyond the bound (the primary 30% slow and cut off, the others 30% fast), ${fault.atMs}-${fault.atMs + fault.durationMs} ms</title></rect>`,
      )
    } else if (fault.kind === "replay") {
      parts.push(
        `<rect x="${x0}" y="${top}" width="${Math.max(1, x1 - x0)}" height="${rowsHeight}" fill="#9a3ccf" opacity="0.12"><title>replay (an adversary plays back captured datagrams to every node), ${fault.atMs}-${fault.atMs + fault.durationMs} ms</title></rect>`,
      )
    } else {
      const colour =
        fault.kind === "crash" || fault.kind === "fsync-lie" || fault.kind === "disk-full"
          ? "#d33"
          : "#e9a100"
      parts.push(
        `<rect x="${x0}" y="${top + fault.node * rowHeight + 4}" width="${Math.max(1, x1 - x0)}" height="12" fill="${colour}"><title>${fault.kind} n${fault.node + 1}, ${fault.atMs}-${fault.atMs + fault.durationMs} ms</title></rect>`,
      )
    }
  }
  const colours = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
  ]
  const rows = Array.from({ length: result.nodes }, (_, node) => {
    const y = top + node * rowHeight
    return `<rect x="4" y="${y + 5}" width="8" height="8" fill="${colours[node % colours.length]}"/><text x="16" y="${y + 14}" font-size="12">n${node + 1}</text><line x1="${left}" y1="${y + 10}" x2="${width - 10}" y2="${y + 10}" stroke="#ccc"/>`
  })
  const curves = Array.from({ length: result.nodes }, (_, node) => {
    const points = result.timeline
      .filter((sample) => (sample.lag[node] ?? -1) >= 0)
      .map(
        (sample) =>
          `${x(sample.atMs).toFixed(1)},${(lagTop + lagHeight - ((sample.lag[node] ?? 0) / maxLag) * lagHeight).toFixed(1)}`,
      )
    return `<polyline fill="none" stroke="${colours[node % colours.length]}" stroke-width="1.2" points="${points.join(" ")}"/>`
  })
  const heal = `<line x1="${x(result.healAtMs)}" y1="${top - 10}" x2="${x(result.healAtMs)}" y2="${lagTop + lagHeight}" stroke="#090" stroke-dasharray="4 3"/><text x="${x(result.healAtMs) - 4}" y="${top - 14}" font-size="11" fill="#090" text-anchor="end">heal at ${result.healAtMs} ms</text>`
  const height = lagTop + lagHeight + 40
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<text x="${left}" y="18" font-size="13">nodes (green: primary, with its term; red: down; amber: one-way isolated or flapping; blue band: partition side)</text>
${rows.join("\n")}
${parts.join("\n")}
${primaryBars.join("\n")}
${heal}
<text x="${left}" y="${lagTop - 8}" font-size="13">convergence lag: changes behind the most advanced node (max ${maxLag})</text>
<rect x="${left}" y="${lagTop}" width="${width - left - 10}" height="${lagHeight}" fill="none" stroke="#999"/>
${curves.join("\n")}
<text x="${left}" y="${height - 10}" font-size="11">0 ms</text><text x="${width - 80}" y="${height - 10}" font-size="11">${endMs} ms</text>
</svg>`
  const summary = {
    seed: result.seed,
    nodes: result.nodes,
    domains: result.domains,
    traceHash: result.traceHash,
    converged: result.converged,
    convergenceMs: result.convergenceMs,
    changesWritten: result.changesWritten,
    acknowledgedWrites: result.acknowledgedWrites,
    datagramsDelivered: result.datagramsDelivered,
    datagramsDropped: result.datagramsDropped,
    snapshotsInstalled: result.snapshotsInstalled,
    primaryChanges: result.primaryChanges,
    failoverMs:
      result.failoverMs.samples === 0
        ? "not measured"
        : `p50 ${result.failoverMs.p50}, p99 ${result.failoverMs.p99}, max ${result.failoverMs.max} (${result.failoverMs.samples})`,
    alarmsRaised: result.alarmsRaised,
    fences: result.fences,
  }
  const health =
    result.health === null
      ? ""
      : `<h2>Health: ${result.health.cluster.score}/100</h2><ul>${
          result.health.cluster.reasons.length === 0
            ? "<li>nothing takes points off</li>"
            : result.health.cluster.reasons
                .map((reason) => `<li>-${reason.points}: ${escapeHtml(reason.reason)}</li>`)
                .join("")
        }</ul><p>${Object.entries(result.health.nodes)
          .map(
            ([node, score]) =>
              `${node}: ${score.score}${score.reasons.length > 0 ? ` (${escapeHtml(score.reasons.map((reason) => reason.reason).join("; "))})` : ""}`,
          )
          .join(" · ")}</p>`
  const violations = result.violations
    .map((v) => `<li><b>${escapeHtml(v.checker)}</b> at ${v.atMs} ms: ${escapeHtml(v.message)}</li>`)
    .join("")
  return `<!doctype html><html><head><meta charset="utf-8"><title>ACP simulation, seed ${result.seed}</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}code,pre{background:#f4f4f4;padding:2px 4px}table{border-collapse:collapse}td{padding:2px 10px;border-bottom:1px solid #eee}</style></head><body>
<h1>ACP simulation, seed ${result.seed}: ${result.violations.length === 0 ? "no violations" : `${result.violations.length} violation(s)`}</h1>
<p>Replay: <code>${escapeHtml(result.replay)}</code></p>
<table>${Object.entries(summary)
    .map(([key, value]) => `<tr><td>${key}</td><td>${escapeHtml(String(value))}</td></tr>`)
    .join("")}</table>
${violations === "" ? "" : `<h2>Violations</h2><ul>${violations}</ul>`}
${result.pending.length === 0 ? "" : `<h2>Pending</h2><pre>${escapeHtml(result.pending.join("\n"))}</pre>`}
${health}
<h2>Timeline</h2>${svg}
<h2>Scenario</h2><pre>${escapeHtml(JSON.stringify(result.scenario, null, 2))}</pre>
</body></html>`
}
