/**
 * The node's Prometheus metrics, as Effect metrics rendered by Effect's own Prometheus exporter
 * (`PrometheusMetrics.format`). The figures are counted by the cores and the driver as plain
 * numbers (a core runs no effects); a scrape brings the Effect metrics up to them: gauges are
 * set, counters advanced by what was counted since the last scrape. Every series carries the
 * node's id as its `node` label.
 */
import { Effect, Metric } from "effect"
import { PrometheusMetrics } from "effect/observability"
import type { RunningNode } from "../node/node.ts"

type Figures = (node: RunningNode) => number

const counters: ReadonlyArray<readonly [string, string, Figures]> = [
  ["datagrams_received_total", "Datagrams handed to the core", (node) => node.counters().datagramsIn],
  ["datagrams_sent_total", "Datagrams sent", (node) => node.counters().datagramsOut],
  [
    "datagrams_rejected_total",
    "Datagrams the CDB decoder rejected",
    (node) => node.counters().rejectedDatagrams,
  ],
  ["changes_applied_total", "CDB changes applied", (node) => node.counters().cdb.changesApplied],
  ["nacks_sent_total", "Repair requests sent", (node) => node.counters().cdb.nacksSent],
  ["snapshots_installed_total", "Snapshots installed", (node) => node.counters().cdb.snapshotsInstalled],
  [
    "writes_acknowledged_total",
    "Local writes made durable and acknowledged",
    (node) => node.counters().writesAcknowledged,
  ],
]

const gauges: ReadonlyArray<readonly [string, string, Figures]> = [
  ["objects", "Objects in this node's CDB", (node) => node.status().entries],
  [
    "is_primary",
    "1 if this node is the primary monitor with a valid lease",
    (node) => (node.status().isPrimary ? 1 : 0),
  ],
  ["term", "The monitor's current term", (node) => node.status().term],
  ["fenced", "1 if this node has fenced itself", (node) => (node.status().fenced ? 1 : 0)],
  [
    "health_score",
    "Cluster health score as this node sees it (0-100)",
    (node) => node.status().health.cluster.score,
  ],
  ["alarms_open", "Open alarms", (node) => node.status().alarms.length],
]

const droppedDescription =
  "Datagrams dropped before the core: unauthenticated, replayed, malformed, oversized"

/** What each counter (by name and labels) stood at when it was last brought up to date. */
const reported = new Map<string, number>()

const advance = (name: string, description: string, attributes: Record<string, string>, total: number) => {
  const key = `${name}${JSON.stringify(attributes)}`
  const delta = total - (reported.get(key) ?? 0)
  reported.set(key, total)
  return delta === 0
    ? Effect.void
    : Metric.update(Metric.counter(name, { description, attributes, incremental: true }), delta)
}

/** The Prometheus text exposition of the node's metrics, up to date as of this call. */
export const metricsText = (node: RunningNode, dropped: Readonly<Record<string, number>>) =>
  Effect.gen(function* () {
    const labels = { node: node.id }
    for (const [name, description, figure] of counters)
      yield* advance(`acp_${name}`, description, labels, figure(node))
    for (const [reason, count] of Object.entries(dropped))
      yield* advance("acp_datagrams_dropped_total", droppedDescription, { ...labels, reason }, count)
    for (const [name, description, figure] of gauges)
      yield* Metric.update(Metric.gauge(`acp_${name}`, { description, attributes: labels }), figure(node))
    return yield* PrometheusMetrics.format()
  })
