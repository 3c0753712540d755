/**
 * Two L2 domains joined by relays over L3, for real: domain d1 (n1, n2) on one bridge, d2
 * (n3, n4) on another, each with its own multicast; n1 and n3 are relays and routers, joined by
 * a point-to-point link (198.19.0.0/30) over which they keep a TLS relay link. A write in one
 * domain must reach the other through the relays; cutting the backbone stops that, and healing
 * it lets the domains catch up. Needs root and `ip netns`; skips, saying so, where missing.
 */
import { spawn, spawnSync } from "node:child_process"
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { adminKeyIn, apiIn, eventually, namespacesAvailable, sh } from "./netns.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const tag = `acr${process.pid % 100_000}`
const home = mkdtempSync(join(tmpdir(), "acp-relay-"))
const hosts = [
  { id: "n1", address: "198.18.1.11", domain: "d1", relay: true },
  { id: "n2", address: "198.18.1.12", domain: "d1", relay: false },
  { id: "n3", address: "198.18.2.13", domain: "d2", relay: true },
  { id: "n4", address: "198.18.2.14", domain: "d2", relay: false },
] as const
const ns = (id: string) => `${tag}-${id}`
const switchOf = (domain: string) => `${tag}-sw${domain}`

const canUseNamespaces = namespacesAvailable(tag)

const api = (id: string, method: string, path: string, body?: unknown) =>
  apiIn(ns(id), adminKeyIn(home), method, path, body)

const project = (name: string) => ({
  name,
  description: "",
  quota: { cpus: 1, memoryMiB: 1, storageBytes: 1 },
})

