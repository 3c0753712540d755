/**
 * The hypervisor on the README's local cluster: three real node processes, each driving
 * libvirt's test driver through the FFI adapter. `acp system create` places and starts a
 * system, `acp system list` shows it running with its statistics, operations are tasks, and
 * killing the node that runs an HA system restarts it on another node.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-hypervisor-"))
const basePort = 41_000 + (process.pid % 1_000) * 10
const env = { ...process.env, ACP_HOME: home }

const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })

interface Listed {
  readonly id: string
  readonly spec: { readonly node?: string; readonly desired: string; readonly epoch?: number }
  readonly meta: ReadonlyArray<{ readonly node: string; readonly value: { readonly state?: string } }>
  readonly stats: ReadonlyArray<{
    readonly node: string
    readonly value: { readonly cpuUsage?: number; readonly memoryUsedBytes?: number }
  }>
}

/** The system as a node sees it: where it is placed and the state that node reports. */
const systemOn = (node: string, id: string) => {
  const listed = acp("system", "list", "--json", "--node", node)
  if (listed.status !== 0) return undefined
  const system = (JSON.parse(listed.stdout) as ReadonlyArray<Listed>).find((entry) => entry.id === id)
  if (system === undefined) return undefined
  const state = system.meta.find((slot) => slot.node === system.spec.node)?.value.state
  const stats = system.stats.find((slot) => slot.node === system.spec.node)?.value
  return { node: system.spec.node, state, stats, epoch: system.spec.epoch ?? 0 }
}

