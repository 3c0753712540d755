/**
 * Storage on a real local cluster (three node processes, `acp cluster up`): a pool made on n2
 * through n1's API and CLI, volumes made, cloned and grown there by n2's storage service (real
 * qemu-img files under n2's data directory), the pools' figures in `acp storage pool list`, and
 * every refusal the API owes as a 409 naming what was wrong, with nothing written. Needs
 * qemu-utils (`acp setup --for test` installs it); skips, saying so, without.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-storage-cluster-"))
const basePort = 47_000 + (process.pid % 1_000) * 10
const env = { ...process.env, ACP_HOME: home }
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })
const hasQemuUtils =
  spawnSync("sh", ["-c", "command -v qemu-img"]).status === 0 ? true : "qemu-utils is not installed"
if (hasQemuUtils !== true) console.warn(`storage-cluster: skipped: ${hasQemuUtils}`)
const hasNfs = spawnSync("sh", ["-c", "command -v ganesha.nfsd && command -v nfs-cat"]).status === 0
if (!hasNfs)
  console.warn("storage-cluster: the NFS share test is skipped: nfs-ganesha or libnfs-utils is not installed")

/**
 * One API call. A request that finds its pooled keep-alive connection closed by the node at that
 * instant (undici: "other side closed", UND_ERR_SOCKET, before any answer) is sent once more on a
 * new connection: every call here is idempotent (GET, PUT of a whole spec, DELETE).
 */
