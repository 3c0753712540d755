/**
 * The dir storage driver on real parts: image files made by `qemu-img` in a directory, their
 * content written and read back by `qemu-io` through a snapshot and its revert, a clone and a
 * resize, the pool's figures from the filesystem, and a clone that runs out of space on a small
 * tmpfs (root, for the mount): refused as `no-space`, nothing half-made left behind, the source
 * untouched. Needs qemu-utils (`acp setup --for test` installs it); skips, saying so, without.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { makeDirStorage } from "../../adapters/storage/dir.ts"
import type { PoolDefinition, StorageError } from "../../core/ports/storage.ts"

const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: 30_000 })
const hasQemuUtils =
  sh("command -v qemu-img && command -v qemu-io").status === 0 ? true : "qemu-utils is not installed"
if (hasQemuUtils !== true) console.warn(`storage-dir: skipped: ${hasQemuUtils}`)
const home = mkdtempSync(join(tmpdir(), "acp-storage-"))
const storage = makeDirStorage()
const run = <A>(effect: Effect.Effect<A, StorageError>) => Effect.runPromise(effect)
const failure = <A>(effect: Effect.Effect<A, StorageError>) =>
  Effect.runPromise(Effect.flip(effect)).then((error) => ({ reason: error.reason, message: error.message }))

/** qemu-io on a volume: writes a byte pattern, or checks one is there (exit 1 when it is not). */
const io = (path: string, command: string) => sh(`qemu-io -f qcow2 -c '${command}' ${path}`)

afterAll(() => {
  sh(`umount ${join(home, "small")} 2>/dev/null`)
  rmSync(home, { recursive: true, force: true })
})

