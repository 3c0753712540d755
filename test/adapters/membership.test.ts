/**
 * Membership on a running cluster, through the decision log, on a real local cluster (three
 * processes on loopback, SQLite, UDP multicast): a fourth node joins as a learner without any
 * member restarting, follows the log and the CDB, is promoted to voter, and the primary is
 * removed — after which a majority of the new voters (two of three) decides on its own, where
 * the four of before would have needed three.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { newApiKey } from "../../adapters/agent/keys.ts"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-members-"))
const basePort = 44_000 + (process.pid % 1_000) * 10
const env = { ...process.env, ACP_HOME: home }
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })
/** Each node's API port: n1..n3 as `cluster up` lays them out, n4 the next one `node join` picks. */
const apiPort = (node: string) => basePort + 100 + Number(node.slice(1))

const api = async (node: string, method: string, path: string, body?: unknown, key?: string) => {
  const response = await fetch(`http://127.0.0.1:${apiPort(node)}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key ?? readFileSync(join(home, "admin.key"), "utf8").trim()}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5_000),
  })
  const text = await response.text()
  return { status: response.status, body: JSON.parse(text === "" ? "null" : text) }
}
interface LogView {
  readonly term: number
  readonly commit: number
  readonly applied: number
  readonly voters: ReadonlyArray<string>
  readonly learners: ReadonlyArray<string>
}
const log = async (node: string) =>
  (await api(node, "GET", "/v1/decisions").catch(() => undefined))?.body as LogView | undefined
const primaryOf = async (node: string) =>
  (
    (await api(node, "GET", "/v1/status").catch(() => undefined))?.body as
      | { primary: string | null }
      | undefined
  )?.primary ?? null
const pidOf = (node: string) => Number(readFileSync(join(home, node, "node.pid"), "utf8"))
const project = (name: string) => ({
  name,
  description: "",
  quota: { cpus: 1, memoryMiB: 1, storageBytes: 0 },
})

describe("membership on a running cluster (real nodes on loopback)", () => {
  beforeAll(() => {
    const up = acp("cluster", "up", "--base-port", String(basePort), "--skip-setup")
    expect(up.status, up.stderr).toBe(0)
  }, 120_000)

  afterAll(() => {
    acp("cluster", "down")
    for (const node of ["n1", "n2", "n3", "n4"]) {
      try {
        process.kill(pidOf(node), "SIGKILL")
      } catch {}
    }
    rmSync(home, { recursive: true, force: true })
  })

  it("a fourth node joins as a learner, is promoted, and the primary is removed: the new majority decides", async () => {
    const before = (await log("n1"))!
    expect(before.voters).toEqual(["n1", "n2", "n3"])
    // Enrolled and added as a learner, with no member restarted: their pids stay.
    const pids = ["n1", "n2", "n3"].map(pidOf)
    const joined = acp("node", "join", "--dir", home, "--id", "n4", "--address", "127.0.0.1")
    expect(joined.status, joined.stdout + joined.stderr).toBe(0)
    expect(joined.stdout).toContain("voters: n1, n2, n3; learners: n4")
    for (const node of ["n1", "n2", "n3"]) expect((await log(node))!.learners).toEqual(["n4"])
    expect(["n1", "n2", "n3"].map(pidOf)).toEqual(pids)
    spawnSync(
      "sh",
      [
        "-c",
        `${process.execPath} ${bundle} node run --config ${join(home, "n4", "config.json")} >>${join(home, "n4", "node.log")} 2>&1 &`,
      ],
      { env },
    )
    // It follows the log (everything committed, applied) and the CDB (a write made elsewhere).
    expect((await api("n1", "PUT", "/v1/objects/project/seen-by-n4", project("seen-by-n4"))).status).toBe(200)
    await eventually(async () => {
      const [n4, n1] = [await log("n4"), await log("n1")]
      return n4 !== undefined && n1 !== undefined && n4.applied >= n1.commit && n4.learners.includes("n4")
    }, 20_000)
    await eventually(
      async () =>
        (await api("n4", "GET", "/v1/objects/project/seen-by-n4").catch(() => undefined))?.status === 200,
      10_000,
    )
    // It takes the primary's pings (its term, its authority to run what is placed on it) though it votes in nothing.
    await eventually(async () => {
      const seen = await primaryOf("n4")
      return seen !== null && seen === (await primaryOf("n1"))
    }, 10_000)
    expect((await log("n4"))!.voters).toEqual(["n1", "n2", "n3"])
    const roles = () =>
      Object.fromEntries(
        (JSON.parse(acp("node", "list", "--json").stdout) as Array<{ id: string; role: string }>).map(
          (row) => [row.id, row.role],
        ),
      )
    expect(roles()).toEqual({ n1: "voter", n2: "voter", n3: "voter", n4: "learner" })
    // Refused, saying why: a change that makes no sense, and one by a key that is not admin.
    const nonsense = await api("n1", "POST", "/v1/members", { _tag: "Promote", node: "n9" })
    const onPrimary = nonsense.body.reason === "not-primary" ? nonsense.body.primary : "n1"
    const refused = await api(onPrimary, "POST", "/v1/members", { _tag: "Promote", node: "n9" })
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({
      _tag: "NotDecided",
      reason: "invalid",
      message: "n9 is no member: add it as a learner first",
    })
    const operator = newApiKey("members-ops", "operator")
    expect((await api("n1", "PUT", `/v1/objects/api-key/${operator.id}`, operator.record)).status).toBe(200)
    await eventually(
      async () => (await api("n2", "GET", "/v1/status", undefined, operator.key)).status === 200,
    )
    const forbidden = await api("n2", "POST", "/v1/members", { _tag: "Remove", node: "n1" }, operator.key)
    expect(forbidden.status).toBe(403)
    // Promoted: every node counts four voters.
    const promoted = acp("node", "promote", "n4")
    expect(promoted.status, promoted.stdout + promoted.stderr).toBe(0)
    expect(promoted.stdout).toContain("voters: n1, n2, n3, n4; learners: none")
    await eventually(async () => {
      for (const node of ["n1", "n2", "n3", "n4"]) if ((await log(node))?.voters.length !== 4) return false
      return true
    }, 10_000)
    expect(roles()).toEqual({ n1: "voter", n2: "voter", n3: "voter", n4: "voter" })
    // The primary removed: it steps down once that is committed, and another leads.
    const primary = await eventually(async () => (await primaryOf("n4")) ?? undefined, 10_000)
    const removed = acp("node", "remove", primary)
    expect(removed.status, removed.stdout + removed.stderr).toBe(0)
    const remaining = ["n1", "n2", "n3", "n4"].filter((node) => node !== primary)
    const next = await eventually(async () => {
      const seen = await primaryOf(remaining[0]!)
      return seen !== null && seen !== primary ? seen : undefined
    }, 15_000)
    expect(remaining).toContain(next)
    await eventually(async () => {
      for (const node of remaining) if ((await log(node))?.voters.join() !== remaining.join()) return false
      return true
    }, 10_000)
    // The removed node and one more voter die: two of the three voters left still decide (of the
    // four before, two would be no majority).
    const victim = remaining.find((node) => node !== next)!
    process.kill(pidOf(primary), "SIGKILL")
    process.kill(pidOf(victim), "SIGKILL")
    const survivors = remaining.filter((node) => node !== victim)
    const granted = await eventually(async () => {
      const leader = await primaryOf(survivors[0]!)
      if (leader === null || !survivors.includes(leader)) return undefined
      const answer = await api(leader, "POST", "/v1/decisions", {
        _tag: "Grant",
        pool: "vlan",
        holder: "members-test",
        range: { from: 100, to: 200 },
      }).catch(() => undefined)
      return answer?.status === 200 ? answer.body : undefined
    }, 20_000)
    expect(granted).toMatchObject({ _tag: "Granted", pool: "vlan", value: 100 })
  }, 150_000)
})
