/**
 * Three hosts in three network namespaces, joined by a bridge in a fourth ("the switch"), with
 * real UDP multicast between them and addresses in 198.18.0.0/15 only. Each node's API listens
 * on its own namespace's loopback, so the test asks it from inside that namespace. Every
 * namespace and process is removed afterwards. Needs root and `ip netns`; skips, saying so,
 * where they are missing.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { adminKeyIn, apiIn, eventually, namespacesAvailable, sh } from "./netns.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const tag = `acp${process.pid % 100_000}`
const switchNs = `${tag}-sw`
const hosts = [1, 2, 3].map((index) => ({ index, ns: `${tag}-n${index}`, address: `198.18.0.${10 + index}` }))
const joiner = { index: 4, ns: `${tag}-n4`, address: "198.18.0.14" }
const home = mkdtempSync(join(tmpdir(), "acp-ns-"))

const canUseNamespaces = namespacesAvailable(tag)

const api = (host: { readonly ns: string }, method: string, path: string, body?: unknown) =>
  apiIn(host.ns, adminKeyIn(home), method, path, body)

const start = (host: { readonly index: number; readonly ns: string }) => {
  const child = spawn(
    "ip",
    [
      "netns",
      "exec",
      host.ns,
      process.execPath,
      bundle,
      "node",
      "run",
      "--config",
      join(home, `n${host.index}`, "config.json"),
    ],
    {
      detached: true,
      stdio: "ignore",
    },
  )
  child.unref()
}
const pidOf = (host: { readonly index: number }) =>
  Number(readFileSync(join(home, `n${host.index}`, "node.pid"), "utf8"))
const project = (name: string) => ({
  name,
  description: "",
  quota: { cpus: 1, memoryMiB: 1, storageBytes: 1 },
})

describe.skipIf(canUseNamespaces !== true)(
  `three hosts in network namespaces (${canUseNamespaces === true ? "root, ip netns" : canUseNamespaces})`,
  () => {
    beforeAll(() => {
      const setup = [
        `ip netns add ${switchNs}`,
        `ip netns exec ${switchNs} ip link add br0 type bridge`,
        `ip netns exec ${switchNs} ip link set br0 up`,
        ...hosts.flatMap((host) => [
          `ip netns add ${host.ns}`,
          `ip link add ${tag}v${host.index}a type veth peer name ${tag}v${host.index}b`,
          `ip link set ${tag}v${host.index}a netns ${host.ns}`,
          `ip link set ${tag}v${host.index}b netns ${switchNs}`,
          `ip netns exec ${switchNs} ip link set ${tag}v${host.index}b master br0 up`,
          `ip netns exec ${host.ns} ip link set lo up`,
          `ip netns exec ${host.ns} ip addr add ${host.address}/24 dev ${tag}v${host.index}a`,
          `ip netns exec ${host.ns} ip link set ${tag}v${host.index}a up multicast on`,
          `ip netns exec ${host.ns} ip route add 224.0.0.0/4 dev ${tag}v${host.index}a`,
        ]),
      ]
      for (const command of setup) {
        const result = sh(command)
        expect(result.status, `${command}: ${result.stderr}`).toBe(0)
      }
      // The hosts' files come from `acp cluster init`, as they would for real hosts.
      const init = spawnSync(
        process.execPath,
        [
          bundle,
          "cluster",
          "init",
          "--hosts",
          hosts.map((host) => `n${host.index}=${host.address}`).join(","),
          "--dir",
          home,
          "--data-dir",
          join(home, "{id}"),
          "--encrypt",
        ],
        { encoding: "utf8", timeout: 60_000 },
      )
      expect(init.status, init.stderr + init.stdout).toBe(0)
      for (const host of hosts) start(host)
    }, 60_000)

    afterAll(() => {
      for (const host of [...hosts, joiner]) {
        try {
          process.kill(pidOf(host), "SIGKILL")
        } catch {}
      }
      sh(`pkill -9 -f "--config ${home}"`)
      for (const host of [...hosts, joiner]) sh(`ip netns del ${host.ns}`)
      sh(`ip netns del ${switchNs}`)
      rmSync(home, { recursive: true, force: true })
    })

    it("write on one host, read on all, over real multicast", async () => {
      await eventually(() => hosts.every((host) => api(host, "GET", "/v1/status").status === 200))
      expect(api(hosts[0]!, "PUT", "/v1/objects/project/alpha", project("alpha")).status).toBe(200)
      await eventually(() =>
        hosts.every((host) => api(host, "GET", "/v1/objects/project/alpha").status === 200),
      )
    }, 60_000)

    it("cut one host's link, write on both sides, restore it: all converge", async () => {
      const [h1, h2, h3] = hosts as [(typeof hosts)[number], (typeof hosts)[number], (typeof hosts)[number]]
      expect(sh(`ip netns exec ${switchNs} ip link set ${tag}v3b down`).status).toBe(0)
      expect(api(h1, "PUT", "/v1/objects/project/majority-side", project("majority-side")).status).toBe(200)
      expect(api(h3, "PUT", "/v1/objects/project/minority-side", project("minority-side")).status).toBe(200)
      // A positive signal first: the write reached the rest of the majority, and the cut host no
      // longer hears the writer — only then does its absence there say something.
      await eventually(
        () =>
          api(h2, "GET", "/v1/objects/project/majority-side").status === 200 &&
          (api(h3, "GET", "/v1/status").body.members as ReadonlyArray<{ id: string; state: string }>).some(
            (member) => member.id === `n${h1.index}` && member.state !== "alive",
          ),
      )
      expect(api(h3, "GET", "/v1/objects/project/majority-side").status).toBe(404)
      expect(sh(`ip netns exec ${switchNs} ip link set ${tag}v3b up`).status).toBe(0)
      await eventually(() =>
        [h1, h2, h3].every(
          (host) =>
            api(host, "GET", "/v1/objects/project/majority-side").status === 200 &&
            api(host, "GET", "/v1/objects/project/minority-side").status === 200,
        ),
      )
    }, 60_000)

    it("kill -9 a host during writes, restart it: it catches up and loses no acknowledged write", async () => {
      const [h1, h2] = hosts as [(typeof hosts)[number], (typeof hosts)[number]]
      process.kill(pidOf(h2), "SIGKILL")
      for (let index = 0; index < 10; index++)
        expect(api(h1, "PUT", `/v1/objects/project/p${index}`, project(`p${index}`)).status).toBe(200)
      start(h2)
      await eventually(() => {
        const list = api(h2, "GET", "/v1/objects/project")
        return list.status === 200 && list.body.length >= 13
      })
    }, 60_000)

    it("the monitor primary moves when its host dies", async () => {
      await eventually(() => typeof api(hosts[0]!, "GET", "/v1/status").body.primary === "string")
      const primary = api(hosts[0]!, "GET", "/v1/status").body.primary as string
      const dead = hosts.find((host) => `n${host.index}` === primary)!
      process.kill(pidOf(dead), "SIGKILL")
      const survivors = hosts.filter((host) => host !== dead)
      await eventually(() =>
        survivors.every((host) => {
          const status = api(host, "GET", "/v1/status")
          return (
            status.status === 200 &&
            typeof status.body.primary === "string" &&
            status.body.primary !== primary
          )
        }),
      )
    }, 60_000)

    it("acp node join enrols a fourth host and adds it as a learner: with no restart every node knows it, and it syncs both ways", async () => {
      for (const command of [
        `ip netns add ${joiner.ns}`,
        `ip link add ${tag}v4a type veth peer name ${tag}v4b`,
        `ip link set ${tag}v4a netns ${joiner.ns}`,
        `ip link set ${tag}v4b netns ${switchNs}`,
        `ip netns exec ${switchNs} ip link set ${tag}v4b master br0 up`,
        `ip netns exec ${joiner.ns} ip link set lo up`,
        `ip netns exec ${joiner.ns} ip addr add ${joiner.address}/24 dev ${tag}v4a`,
        `ip netns exec ${joiner.ns} ip link set ${tag}v4a up multicast on`,
        `ip netns exec ${joiner.ns} ip route add 224.0.0.0/4 dev ${tag}v4a`,
      ]) {
        const result = sh(command)
        expect(result.status, `${command}: ${result.stderr}`).toBe(0)
      }
      // Run where an operator would: on a host of the cluster (one that is up: an earlier test
      // may have left one down), through its agent (ACP_REMOTE).
      const up = hosts.filter((host) => api(host, "GET", "/v1/status").status === 200)
      const on = up[0]!
      const agentPort = (
        JSON.parse(readFileSync(join(home, `n${on.index}`, "config.json"), "utf8")) as {
          agent: { port: number }
        }
      ).agent.port
      const pids = up.map(pidOf)
      const enrol = spawnSync(
        "ip",
        [
          "netns",
          "exec",
          on.ns,
          "env",
          `ACP_REMOTE=https://${on.address}:${agentPort}`,
          process.execPath,
          bundle,
          "node",
          "join",
          "--dir",
          home,
          "--id",
          "n4",
          "--address",
          joiner.address,
          "--data-dir",
          join(home, "{id}"),
        ],
        { encoding: "utf8", timeout: 60_000 },
      )
      expect(enrol.status, enrol.stderr + enrol.stdout).toBe(0)
      expect(enrol.stdout).toContain("learners: n4")
      start(joiner)
      // Nobody restarted.
      expect(up.map(pidOf)).toEqual(pids)
      await eventually(
        () => api(joiner, "PUT", "/v1/objects/project/from-n4", project("from-n4")).status === 200,
      )
      await eventually(() =>
        up.every((host) => api(host, "GET", "/v1/objects/project/from-n4").status === 200),
      )
      expect(api(on, "PUT", "/v1/objects/project/to-n4", project("to-n4")).status).toBe(200)
      await eventually(() => api(joiner, "GET", "/v1/objects/project/to-n4").status === 200)
      await eventually(() =>
        [...up, joiner].every((host) => {
          const status = api(host, "GET", "/v1/status")
          return (
            status.status === 200 &&
            (status.body.members as unknown as Array<unknown>).length === 4 &&
            typeof status.body.primary === "string"
          )
        }),
      )
    }, 120_000)
  },
)