const api = async (node: number, method: string, path: string, body?: unknown) => {
  try {
    return await apiOnce(node, method, path, body)
  } catch (error) {
    if ((error as { cause?: { code?: string } }).cause?.code !== "UND_ERR_SOCKET") throw error
    return await apiOnce(node, method, path, body)
  }
}
const apiOnce = async (node: number, method: string, path: string, body?: unknown) => {
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
const mib = 1024 * 1024
const poolDir = join(home, "n2", "pools", "fast")

describe.skipIf(hasQemuUtils !== true)("storage on a local cluster", () => {
  beforeAll(() => {
    const up = acp("cluster", "up", "--base-port", String(basePort), "--skip-setup")
    expect(up.status, up.stderr + up.stdout).toBe(0)
  }, 90_000)

  afterAll(() => {
    acp("cluster", "down")
    rmSync(home, { recursive: true, force: true })
  })

  it("a pool and volumes made on n2 through n1, with the pool's figures", async () => {
    const pool = acp("storage", "pool", "create", "fast", "--on", "n2")
    expect(pool.stdout + pool.stderr).toContain(`storage-pool fast active on n2 at ${poolDir}`)
    const volume = acp("storage", "volume", "create", "v1", "--pool", "fast", "--size", "64MiB")
    expect(volume.stdout + volume.stderr).toContain(
      `storage-volume v1 made on n2: ${join(poolDir, "v1.qcow2")}`,
    )
    expect(
      acp("storage", "volume", "create", "v2", "--pool", "fast", "--size", "8MiB", "--format", "raw").status,
    ).toBe(0)
    const clone = acp(
      "storage",
      "volume",
      "create",
      "c1",
      "--pool",
      "fast",
      "--size",
      "128MiB",
      "--clone",
      "v1",
    )
    expect(clone.status, clone.stderr).toBe(0)
    const info = spawnSync("qemu-img", ["info", "--output=json", "-U", join(poolDir, "c1.qcow2")], {
      encoding: "utf8",
    })
    expect(JSON.parse(info.stdout)["virtual-size"]).toBe(128 * mib)

    await eventually(() => {
      const listed = JSON.parse(acp("storage", "pool", "list", "--json").stdout)
      expect(listed).toHaveLength(1)
      expect(listed[0]).toMatchObject({
        id: "fast",
        driver: "dir",
        node: "n2",
        state: "active",
        givenBytes: 200 * mib,
      })
      expect(listed[0].capacityBytes).toBeGreaterThan(0)
      expect(listed[0].capabilities).toEqual(["snapshot", "clone", "thin", "onlineResize"])
      return true
    })
    const table = acp("storage", "pool", "list").stdout
    expect(table).toMatch(/POOL +DRIVER +NODE +STATE +CAPACITY +USED +FREE +GIVEN +CAN/)
    expect(table).toMatch(/fast +dir +n2 +active .* 200 MiB +snapshot,clone,thin,onlineResize/)

    expect(acp("storage", "volume", "resize", "v1", "--size", "96MiB").status).toBe(0)
    await eventually(() => {
      const grown = spawnSync("qemu-img", ["info", "--output=json", "-U", join(poolDir, "v1.qcow2")], {
        encoding: "utf8",
      })
      expect(JSON.parse(grown.stdout)["virtual-size"]).toBe(96 * mib)
      return true
    })
  })

  it("refuses, with a 409 that names what is wrong, what cannot be done, and writes nothing", async () => {
    const tooBig = await api(1, "PUT", "/v1/objects/storage-volume/huge", {
      name: "huge",
      pool: "fast",
      sizeBytes: 1024 ** 5,
      format: "qcow2",
    })
    expect(tooBig.status).toBe(409)
    expect(tooBig.body).toMatchObject({ _tag: "OperationRefused", reason: "no-space" })
    expect(tooBig.body.message).toMatch(
      /^volume huge needs 1125899906842624 bytes .*; pool fast has \d+ of \d+ bytes/,
    )
    expect((await api(1, "GET", "/v1/objects/storage-volume/huge")).status).toBe(404)

    const noPool = await api(1, "PUT", "/v1/objects/storage-volume/x", {
      name: "x",
      pool: "nope",
      sizeBytes: mib,
      format: "raw",
    })
    expect(noPool.status).toBe(409)
    expect(noPool.body.message).toBe("storage-volume x: there is no pool nope")

    const shrink = await api(1, "PUT", "/v1/objects/storage-volume/v2", {
      name: "v2",
      pool: "fast",
      sizeBytes: mib,
      format: "raw",
    })
    expect(shrink.status).toBe(409)
    expect(shrink.body.message).toBe(
      `storage-volume v2 is ${8 * mib} bytes: it can grow, not shrink to ${mib}`,
    )

    const poolInUse = await api(1, "DELETE", "/v1/objects/storage-pool/fast")
    expect(poolInUse.status).toBe(409)
    expect(poolInUse.body.message).toBe("storage-pool fast holds 3 volume(s): c1, v1, v2; delete them first")
    expect((await api(1, "GET", "/v1/objects/storage-pool/fast")).status).toBe(200)

    const badSize = acp("storage", "volume", "create", "v9", "--pool", "fast", "--size", "lots")
    expect(badSize.status).not.toBe(0)
    expect(badSize.stderr + badSize.stdout).toContain('"lots" is not a size')
  })

  it("a deleted volume's file goes from its pool; a volume a system names is not deleted", async () => {
    expect(acp("storage", "volume", "delete", "c1").status).toBe(0)
    await eventually(() => !existsSync(join(poolDir, "c1.qcow2")))
    expect(existsSync(join(poolDir, "v1.qcow2"))).toBe(true)

    const system = await api(1, "PUT", "/v1/objects/system/db-1", {
      name: "db-1",
      cpus: 1,
      memoryMiB: 64,
      disks: [{ volume: "v2", bus: "virtio", boot: true }],
      nics: [],
      ha: false,
      desired: "stopped",
      placement: { affinity: [], antiAffinity: [] },
    })
    expect(system.status, JSON.stringify(system.body)).toBe(200)
    const inUse = await api(1, "DELETE", "/v1/objects/storage-volume/v2")
    expect(inUse.status).toBe(409)
    expect(inUse.body.message).toBe("storage-volume v2 is a disk of db-1; detach it first")
    expect(existsSync(join(poolDir, "v2.raw"))).toBe(true)
  })

  it("a system created with --disk gets its volumes, runs on the pool's node and opens them there", async () => {
    const created = acp(
      "system",
      "create",
      "web-1",
      "--disk",
      "pool=fast,size=64MiB",
      "--disk",
      "clone=v1",
      "--memory",
      "64",
    )
    expect(created.status, created.stderr + created.stdout).toBe(0)
    // The volumes pin it to n2, where pool fast is: the only node the scheduler could take.
    expect(created.stdout).toContain("created web-1 on n2")
    const system = await eventually(async () => {
      const got = await api(1, "GET", "/v1/objects/system/web-1")
      const meta = got.body.meta.find((slot: { node: string }) => slot.node === "n2")?.value
      return meta?.state === "running" ? got.body : undefined
    }, 30_000)
    expect(system.spec.disks).toEqual([
      { volume: "web-1-disk0", bus: "virtio", boot: true },
      { volume: "web-1-disk1", bus: "virtio", boot: false },
    ])
    const meta = system.meta.find((slot: { node: string }) => slot.node === "n2").value
    expect(meta.disks).toEqual([
      { target: "vda", path: join(poolDir, "web-1-disk0.qcow2") },
      { target: "vdb", path: join(poolDir, "web-1-disk1.qcow2") },
    ])
    const clone = spawnSync("qemu-img", ["info", "--output=json", "-U", join(poolDir, "web-1-disk1.qcow2")], {
      encoding: "utf8",
    })
    expect(JSON.parse(clone.stdout)["virtual-size"]).toBe(96 * mib)
    const pools = acp("storage", "pool", "list")
    expect(pools.stdout).toMatch(/fast\s+dir\s+n2\s+active/)
  }, 60_000)

  it("refuses disks a system cannot have, and writes nothing", async () => {
    const taken = acp("system", "create", "web-2", "--disk", "volume=web-1-disk0")
    expect(taken.status).not.toBe(0)
    expect(taken.stderr).toContain("storage-volume web-1-disk0 is a disk of web-1 and is not shareable")
    const elsewhere = acp("system", "create", "web-3", "--on", "n1", "--disk", "pool=fast,size=8MiB")
    expect(elsewhere.status).not.toBe(0)
    expect(elsewhere.stderr).toContain(
      "system web-3 is on n1, but its disks: volume web-3-disk0 is in pool fast, local to n2",
    )
    const badFlag = acp("system", "create", "web-4", "--disk", "pool=fast")
    expect(badFlag.status).not.toBe(0)
    expect(badFlag.stderr).toContain("a new volume needs size=<size>")
    for (const id of ["web-2", "web-3", "web-4"])
      expect((await api(1, "GET", `/v1/objects/system/${id}`)).status).toBe(404)
    expect((await api(1, "GET", "/v1/objects/storage-volume/web-3-disk0")).status).toBe(404)
    const migrate = acp("system", "migrate", "web-1", "--to", "n3")
    expect(migrate.status).not.toBe(0)
    expect(migrate.stderr).toContain(
      "system web-1 cannot leave n2: its disks: volume web-1-disk0 is in pool fast",
    )
  })

  it("a snapshot taken on the cluster brings a volume's bytes back on revert; what cannot be is refused", async () => {
    const file = join(poolDir, "v1.qcow2")
    const io = (command: string) =>
      spawnSync("qemu-io", ["-f", "qcow2", "-c", command, file], { encoding: "utf8", timeout: 30_000 })
    expect(io("write -P 0xab 0 64k").status).toBe(0)
    const taken = acp("storage", "snapshot", "create", "s1", "--volume", "v1")
    expect(taken.stdout + taken.stderr).toContain("storage-snapshot s1 of v1 taken on n2")
    expect(io("write -P 0xcd 0 64k").status).toBe(0)
    const reverted = acp("storage", "snapshot", "revert", "s1")
    expect(reverted.status, reverted.stderr + reverted.stdout).toBe(0)
    expect(reverted.stdout).toContain("volume v1 reverted to snapshot s1")
    const read = io("read -P 0xab 0 64k")
    expect(read.stdout + read.stderr).not.toContain("Pattern verification failed")
    expect(read.status).toBe(0)
    expect(acp("storage", "snapshot", "list", "--volume", "v1").stdout).toMatch(/s1\s+v1\s+n2\s+available/)

    const raw = await api(1, "PUT", "/v1/objects/storage-snapshot/s2", { name: "s2", volume: "v2" })
    expect(raw.status).toBe(409)
    expect(raw.body.message).toBe(
      "storage-snapshot s2: volume v2 is raw: a dir pool snapshots qcow2 volumes only",
    )
    expect(acp("storage", "snapshot", "create", "s3", "--volume", "web-1-disk0").status).toBe(0)
    const underGuest = acp("storage", "snapshot", "revert", "s3")
    expect(underGuest.status).not.toBe(0)
    expect(underGuest.stderr).toContain("storage-volume web-1-disk0 is a disk of web-1, which is not stopped")
    const withSnapshots = await api(1, "DELETE", "/v1/objects/storage-volume/v1")
    expect(withSnapshots.status).toBe(409)
    expect(withSnapshots.body.message).toBe("storage-volume v1 has snapshot(s) s1; delete them first")

    expect(acp("storage", "snapshot", "delete", "s1").status).toBe(0)
    await eventually(() => {
      const listed = spawnSync("qemu-img", ["snapshot", "-U", "-l", file], { encoding: "utf8" })
      return listed.status === 0 && !listed.stdout.includes("s1")
    })
  }, 60_000)

  it("a second volume attached to the stopped system is in its domain once it starts again", async () => {
    expect(acp("storage", "volume", "create", "data", "--pool", "fast", "--size", "16MiB").status).toBe(0)
    // libvirt's test driver cannot hot-plug: attaching to the running system fails, saying so.
    const hot = acp("system", "attach", "web-1", "--volume", "data")
    expect(hot.status).not.toBe(0)
    expect(hot.stdout + hot.stderr).toContain("cannot hot-plug")
    expect(acp("system", "stop", "web-1").status).toBe(0)
    const cold = acp("system", "attach", "web-1", "--volume", "data")
    expect(cold.status, cold.stdout + cold.stderr).toBe(0)
    expect(acp("system", "start", "web-1").status).toBe(0)
    const disks = await eventually(async () => {
      const got = await api(1, "GET", "/v1/objects/system/web-1")
      const meta = got.body.meta.find((slot: { node: string }) => slot.node === "n2")?.value
      return meta?.state === "running" && meta.disks?.length === 3 ? meta.disks : undefined
    }, 30_000)
    expect(disks.at(-1)).toEqual({ target: "vdc", path: join(poolDir, "data.qcow2") })
  }, 90_000)

  it("a pool above 85% full and a pool that cannot be built are alarmed, and lower health; freed, the alarm clears", async () => {
    const tiny = join(home, "tiny")
    const mounted = spawnSync("sh", ["-c", `mkdir -p ${tiny} && mount -t tmpfs -o size=8m tmpfs ${tiny}`])
    const canMount = mounted.status === 0
    try {
      expect(
        acp("storage", "pool", "create", "broken", "--on", "n3", "--path", "/proc/acp-cannot-be-here").status,
      ).not.toBe(0)
      const inactive = await eventually(async () => {
        const status = (await api(1, "GET", "/v1/status")).body
        return status.alarms.find((alarm: { id: string }) => alarm.id === "pool-inactive.broken")
      }, 30_000)
      expect(inactive.message).toContain("pool broken is failed on n3")
      const health = (await api(1, "GET", "/v1/status")).body.health.cluster
      expect(health.reasons.map((reason: { reason: string }) => reason.reason).join("; ")).toContain(
        "pool-inactive.broken",
      )
      if (!canMount) return
      expect(acp("storage", "pool", "create", "tiny", "--on", "n2", "--path", tiny).status).toBe(0)
      expect(
        acp("storage", "volume", "create", "filler", "--pool", "tiny", "--size", "7MiB", "--format", "raw")
          .status,
      ).toBe(0)
      const filled = spawnSync("qemu-io", ["-f", "raw", "-c", "write -P 0x11 0 7M", join(tiny, "filler.raw")])
      expect(filled.status).toBe(0)
      const full = await eventually(async () => {
        const status = (await api(1, "GET", "/v1/status")).body
        return status.alarms.find((alarm: { id: string }) => alarm.id === "pool-full.tiny")
      }, 30_000)
      expect(full.message).toMatch(/^pool tiny on n2 is (8\d|9\d|100)\.\d% full/)
      expect(acp("storage", "volume", "delete", "filler").status).toBe(0)
      await eventually(async () => {
        const status = (await api(1, "GET", "/v1/status")).body
        return !status.alarms.some((alarm: { id: string }) => alarm.id === "pool-full.tiny")
      }, 30_000)
    } finally {
      acp("storage", "pool", "delete", "tiny")
      acp("storage", "pool", "delete", "broken")
      if (canMount) spawnSync("sh", ["-c", `sleep 3; umount ${tiny}`])
    }
  }, 120_000)

  it("lists every node's block devices as lsblk sees them, with their SMART health", async () => {
    const listed = JSON.parse(
      spawnSync("lsblk", ["-J", "-b", "-d", "-o", "NAME,SIZE,TYPE"], { encoding: "utf8" }).stdout,
    ) as {
      blockdevices: ReadonlyArray<{ name: string; size: number; type: string }>
    }
    const disk = listed.blockdevices.find((device) => device.type === "disk" && device.size > 0)!
    const rows = await eventually(() => {
      const out = acp("storage", "device", "list", "--json")
      const parsed = JSON.parse(out.stdout) as ReadonlyArray<{
        id: string
        sizeBytes?: number
        state: string
        smart: string
      }>
      return ["n1", "n2", "n3"].every((node) => parsed.some((row) => row.id === `${node}.${disk.name}`))
        ? parsed
        : undefined
    }, 40_000)
    expect(rows.find((row) => row.id === `n2.${disk.name}`)).toMatchObject({
      sizeBytes: disk.size,
      state: "online",
      smart: expect.stringMatching(/^(passed|failed|unknown)$/),
    })
    expect(acp("storage", "device", "list").stdout).toMatch(
      new RegExp(`n1\\.${disk.name}\\s+n1\\s+/dev/${disk.name}`),
    )
  }, 60_000)

  it.skipIf(!hasNfs)(
    "a pool's directory shared over NFS by its node is read by a userspace client",
    async () => {
      const shared = acp(
        "storage",
        "share",
        "create",
        "media",
        "--pool",
        "fast",
        "--path",
        "media",
        "--clients",
        "127.0.0.1",
      )
      expect(shared.stdout + shared.stderr).toContain(
        `storage-share media exported by n2 as /media (${join(poolDir, "media")})`,
      )
      writeFileSync(join(poolDir, "media", "hello.txt"), "served by n2\n")
      const read = spawnSync(
        "nfs-cat",
        [`nfs://127.0.0.1/media/hello.txt?version=4&nfsport=${basePort + 402}`],
        {
          encoding: "utf8",
          timeout: 20_000,
        },
      )
      expect(read.stdout, read.stderr).toBe("served by n2\n")
      const poolShared = await api(1, "DELETE", "/v1/objects/storage-pool/fast")
      expect(poolShared.status).toBe(409)
      expect(poolShared.body.message).toBe("storage-pool fast is shared as media; delete the share(s) first")
      const smb = await api(1, "PUT", "/v1/objects/storage-share/win", {
        name: "win",
        pool: "fast",
        protocol: "smb",
        path: "",
        clients: ["127.0.0.1"],
      })
      expect(smb.status).toBe(409)
      expect(smb.body.message).toBe("storage-share win: smb is not served yet; nfs is")
      expect(acp("storage", "share", "delete", "media").status).toBe(0)
      await eventually(
        () =>
          spawnSync("nfs-cat", [`nfs://127.0.0.1/media/hello.txt?version=4&nfsport=${basePort + 402}`], {
            encoding: "utf8",
            timeout: 20_000,
          }).status !== 0,
      )
      expect(existsSync(join(poolDir, "media", "hello.txt"))).toBe(true)
    },
    60_000,
  )
})
