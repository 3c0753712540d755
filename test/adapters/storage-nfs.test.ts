/**
 * NFS shares on real parts: nfs-ganesha serving a directory from one network namespace, read and
 * written by a userspace NFS client (libnfs-utils: nfs-cat, nfs-cp) from another, joined by a
 * veth pair in 198.18.0.0/15; a client the share does not name is refused; a share taken away is
 * no longer served. Needs root, nfs-ganesha, nfs-ganesha-vfs and libnfs-utils (`acp setup --for
 * test` installs them); skips, saying so, without.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeGaneshaShares } from "../../adapters/storage/ganesha.ts"
import { namespacesAvailable, sh } from "./netns.ts"

const tag = `acpnfs${process.pid % 1000}`
const missing = ["ganesha.nfsd", "nfs-cat", "nfs-cp"].filter((tool) => sh(`command -v ${tool}`).status !== 0)
const namespaces = namespacesAvailable(tag)
const skip =
  missing.length > 0
    ? `missing ${missing.join(", ")} (apt-get install nfs-ganesha nfs-ganesha-vfs libnfs-utils)`
    : namespaces !== true
      ? namespaces
      : undefined
if (skip !== undefined) console.warn(`storage-nfs: skipped: ${skip}`)

const home = mkdtempSync(join(tmpdir(), "acp-nfs-"))
const server = `${tag}-s`
const client = `${tag}-c`
const outsider = `${tag}-o`
const shares = makeGaneshaShares({ runDir: join(home, "run"), bind: "198.18.9.1", netns: server })
/** A libnfs tool from a namespace; libnfs takes the NFS version in the URL. */
const nfs = (namespace: string, tool: string, ...args: ReadonlyArray<string>) =>
  spawnSync("ip", ["netns", "exec", namespace, tool, ...args], { encoding: "utf8", timeout: 20_000 })
const url = (path: string) => `nfs://198.18.9.1${path}?version=4`

describe.skipIf(skip !== undefined)(
  "NFS shares (nfs-ganesha, a userspace client in another namespace)",
  () => {
    beforeAll(() => {
      // server 198.18.9.1 — client 198.18.9.2 on one link; an outsider 198.18.9.6 on another.
      const setup = sh(
        [
          `ip netns add ${server}`,
          `ip netns add ${client}`,
          `ip netns add ${outsider}`,
          `ip link add ${tag}a type veth peer name ${tag}b`,
          `ip link add ${tag}c type veth peer name ${tag}d`,
          `ip link set ${tag}a netns ${server}`,
          `ip link set ${tag}c netns ${server}`,
          `ip link set ${tag}b netns ${client}`,
          `ip link set ${tag}d netns ${outsider}`,
          `ip -n ${server} addr add 198.18.9.1/30 dev ${tag}a`,
          `ip -n ${server} addr add 198.18.9.5/30 dev ${tag}c`,
          `ip -n ${client} addr add 198.18.9.2/30 dev ${tag}b`,
          `ip -n ${outsider} addr add 198.18.9.6/30 dev ${tag}d`,
          ...[server, client, outsider].map((ns) => `ip -n ${ns} link set lo up`),
          `ip -n ${server} link set ${tag}a up`,
          `ip -n ${server} link set ${tag}c up`,
          `ip -n ${client} link set ${tag}b up`,
          `ip -n ${outsider} link set ${tag}d up`,
          `ip -n ${outsider} route add 198.18.9.0/30 via 198.18.9.5`,
        ].join(" && "),
      )
      expect(setup.status, setup.stderr).toBe(0)
    })

    afterAll(async () => {
      await Effect.runPromise(Effect.ignore(shares.stop))
      sh(`ip netns del ${server}; ip netns del ${client}; ip netns del ${outsider}`)
      rmSync(home, { recursive: true, force: true })
    })

    it("serves a share to the client it names, read and written from another namespace; nobody else", async () => {
      const exported = join(home, "data")
      mkdirSync(exported)
      writeFileSync(join(exported, "hello.txt"), "from the server\n")
      await Effect.runPromise(
        shares.apply([{ id: "data", path: exported, clients: ["198.18.9.2"], access: "rw" }]),
      )
      const read = nfs(client, "nfs-cat", url("/data/hello.txt"))
      expect(read.status, read.stderr).toBe(0)
      expect(read.stdout).toBe("from the server\n")
      writeFileSync(join(home, "upload.txt"), "from the client\n")
      const written = nfs(client, "nfs-cp", join(home, "upload.txt"), url("/data/upload.txt"))
      expect(written.status, written.stderr).toBe(0)
      expect(readFileSync(join(exported, "upload.txt"), "utf8")).toBe("from the client\n")
      // The outsider reaches the server's NFS port, but the share does not name it.
      const reach = spawnSync(
        "ip",
        [
          "netns",
          "exec",
          outsider,
          process.execPath,
          "-e",
          'require("net").connect(2049, "198.18.9.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))',
        ],
        { timeout: 10_000 },
      )
      expect(reach.status).toBe(0)
      const refused = nfs(outsider, "nfs-cat", url("/data/hello.txt"))
      expect(refused.status).not.toBe(0)
      expect(refused.stdout).toBe("")
    }, 60_000)

    it("a read-only share refuses writes; a share taken away is no longer served", async () => {
      const exported = join(home, "docs")
      mkdirSync(exported, { recursive: true })
      writeFileSync(join(exported, "readme.txt"), "read me\n")
      await Effect.runPromise(
        shares.apply([{ id: "docs", path: exported, clients: ["198.18.9.0/30"], access: "ro" }]),
      )
      expect(nfs(client, "nfs-cat", url("/docs/readme.txt")).stdout).toBe("read me\n")
      const write = nfs(client, "nfs-cp", join(home, "upload.txt"), url("/docs/upload.txt"))
      expect(write.status).not.toBe(0)
      // The first share is gone from the server: only the shares last applied are served.
      expect(nfs(client, "nfs-cat", url("/data/hello.txt")).status).not.toBe(0)
      const bad = await Effect.runPromise(
        Effect.flip(
          shares.apply([{ id: "x", path: join(home, "nope"), clients: ["198.18.9.2"], access: "rw" }]),
        ),
      )
      expect(bad.message).toBe(`share x: invalid: share x: ${join(home, "nope")} is not a directory`)
    }, 60_000)
  },
)