describe("hypervisor on the local cluster (3 nodes, libvirt test driver)", () => {
  beforeAll(() => {
    const up = acp("cluster", "up", "--nodes", "3", "--base-port", String(basePort))
    expect(up.status, up.stderr + up.stdout).toBe(0)
  }, 90_000)

  afterAll(() => {
    acp("cluster", "down", "--purge")
    rmSync(home, { recursive: true, force: true })
  })

  it("the scheduler's dry run explains its choice and writes nothing", () => {
    const dry = acp("system", "create", "big-1", "--memory", String(16 * 1024 * 1024), "--dry-run")
    expect(dry.status, dry.stderr).toBe(1)
    expect(dry.stderr).toContain("cannot place big-1: no node is eligible")
    expect(dry.stdout).toMatch(/n1\s+no\s+memory: 0 \+ 16777216 MiB > \d+ MiB/)
    expect(acp("system", "show", "big-1").status).not.toBe(0)
  })

  it("creates and starts a system, lists it running with statistics, and operates it through tasks", async () => {
    const created = acp("system", "create", "web-1", "--memory", "256", "--ha")
    expect(created.status, created.stderr + created.stdout).toBe(0)
    expect(created.stdout).toMatch(/created web-1 on n\d/)
    expect(created.stdout).toContain("start acp-web-1")
    expect(created.stdout).toContain("succeeded")
    const running = await eventually(() => {
      const system = systemOn("n1", "web-1")
      return system?.state === "running" && system.stats?.memoryUsedBytes !== undefined ? system : undefined
    }, 15_000)
    expect(running.stats?.memoryUsedBytes).toBe(256 * 1024 * 1024)
    expect(typeof running.stats?.cpuUsage).toBe("number")
    const table = acp("system", "list")
    expect(table.stdout).toMatch(/web-1\s+n\d\s+running\s+running\s+yes\s+1\s+256 MiB/)

    for (const [operation, state] of [
      ["suspend", "paused"],
      ["resume", "running"],
      ["stop", "stopped"],
      ["start", "running"],
      ["reboot", "running"],
    ] as const) {
      const result = acp("system", operation, "web-1", "--node", "n2")
      expect(result.status, `${operation}: ${result.stderr}`).toBe(0)
      expect(result.stdout).toContain("succeeded")
      await eventually(() => (systemOn("n3", "web-1")?.state === state ? true : undefined), 10_000)
    }
    const tasks = acp("task", "list", "--json")
    const operations = (
      JSON.parse(tasks.stdout) as ReadonlyArray<{ spec: { operation: string; state: string } }>
    )
      .filter((task) => task.spec.state === "succeeded")
      .map((task) => task.spec.operation)
    expect(operations).toEqual(
      expect.arrayContaining([
        "hypervisor.create",
        "hypervisor.suspend",
        "hypervisor.resume",
        "hypervisor.reboot",
      ]),
    )
  }, 90_000)

  it("refuses what cannot be done, with a clear error, and changes nothing", () => {
    const unknown = acp("system", "start", "no-such-system")
    expect(unknown.status).not.toBe(0)
    expect(unknown.stderr).toContain('no system "no-such-system"')
    const startedMs = Date.now()
    const nowhere = acp("system", "create", "web-3", "--on", "n9")
    const refusedMs = Date.now() - startedMs
    expect(nowhere.status).toBe(1)
    expect(nowhere.stderr).toContain('no node "n9" in this cluster; nodes: n1, n2, n3')
    // Refused by the API at once, not after a task's timeout: as fast as any other call.
    expect(refusedMs).toBeLessThan(5_000)
    expect(acp("system", "show", "web-3").stderr).toContain('no system "web-3"')
    const tasks = JSON.parse(acp("task", "list", "--json").stdout) as ReadonlyArray<{
      spec: { target: { id: string } }
    }>
    expect(tasks.filter((task) => task.spec.target.id === "web-3")).toEqual([])
    const where = systemOn("n1", "web-1")?.node ?? ""
    const same = acp("system", "migrate", "web-1", "--to", where)
    expect(same.status).not.toBe(0)
    expect(same.stderr).toContain(`already on ${where}`)
    // A disk names a volume the cluster knows (`storage-cluster.test.ts` attaches real ones).
    const unknownVolume = acp("system", "attach", "web-1", "--volume", "data-1")
    expect(unknownVolume.status).not.toBe(0)
    expect(unknownVolume.stderr).toContain("system web-1: there is no storage-volume data-1")
    const console = acp("system", "console", "web-1")
    expect(console.status).not.toBe(0)
    expect(console.stderr).toContain("no serial console")
    expect(systemOn("n1", "web-1")?.node).toBe(where)
  })

  it("kill -9 the node that runs an HA system: the system runs on another node", async () => {
    const before = systemOn("n1", "web-1")
    expect(before?.state).toBe("running")
    const victim = before!.node!
    const witness = ["n1", "n2", "n3"].find((node) => node !== victim)!
    const pid = Number(readFileSync(join(home, victim, "node.pid"), "utf8"))
    const killedAt = Date.now()
    process.kill(pid, "SIGKILL")
    const after = await eventually(() => {
      const system = systemOn(witness, "web-1")
      return system !== undefined && system.node !== victim && system.state === "running" ? system : undefined
    }, 30_000)
    const seconds = (Date.now() - killedAt) / 1000
    console.log(
      `HA failover on the local cluster: ${seconds.toFixed(1)} s from kill -9 of ${victim} to running on ${after.node}`,
    )
    expect(after.epoch).toBeGreaterThan(before!.epoch)
    // Decided by the decision log: the witness's log places it there, under the epoch the spec mirrors.
    const placed = await eventually(() => {
      const log = JSON.parse(acp("monitor", "log", "--json", "--node", witness).stdout) as {
        decided: { placements: Record<string, { node: string; epoch: number }> }
      }
      const placement = log.decided.placements["web-1"]
      return placement?.epoch === after.epoch ? placement : undefined
    }, 5_000)
    expect(placed).toEqual({ node: after.node, epoch: after.epoch })
    expect(acp("monitor", "log", "--node", witness).stdout).toMatch(
      new RegExp(`web-1\\s+${after.node}\\s+${after.epoch}`),
    )
    // The dead node takes nothing new, and the refusal names it at once.
    const onDead = acp("system", "create", "web-4", "--on", victim, "--node", witness)
    expect(onDead.status).toBe(1)
    expect(onDead.stderr).toContain(`${victim}: not alive`)
  }, 60_000)
})