describe.skipIf(canUseNamespaces !== true)(
  `two L2 domains joined by TLS relays (${canUseNamespaces === true ? "root, ip netns" : canUseNamespaces})`,
  () => {
    beforeAll(() => {
      const setup: Array<string> = []
      for (const domain of ["d1", "d2"]) {
        setup.push(
          `ip netns add ${switchOf(domain)}`,
          `ip netns exec ${switchOf(domain)} ip link add br0 type bridge`,
          `ip netns exec ${switchOf(domain)} ip link set br0 up`,
        )
      }
      for (const [index, host] of hosts.entries()) {
        const veth = `${tag}v${index}`
        setup.push(
          `ip netns add ${ns(host.id)}`,
          `ip link add ${veth}a type veth peer name ${veth}b`,
          `ip link set ${veth}a netns ${ns(host.id)}`,
          `ip link set ${veth}b netns ${switchOf(host.domain)}`,
          `ip netns exec ${switchOf(host.domain)} ip link set ${veth}b master br0 up`,
          `ip netns exec ${ns(host.id)} ip link set lo up`,
          `ip netns exec ${ns(host.id)} ip addr add ${host.address}/24 dev ${veth}a`,
          `ip netns exec ${ns(host.id)} ip link set ${veth}a up multicast on`,
          `ip netns exec ${ns(host.id)} ip route add 224.0.0.0/4 dev ${veth}a`,
        )
      }
      // The backbone: a point-to-point link between the two relays, which route between the domains.
      setup.push(
        `ip link add ${tag}bba type veth peer name ${tag}bbb`,
        `ip link set ${tag}bba netns ${ns("n1")}`,
        `ip link set ${tag}bbb netns ${ns("n3")}`,
        `ip netns exec ${ns("n1")} ip addr add 198.19.0.1/30 dev ${tag}bba`,
        `ip netns exec ${ns("n3")} ip addr add 198.19.0.2/30 dev ${tag}bbb`,
        `ip netns exec ${ns("n1")} ip link set ${tag}bba up`,
        `ip netns exec ${ns("n3")} ip link set ${tag}bbb up`,
        `ip netns exec ${ns("n1")} sysctl -qw net.ipv4.ip_forward=1`,
        `ip netns exec ${ns("n3")} sysctl -qw net.ipv4.ip_forward=1`,
        `ip netns exec ${ns("n1")} ip route add 198.18.2.0/24 via 198.19.0.2`,
        `ip netns exec ${ns("n3")} ip route add 198.18.1.0/24 via 198.19.0.1`,
        `ip netns exec ${ns("n2")} ip route add 198.18.2.0/24 via 198.18.1.11`,
        `ip netns exec ${ns("n4")} ip route add 198.18.1.0/24 via 198.18.2.13`,
      )
      for (const command of setup) {
        const result = sh(command)
        expect(result.status, `${command}: ${result.stderr}`).toBe(0)
      }
      const spec = hosts
        .map((host) => `${host.id}=${host.address}/${host.domain}${host.relay ? "/relay" : ""}`)
        .join(",")
      const init = spawnSync(
        process.execPath,
        [bundle, "cluster", "init", "--hosts", spec, "--dir", home, "--data-dir", join(home, "{id}")],
        {
          encoding: "utf8",
          timeout: 60_000,
        },
      )
      expect(init.status, init.stderr + init.stdout).toBe(0)
      for (const host of hosts) {
        const log = openSync(join(home, host.id, "node.log"), "a")
        const child = spawn(
          "ip",
          [
            "netns",
            "exec",
            ns(host.id),
            process.execPath,
            bundle,
            "node",
            "run",
            "--config",
            join(home, host.id, "config.json"),
          ],
          {
            detached: true,
            stdio: ["ignore", log, log],
          },
        )
        closeSync(log)
        child.unref()
      }
    }, 60_000)

    afterAll(() => {
      for (const host of hosts) {
        try {
          process.kill(Number(readFileSync(join(home, host.id, "node.pid"), "utf8")), "SIGKILL")
        } catch {}
      }
      sh(`pkill -9 -f "--config ${home}"`)
      for (const host of hosts) sh(`ip netns del ${ns(host.id)}`)
      for (const domain of ["d1", "d2"]) sh(`ip netns del ${switchOf(domain)}`)
      rmSync(home, { recursive: true, force: true })
    })

    it("a write in one domain reaches the other through the relays, and one primary serves both", async () => {
      await eventually(() => hosts.every((host) => api(host.id, "GET", "/v1/status").status === 200))
      expect(api("n2", "PUT", "/v1/objects/project/from-d1", project("from-d1")).status).toBe(200)
      await eventually(() => api("n4", "GET", "/v1/objects/project/from-d1").status === 200)
      expect(api("n4", "PUT", "/v1/objects/project/from-d2", project("from-d2")).status).toBe(200)
      await eventually(() => api("n2", "GET", "/v1/objects/project/from-d2").status === 200)
      await eventually(
        () => new Set(hosts.map((host) => api(host.id, "GET", "/v1/status").body.primary)).size === 1,
      )
      // The changes crossed over the TLS link between the relays (the only path the CDB has between domains).
      expect(readFileSync(join(home, "n1", "node.log"), "utf8")).toContain("relay link to n3 up")
      expect(readFileSync(join(home, "n3", "node.log"), "utf8")).toContain("relay link to n1 up")
    }, 60_000)

    it("cut the backbone: writes stay in their domain; heal it: both domains catch up", async () => {
      expect(sh(`ip netns exec ${ns("n1")} ip link set ${tag}bba down`).status).toBe(0)
      expect(api("n2", "PUT", "/v1/objects/project/while-cut", project("while-cut")).status).toBe(200)
      // A positive signal first: the write reached its domain's relay, and that relay no longer
      // hears the other domain — only then does its absence there say something.
      await eventually(
        () =>
          api("n1", "GET", "/v1/objects/project/while-cut").status === 200 &&
          (api("n1", "GET", "/v1/status").body.members as ReadonlyArray<{ id: string; state: string }>).some(
            (member) => member.id === "n4" && member.state !== "alive",
          ),
        20_000,
      )
      expect(api("n4", "GET", "/v1/objects/project/while-cut").status).toBe(404)
      expect(sh(`ip netns exec ${ns("n1")} ip link set ${tag}bba up`).status).toBe(0)
      expect(sh(`ip netns exec ${ns("n1")} ip route replace 198.18.2.0/24 via 198.19.0.2`).status).toBe(0)
      await eventually(() => api("n4", "GET", "/v1/objects/project/while-cut").status === 200, 40_000)
    }, 90_000)
  },
)
