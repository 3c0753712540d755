/**
 * The transport without multicast: `acp cluster up --unicast` gives each node a unicast peer
 * list, and a domain send goes to each peer in turn. Real processes on loopback.
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
const home = mkdtempSync(join(tmpdir(), "acp-unicast-"))
const basePort = 42_000 + (process.pid % 2_000) * 10
const env = { ...process.env, ACP_HOME: home }
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })

describe("local cluster without multicast (unicast peer list)", () => {
  beforeAll(() => {
    const up = acp("cluster", "up", "--nodes", "3", "--unicast", "--base-port", String(basePort))
    expect(up.status, up.stderr + up.stdout).toBe(0)
  }, 90_000)

  afterAll(() => {
    acp("cluster", "down", "--purge")
    rmSync(home, { recursive: true, force: true })
  })

  it("configures no multicast group, elects a primary, and syncs a write to every node", async () => {
    const config = JSON.parse(readFileSync(join(home, "n1", "config.json"), "utf8")) as {
      group: string | null
    }
    expect(config.group).toBeNull()
    const spec = '{"name":"uni","description":"","quota":{"cpus":1,"memoryMiB":1,"storageBytes":0}}'
    expect(acp("object", "put", "project", "uni", "--node", "n2", "--spec", spec).status).toBe(0)
    for (const node of ["n1", "n3"]) {
      const got = await eventually(() => {
        const read = acp("object", "get", "project", "uni", "--node", node)
        return read.status === 0 ? read : undefined
      }, 10_000)
      expect(JSON.parse(got.stdout).spec.name).toBe("uni")
    }
    const status = JSON.parse(acp("cluster", "status", "--json").stdout) as Array<{
      up: boolean
      status: { primary: string | null }
    }>
    expect(status.every((node) => node.up && node.status.primary !== null)).toBe(true)
  }, 60_000)

  it("after down, up restarts the same cluster with its data; --fresh starts over, saying what it removes", () => {
    const clusterId = () => JSON.parse(readFileSync(join(home, "cluster.json"), "utf8")).cluster as number
    const ca = () => readFileSync(join(home, "pki", "ca.crt"), "utf8")
    const before = { cluster: clusterId(), ca: ca() }
    expect(acp("cluster", "down").status).toBe(0)
    const again = acp("cluster", "up", "--skip-setup")
    expect(again.status, again.stderr).toBe(0)
    expect(again.stdout).toContain(`restarting 3 node(s) of cluster ${before.cluster}`)
    expect({ cluster: clusterId(), ca: ca() }).toEqual(before)
    expect(acp("object", "get", "project", "uni").status).toBe(0)
    // Settings a restart cannot honour are refused, not ignored.
    expect(acp("cluster", "down").status).toBe(0)
    const wider = acp("cluster", "up", "--nodes", "5", "--skip-setup")
    expect(wider.status).toBe(1)
    expect(wider.stderr).toContain("--nodes 5 (it has 3)")
    const fresh = acp(
      "cluster",
      "up",
      "--fresh",
      "--unicast",
      "--base-port",
      String(basePort),
      "--skip-setup",
    )
    expect(fresh.status, fresh.stderr).toBe(0)
    expect(fresh.stdout).toContain(`removed cluster ${before.cluster}`)
    expect(fresh.stdout).toContain("pki, n1, n2, n3, admin.key, cluster.json")
    expect(clusterId()).not.toBe(before.cluster)
    expect(acp("object", "get", "project", "uni").stderr).toContain('no project "uni"')
  }, 90_000)
})
