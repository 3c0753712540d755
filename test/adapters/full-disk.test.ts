/**
 * Storage faults under one node of a real local cluster. A full disk (its data directory on a
 * small tmpfs, filled up): writes to it are refused with 507 and the reason, nothing refused is
 * visible anywhere, its health says why, and once space returns it writes again — and its stream
 * stays continuous for the others, across a restart too. A value corrupted on disk: not served,
 * and fetched again from the peers. Needs root (mount); skips, saying so, without.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-full-"))
const basePort = 43_000 + (process.pid % 1_000) * 10
const env = { ...process.env, ACP_HOME: home }
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })
const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: 30_000 })
const canMount = process.getuid?.() === 0 ? true : "not root (mount)"
const tmpfs = join(home, "n2")

const api = async (node: number, method: string, path: string, body?: unknown) => {
  const response = await fetch(`http://127.0.0.1:${basePort + 100 + node}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${readFileSync(join(home, "admin.key"), "utf8").trim()}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5_000),
  })
  const text = await response.text()
  return { status: response.status, body: JSON.parse(text === "" ? "null" : text) }
}
const project = (name: string) => ({
  name,
  description: "",
  quota: { cpus: 1, memoryMiB: 1, storageBytes: 0 },
})
const visible = async (node: number, id: string) =>
  (await api(node, "GET", `/v1/objects/project/${id}`)).status === 200

describe.skipIf(canMount !== true)(
  `a full disk under one node (${canMount === true ? "tmpfs" : canMount})`,
  () => {
    beforeAll(() => {
      expect(acp("cluster", "up", "--base-port", String(basePort), "--skip-setup").status).toBe(0)
      expect(acp("cluster", "down").status).toBe(0)
      // n2's data directory moves onto an 8 MiB tmpfs; the cluster restarts as it was.
      const moved = sh(
        `mv ${tmpfs} ${home}-n2 && mkdir ${tmpfs} && mount -t tmpfs -o size=8m acp-full ${tmpfs} && cp -a ${home}-n2/. ${tmpfs}/ && rm -rf ${home}-n2`,
      )
      expect(moved.status, moved.stderr).toBe(0)
      const up = acp("cluster", "up", "--skip-setup")
      expect(up.status, up.stderr + up.stdout).toBe(0)
    }, 90_000)

    afterAll(() => {
      acp("cluster", "down")
      // What n2 said, for a failure's sake: its log is on the tmpfs, gone after the unmount.
      const log = sh(`tail -c 8000 ${join(tmpfs, "node.log")}`).stdout
      if (process.env.ACP_TEST_LOG !== undefined) writeFileSync(process.env.ACP_TEST_LOG, log)
      sh(`umount ${tmpfs}`)
      rmSync(home, { recursive: true, force: true })
    })

    it("refuses writes with 507 and the reason, shows none of them, and writes again once space returns", async () => {
      expect((await api(2, "PUT", "/v1/objects/project/before", project("before"))).status).toBe(200)
      await eventually(() => visible(1, "before"))
      // Fill the disk (dd stops at ENOSPC).
      sh(`dd if=/dev/zero of=${join(tmpfs, "filler")} bs=64k`)
      const refused = await eventually(async () => {
        const answer = await api(2, "PUT", "/v1/objects/project/refused-1", project("refused-1"))
        return answer.status === 507 ? answer : undefined
      }, 10_000)
      expect(refused.body).toMatchObject({ _tag: "StorageRefused", reason: "disk-full" })
      expect(refused.body.message).toContain("disk full")
      expect(refused.body.message).toContain(join(tmpfs, "node.db"))
      expect((await api(2, "PUT", "/v1/objects/project/refused-2", project("refused-2"))).status).toBe(507)
      expect(await visible(2, "refused-1")).toBe(false)
      const status = (await api(2, "GET", "/v1/status")).body as {
        health: { cluster: { reasons: ReadonlyArray<{ reason: string }> } }
      }
      expect(status.health.cluster.reasons.map((reason) => reason.reason).join("\n")).toContain(
        "this node's store refuses writes (disk full",
      )
      // The others see it: n2 says so in its statistics, and a primary other than n2 (a primary
      // that cannot write steps down) raises store-failing.
      const alarm = await eventually(async () => {
        for (const node of [1, 3]) {
          const listed = (
            (await api(node, "GET", "/v1/status")).body as unknown as {
              alarms: ReadonlyArray<{ id: string; state: string; message: string }>
            }
          ).alarms
          const found = listed.find(
            (entry) => entry.id === "store-failing.n2.store" && entry.state === "raised",
          )
          if (found !== undefined) return found
        }
        return undefined
      }, 20_000)
      expect(alarm.message).toContain("the store of n2 refuses writes (disk full")
      const primaryNow = ((await api(1, "GET", "/v1/status")).body as { primary: string | null }).primary
      expect(primaryNow).not.toBe("n2")
      // Writes elsewhere go on, and reach n2 only as far as its store lets them.
      expect((await api(1, "PUT", "/v1/objects/project/on-n1", project("on-n1"))).status).toBe(200)

      rmSync(join(tmpfs, "filler"))
      await eventually(
        async () => (await api(2, "PUT", "/v1/objects/project/after", project("after"))).status === 200,
        10_000,
      )
      // n2's stream is continuous: its next write reaches every node, and the refused ones never do.
      await eventually(async () => (await visible(1, "after")) && (await visible(3, "after")))
      await eventually(() => visible(2, "on-n1"))
      for (const node of [1, 2, 3]) {
        expect(await visible(node, "refused-1")).toBe(false)
        expect(await visible(node, "refused-2")).toBe(false)
      }
      const healed = (await api(2, "GET", "/v1/status")).body as {
        health: { cluster: { reasons: ReadonlyArray<{ reason: string }> } }
      }
      expect(JSON.stringify(healed.health)).not.toContain("refuses writes")
      await eventually(async () => {
        const listed = (
          (await api(1, "GET", "/v1/status")).body as unknown as { alarms: ReadonlyArray<{ id: string }> }
        ).alarms
        return !listed.some((entry) => entry.id === "store-failing.n2.store")
      }, 20_000)

      // And after a restart of n2, its new writes still reach the others.
      process.kill(Number(readFileSync(join(tmpfs, "node.pid"), "utf8")), "SIGKILL")
      const started = spawnSync(
        "sh",
        [
          "-c",
          `${process.execPath} ${bundle} node run --config ${join(tmpfs, "config.json")} >>${join(tmpfs, "node.log")} 2>&1 &`,
        ],
        { env },
      )
      expect(started.status).toBe(0)
      await eventually(
        async () =>
          (await api(2, "PUT", "/v1/objects/project/restarted", project("restarted"))).status === 200,
        20_000,
      )
      await eventually(async () => (await visible(1, "restarted")) && (await visible(3, "restarted")), 20_000)

      // Restarted on a full disk, it cannot open its store or record its start: it waits, saying
      // why, and starts once space returns (it used to die with a bare `StoreError`; found by acp
      // vortex, twice: seed 5005 filled the disk between the count and the node's own open).
      process.kill(Number(readFileSync(join(tmpfs, "node.pid"), "utf8")), "SIGKILL")
      sh(`dd if=/dev/zero of=${join(tmpfs, "filler")} bs=64k`)
      const outside = `${home}-n2.log`
      spawnSync(
        "sh",
        [
          "-c",
          `${process.execPath} ${bundle} node run --config ${join(tmpfs, "config.json")} >>${outside} 2>&1 &`,
        ],
        { env },
      )
      const waiting = await eventually(() => {
        const log = sh(`cat ${outside}`).stdout
        return log.includes("trying again every second") ? log : undefined
      }, 20_000)
      // Refused where the disk first says so: opening the store (its WAL), or counting the start.
      expect(
        waiting.includes(`cannot record this start in ${join(tmpfs, "node.db")} (disk-full)`) ||
          waiting.includes(`cannot open ${join(tmpfs, "node.db")} (disk-full)`),
      ).toBe(true)
      expect(waiting).not.toContain("StoreError")
      rmSync(join(tmpfs, "filler"))
      await eventually(
        async () =>
          (
            await api(2, "PUT", "/v1/objects/project/space-again", project("space-again")).catch(
              () => undefined,
            )
          )?.status === 200,
        30_000,
      )
      rmSync(outside, { force: true })
    }, 120_000)

    it("serves no stored value that fails its checksum, and gets it back from its peers, its own ones too", async () => {
      expect((await api(3, "PUT", "/v1/objects/project/checked", project("checked"))).status).toBe(200)
      expect((await api(1, "PUT", "/v1/objects/project/own", project("own"))).status).toBe(200)
      await eventually(() => visible(1, "checked"))
      await eventually(() => visible(2, "own"))
      const n1 = join(home, "n1")
      process.kill(Number(readFileSync(join(n1, "node.pid"), "utf8")), "SIGKILL")
      await eventually(async () => (await api(1, "GET", "/v1/status").catch(() => undefined)) === undefined)
      // A value changed on disk, behind SQLite's back (the one n3 wrote).
      const db = new DatabaseSync(join(n1, "node.db"))
      db.prepare("UPDATE entries SET value = ? WHERE kind = 'project' AND id = 'checked'").run(
        new TextEncoder().encode(JSON.stringify(project("tampered"))),
      )
      // And one n1 wrote itself, which its own log no longer holds: only a peer can give it back.
      db.prepare("UPDATE entries SET value = ? WHERE kind = 'project' AND id = 'own'").run(
        new TextEncoder().encode(JSON.stringify(project("tampered"))),
      )
      expect(db.prepare("DELETE FROM own_log WHERE kind = 'project' AND id = 'own'").run().changes).toBe(1)
      db.close()
      spawnSync(
        "sh",
        [
          "-c",
          `${process.execPath} ${bundle} node run --config ${join(n1, "config.json")} >>${join(n1, "node.log")} 2>&1 &`,
        ],
        {
          env,
        },
      )
      const repaired = await eventually(async () => {
        const answer = await api(1, "GET", "/v1/objects/project/checked").catch(() => undefined)
        return answer?.status === 200 ? answer : undefined
      }, 20_000)
      expect(repaired.body.spec.name).toBe("checked")
      const own = await eventually(async () => {
        const answer = await api(1, "GET", "/v1/objects/project/own").catch(() => undefined)
        return answer?.status === 200 ? answer : undefined
      }, 20_000)
      expect(own.body.spec.name).toBe("own")
      const health = await eventually(async () => {
        const text = JSON.stringify(((await api(1, "GET", "/v1/status")).body as { health: unknown }).health)
        return text.includes("1 of its own given back by a peer") ? text : undefined
      }, 10_000)
      expect(health).toContain("2 corrupted value(s) at start, not served")
      // The cluster knows too: the primary alarms it.
      const alarm = await eventually(async () => {
        for (const node of [1, 2, 3]) {
          const seen = (
            (await api(node, "GET", "/v1/status")).body as {
              alarms: ReadonlyArray<{ id: string; message: string }>
            }
          ).alarms.find((entry) => entry.id === "store-corrupted.n1.store")
          if (seen !== undefined) return seen
        }
        return undefined
      }, 20_000)
      expect(alarm.message).toContain("the store of n1 held 2 corrupted value(s) at its start")
      const log = readFileSync(join(n1, "node.log"), "utf8")
      expect(log.includes("stored value failed its checksum"), log.slice(-3000)).toBe(true)
    }, 60_000)
  },
)