describe.skipIf(hasQemuUtils !== true)("dir storage driver (qemu-img in a directory)", () => {
  const pool: PoolDefinition = { id: "p1", driver: "dir", path: join(home, "p1") }

  it("builds the pool, makes, clones, grows and deletes volumes, and the pool's figures follow", async () => {
    const empty = await run(storage.ensurePool(pool))
    expect(statSync(pool.path).isDirectory()).toBe(true)
    expect(empty.capacityBytes).toBeGreaterThan(0)
    expect(empty.availableBytes).toBeLessThanOrEqual(empty.capacityBytes)
    expect(empty.allocationBytes).toBe(0)

    const volume = await run(
      storage.createVolume(pool, { id: "v1", sizeBytes: 4 * 1024 * 1024, format: "qcow2" }),
    )
    expect(volume).toMatchObject({ id: "v1", format: "qcow2", capacityBytes: 4 * 1024 * 1024 })
    expect(volume.path).toBe(join(pool.path, "v1.qcow2"))
    expect(io(volume.path, "write -P 0x5a 0 1M").status).toBe(0)
    const raw = await run(storage.createVolume(pool, { id: "r1", sizeBytes: 1024 * 1024, format: "raw" }))
    expect(raw.capacityBytes).toBe(1024 * 1024)

    expect(await failure(storage.createVolume(pool, { id: "v1", sizeBytes: 1024, format: "qcow2" }))).toEqual(
      {
        reason: "exists",
        message: "create v1: exists: pool p1 already holds volume v1",
      },
    )

    // A clone has the source's bytes, and may be larger than it.
    const clone = await run(
      storage.createVolume(pool, { id: "v2", sizeBytes: 8 * 1024 * 1024, format: "qcow2", cloneOf: "v1" }),
    )
    expect(clone.capacityBytes).toBe(8 * 1024 * 1024)
    expect(io(clone.path, "read -P 0x5a 0 1M").status).toBe(0)

    const grown = await run(storage.resizeVolume(pool, "v1", 6 * 1024 * 1024))
    expect(grown.capacityBytes).toBe(6 * 1024 * 1024)
    expect((await failure(storage.resizeVolume(pool, "v1", 1024 * 1024))).reason).toBe("invalid")

    expect((await run(storage.listVolumes(pool))).map((each) => each.id)).toEqual(["r1", "v1", "v2"])
    const used = await run(storage.poolInfo(pool))
    // The clone and the original each hold their 1 MiB of data.
    expect(used.allocationBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024)

    expect(await failure(storage.removePool(pool))).toEqual({
      reason: "invalid",
      message: "remove p1: invalid: pool p1 still holds r1, v1, v2",
    })
    for (const id of ["r1", "v1", "v2"]) await run(storage.deleteVolume(pool, id))
    expect((await failure(storage.deleteVolume(pool, "v1"))).reason).toBe("no-such-volume")
    expect(await run(storage.listVolumes(pool))).toEqual([])
    await run(storage.removePool(pool))
    expect(existsSync(pool.path)).toBe(false)
    expect((await failure(storage.poolInfo(pool))).reason).toBe("no-such-pool")
  })

  it("finds what a create broken off by a crash left, leaves the volumes alone, and discards it", async () => {
    const p3: PoolDefinition = { id: "p3", driver: "dir", path: join(home, "p3") }
    await run(storage.ensurePool(p3))
    await run(storage.createVolume(p3, { id: "whole", sizeBytes: 1024 * 1024, format: "qcow2" }))
    // What a node that died in `qemu-img convert` leaves: the image it was writing, aside.
    expect(sh(`qemu-img create -q -f qcow2 ${join(p3.path, ".half.qcow2.partial")} 1M`).status).toBe(0)
    expect(await run(storage.listPartials(p3))).toEqual(["half"])
    expect((await run(storage.listVolumes(p3))).map((volume) => volume.id)).toEqual(["whole"])
    await run(storage.discardPartial(p3, "half"))
    await run(storage.discardPartial(p3, "whole"))
    expect(readdirSync(p3.path).sort()).toEqual(["whole.qcow2"])
    expect(await run(storage.listPartials(p3))).toEqual([])
    expect(await failure(storage.listPartials({ ...p3, path: join(home, "nowhere") }))).toMatchObject({
      reason: "no-such-pool",
    })
  })

  it("a pool whose directory cannot be made fails at once, naming it (Node's recursive mkdir hangs under /proc)", async () => {
    // Without the fix this call never returns and the test times out.
    const refused = await failure(storage.ensurePool({ id: "bad", driver: "dir", path: "/proc/acp-no/pool" }))
    expect(refused).toMatchObject({ reason: "no-such-pool" })
    expect(refused.message).toContain("/proc/acp-no")
  })

  it("a snapshot keeps the content it had: overwritten, then reverted, the original bytes read back", async () => {
    const snapPool: PoolDefinition = { id: "p2", driver: "dir", path: join(home, "p2") }
    await run(storage.ensurePool(snapPool))
    const volume = await run(
      storage.createVolume(snapPool, { id: "disk", sizeBytes: 2 * 1024 * 1024, format: "qcow2" }),
    )
    expect(io(volume.path, "write -P 0x11 0 64k").status).toBe(0)
    await run(storage.createSnapshot(snapPool, "disk", "before"))
    expect((await failure(storage.createSnapshot(snapPool, "disk", "before"))).reason).toBe("exists")
    expect(io(volume.path, "write -P 0x22 0 64k").status).toBe(0)
    expect(io(volume.path, "read -P 0x11 0 64k").status).toBe(1)

    await run(storage.revertSnapshot(snapPool, "disk", "before"))
    expect(io(volume.path, "read -P 0x11 0 64k").status).toBe(0)
    expect((await run(storage.listSnapshots(snapPool, "disk"))).map((each) => each.name)).toEqual(["before"])
    expect((await failure(storage.revertSnapshot(snapPool, "disk", "never"))).reason).toBe("no-such-snapshot")
    await run(storage.deleteSnapshot(snapPool, "disk", "before"))
    expect(await run(storage.listSnapshots(snapPool, "disk"))).toEqual([])

    await run(storage.createVolume(snapPool, { id: "plain", sizeBytes: 1024 * 1024, format: "raw" }))
    expect(await failure(storage.createSnapshot(snapPool, "plain", "s"))).toEqual({
      reason: "unsupported",
      message: "snapshot plain: unsupported: volume plain is raw: only qcow2 volumes have snapshots",
    })
  })

  const canMount = process.getuid?.() === 0 ? true : "not root (mount)"
  it.skipIf(canMount !== true)(
    `a clone that runs out of space is refused as no-space and leaves nothing behind (${canMount === true ? "tmpfs" : canMount})`,
    async () => {
      const small: PoolDefinition = { id: "small", driver: "dir", path: join(home, "small") }
      await run(storage.ensurePool(small))
      expect(sh(`mount -t tmpfs -o size=6m acp-storage ${small.path}`).status).toBe(0)
      const source = await run(
        storage.createVolume(small, { id: "src", sizeBytes: 8 * 1024 * 1024, format: "qcow2" }),
      )
      expect(io(source.path, "write -P 0x33 0 4M").status).toBe(0)
      const refused = await failure(
        storage.createVolume(small, {
          id: "copy",
          sizeBytes: 8 * 1024 * 1024,
          format: "qcow2",
          cloneOf: "src",
        }),
      )
      expect(refused.reason).toBe("no-space")
      expect(readdirSync(small.path)).toEqual(["src.qcow2"])
      expect(io(source.path, "read -P 0x33 0 4M").status).toBe(0)
      expect((await run(storage.listVolumes(small))).map((each) => each.id)).toEqual(["src"])
    },
  )
})
