/**
 * `acp bench sync` end to end, small: real node processes (loopback, and network namespaces
 * where root allows), writes through the real write path, every update applied on every node.
 * The figures themselves are measured by the benchmark, not asserted here; only that it ran,
 * lost nothing, and reports what it promises.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { namespacesAvailable } from "./netns.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, encoding: "utf8", timeout: 120_000 })

interface SyncJson {
  readonly mode: string
  readonly updatesPerSec: number
  readonly latencyMsP50: number
  readonly latencyMsP99: number
  readonly lost: number
  readonly acknowledged: number
  readonly datagramsPerUpdate: number
  readonly cpuCoresPerNode: ReadonlyArray<number>
  readonly at200PerSec: { readonly latencyMsP50: number; readonly lost: number }
  readonly peers: Record<string, number>
}

const check = (json: SyncJson, updates: number) => {
  expect(json.lost).toBe(0)
  expect(json.acknowledged).toBe(updates)
  expect(json.updatesPerSec).toBeGreaterThan(0)
  expect(json.latencyMsP50).toBeGreaterThan(0)
  expect(json.latencyMsP99).toBeGreaterThanOrEqual(json.latencyMsP50)
  // Packed: several updates per datagram when the writer runs flat out.
  expect(json.datagramsPerUpdate).toBeLessThan(1)
  expect(json.cpuCoresPerNode).toHaveLength(3)
  expect(json.at200PerSec.lost).toBe(0)
  expect(json.peers).toEqual({})
}

describe("acp bench sync", () => {
  it("on loopback: 3 nodes apply every update, and the JSON has the promised fields", () => {
    const report = join(mkdtempSync(join(tmpdir(), "acp-bench-report-")), "bench.html")
    const run = acp("bench", "sync", "--loopback", "--updates", "3000", "--json", "--report", report)
    expect(run.status, run.stderr).toBe(0)
    const json = JSON.parse(run.stdout) as SyncJson
    expect(json.mode).toBe("loopback")
    check(json, 3000)
    const html = readFileSync(report, "utf8")
    expect(html).toContain("Sync throughput")
    expect(html).toContain(`<td>${json.updatesPerSec}</td>`)
    // The simulator's study lands in the same report.
    const sim = acp("bench", "sim", "--sizes", "10", "--json", "--report", report)
    expect(sim.status, sim.stderr).toBe(0)
    const rows = (JSON.parse(sim.stdout) as { rows: Array<{ nodes: number; convergenceMs: number | null }> })
      .rows
    expect(rows[0]?.nodes).toBe(10)
    expect(rows[0]?.convergenceMs).not.toBeNull()
    const both = readFileSync(report, "utf8")
    expect(both).toContain("Sync throughput")
    expect(both).toContain("Simulator: CDB cost by cluster size")
  })

  const namespaces = namespacesAvailable(`acpbt${process.pid % 10_000}`)
  it.skipIf(namespaces !== true)(
    `in network namespaces (${namespaces === true ? "root, ip netns" : namespaces}): the same over a bridge`,
    () => {
      const run = acp("bench", "sync", "--updates", "3000", "--json")
      expect(run.status, run.stderr).toBe(0)
      const json = JSON.parse(run.stdout) as SyncJson
      expect(json.mode).toBe("netns")
      check(json, 3000)
      expect(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout).not.toContain("acpb")
    },
  )

  it("refuses bad flags with a clear message and exit code 2", () => {
    const peers = acp("bench", "sync", "--loopback", "--peers", "etcd,zookeeper")
    expect(peers.status).toBe(2)
    expect(peers.stderr).toContain("unknown zookeeper")
    const nodes = acp("bench", "sync", "--loopback", "--nodes", "1")
    expect(nodes.status).toBe(2)
    expect(nodes.stderr).toContain("--nodes 1: expected 2..16")
  })
})
