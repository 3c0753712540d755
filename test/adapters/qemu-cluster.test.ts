/**
 * The local cluster with real guests (`acp cluster up --hypervisor qemu`): each node embeds
 * libvirt's QEMU driver (`qemu:///embed`, its state under the node's data directory), so a system
 * is a QEMU process (TCG: no KVM here) booting from a volume its pool's node made, and a second
 * volume is hot-plugged into it while it runs. `cluster down` leaves no guest behind. Needs
 * root, QEMU and libvirt's QEMU driver, and the libvirt-qemu account (`acp setup --for test`
 * makes all of them); skips, saying which is missing, without.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { hasQemuAccount } from "../../adapters/host/packages.ts"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-qc-"))
const basePort = 43_000 + (process.pid % 1_000) * 10
const env = { ...process.env, ACP_HOME: home }
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 90_000 })
const missing = [
  "/usr/bin/qemu-system-x86_64",
  "/usr/bin/qemu-img",
  "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
].filter((path) => !existsSync(path))
const skipReason =
  process.getuid?.() !== 0
    ? "it runs the cluster as root (the embedded QEMU driver's guests run as the node's user)"
    : missing.length > 0
      ? `missing ${missing.join(", ")} (apt-get install qemu-system-x86 qemu-utils libvirt-daemon-driver-qemu)`
      : !hasQemuAccount()
        ? "the user and group libvirt-qemu are missing (acp setup --for qemu)"
        : undefined
if (skipReason !== undefined) console.warn(`qemu-cluster: skipped: ${skipReason}`)

const mib = 1024 * 1024
const poolDir = join(home, "n2", "pools", "fast")
/** The embedded driver's live state of n2's guests: a pid file and the live domain XML per guest. */
const guests = join(home, "n2", "qemu", "run", "qemu")
const api = async (path: string) => {
  const response = await fetch(`http://127.0.0.1:${basePort + 101}${path}`, {
    headers: { authorization: `Bearer ${readFileSync(join(home, "admin.key"), "utf8").trim()}` },
    signal: AbortSignal.timeout(5_000),
  })
  return (await response.json()) as { meta: ReadonlyArray<{ node: string; value: Record<string, unknown> }> }
}
const metaOnN2 = async (system: string) =>
  (await api(`/v1/objects/system/${system}`)).meta.find((slot) => slot.node === "n2")?.value as
    | { state?: string; disks?: ReadonlyArray<{ target: string; path: string }> }
    | undefined
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe.skipIf(skipReason !== undefined)("a local cluster with real QEMU guests", () => {
  beforeAll(() => {
    const up = acp(
      "cluster",
      "up",
      "--nodes",
      "2",
      "--hypervisor",
      "qemu",
      "--base-port",
      String(basePort),
      "--skip-setup",
    )
    expect(up.status, up.stderr + up.stdout).toBe(0)
  }, 60_000)

  afterAll(() => {
    acp("cluster", "down")
    rmSync(home, { recursive: true, force: true })
  })

  it("boots a system from a volume, hot-plugs a second one while it runs, and leaves no guest after down", async () => {
    expect(acp("storage", "pool", "create", "fast", "--on", "n2").status).toBe(0)
    const created = acp("system", "create", "web-1", "--disk", "pool=fast,size=64MiB", "--memory", "64")
    expect(created.status, created.stderr + created.stdout).toBe(0)
    const running = await eventually(async () => {
      const meta = await metaOnN2("web-1")
      return meta?.state === "running" ? meta : undefined
    }, 30_000)
    expect(running.disks).toEqual([{ target: "vda", path: join(poolDir, "web-1-disk0.qcow2") }])
    // A real QEMU process, opening the volume n2's storage service made.
    const pid = Number.parseInt(readFileSync(join(guests, "acp-web-1.pid"), "utf8"), 10)
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]).toMatch(/qemu-system-x86_64$/)
    expect(readFileSync(join(guests, "acp-web-1.xml"), "utf8")).toContain(join(poolDir, "web-1-disk0.qcow2"))

    expect(acp("storage", "volume", "create", "data", "--pool", "fast", "--size", "16MiB").status).toBe(0)
    const attached = acp("system", "attach", "web-1", "--volume", "data")
    expect(attached.status, attached.stderr + attached.stdout).toBe(0)
    // The running guest has it (its live state), and the system's meta says so.
    const disks = await eventually(async () => {
      const meta = await metaOnN2("web-1")
      return meta?.disks?.length === 2 ? meta.disks : undefined
    }, 20_000)
    expect(disks).toEqual([
      { target: "vda", path: join(poolDir, "web-1-disk0.qcow2") },
      { target: "vdb", path: join(poolDir, "data.qcow2") },
    ])
    expect(readFileSync(join(guests, "acp-web-1.xml"), "utf8")).toContain(join(poolDir, "data.qcow2"))
    expect(alive(pid)).toBe(true)

    const pools = JSON.parse(acp("storage", "pool", "list", "--json").stdout) as ReadonlyArray<{
      id: string
      givenBytes: number
    }>
    expect(pools.find((pool) => pool.id === "fast")?.givenBytes).toBe(80 * mib)

    const down = acp("cluster", "down")
    expect(down.status, down.stderr).toBe(0)
    expect(down.stdout).toContain("stopped 1 QEMU guest(s)")
    await eventually(() => !alive(pid))
  }, 120_000)
})
