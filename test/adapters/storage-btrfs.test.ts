/**
 * The btrfs storage driver on real parts: a btrfs filesystem on a loop-mounted image (root, for
 * the mount), volumes as subvolumes with one raw image each, a clone as a writable subvolume
 * snapshot (its bytes checked), a read-only snapshot, an overwrite, a revert that brings the
 * snapshot's bytes back, and the refusals: a pool not on btrfs, a qcow2 volume, a revert to a
 * snapshot that is not there. Needs btrfs-progs (`acp setup --for test` installs it); skips,
 * saying so, without it or without root.
 */
import { spawnSync } from "node:child_process"
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeBtrfsStorage } from "../../adapters/storage/btrfs.ts"
import type { PoolDefinition, StorageError } from "../../core/ports/storage.ts"

const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: 60_000 })
const skip =
  sh("command -v mkfs.btrfs && command -v btrfs").status !== 0
    ? "btrfs-progs is not installed"
    : process.getuid?.() !== 0
      ? "mounting a loop image needs root"
      : undefined
if (skip !== undefined) console.warn(`storage-btrfs: skipped: ${skip}`)
const home = mkdtempSync(join(tmpdir(), "acp-btrfs-"))
const mountpoint = join(home, "mnt")
const storage = makeBtrfsStorage()
const run = <A>(effect: Effect.Effect<A, StorageError>) => Effect.runPromise(effect)
const failure = <A>(effect: Effect.Effect<A, StorageError>) =>
  Effect.runPromise(Effect.flip(effect)).then((error) => ({ reason: error.reason, message: error.message }))
const mib = 1024 * 1024

/** Writes `byte` over the first 64 KiB of a raw image, as a guest would. */
const scribble = (path: string, byte: number) => {
  const fd = openSync(path, "r+")
  writeSync(fd, Buffer.alloc(64 * 1024, byte), 0, 64 * 1024, 0)
  closeSync(fd)
}
const head = (path: string) => readFileSync(path).subarray(0, 64 * 1024)

describe.skipIf(skip !== undefined)("btrfs storage driver (a loop-mounted btrfs image)", () => {
  const pool: PoolDefinition = { id: "b1", driver: "btrfs", path: join(mountpoint, "pool") }

  beforeAll(() => {
    const image = join(home, "btrfs.img")
    expect(sh(`truncate -s 320M ${image} && mkfs.btrfs -q ${image}`).status).toBe(0)
    mkdirSync(mountpoint)
    const mounted = sh(`mount -o loop ${image} ${mountpoint}`)
    expect(mounted.status, mounted.stderr).toBe(0)
  })

  afterAll(() => {
    sh(`umount ${mountpoint}`)
    rmSync(home, { recursive: true, force: true })
  })

  it("makes a volume as a subvolume, clones it copy-on-write, snapshots and reverts its bytes", async () => {
    const empty = await run(storage.ensurePool(pool))
    expect(empty.capacityBytes).toBeGreaterThan(200 * mib)
    const made = await run(storage.createVolume(pool, { id: "v1", sizeBytes: 64 * mib, format: "raw" }))
    expect(made).toMatchObject({ id: "v1", path: join(pool.path, "v1", "disk.raw"), capacityBytes: 64 * mib })
    expect(sh(`btrfs subvolume show ${join(pool.path, "v1")}`).status).toBe(0)
    scribble(made.path, 0xab)

    const clone = await run(
      storage.createVolume(pool, { id: "c1", sizeBytes: 96 * mib, format: "raw", cloneOf: "v1" }),
    )
    expect(clone.capacityBytes).toBe(96 * mib)
    expect(head(clone.path).every((byte) => byte === 0xab)).toBe(true)

    await run(storage.createSnapshot(pool, "v1", "s1"))
    scribble(made.path, 0xcd)
    expect((await run(storage.listVolumes(pool))).find((volume) => volume.id === "v1")?.snapshots).toEqual([
      "s1",
    ])
    await run(storage.revertSnapshot(pool, "v1", "s1"))
    expect(head(made.path).every((byte) => byte === 0xab)).toBe(true)
    // The clone is its own: the overwrite of v1 did not reach it.
    expect(head(clone.path).every((byte) => byte === 0xab)).toBe(true)

    expect(await failure(storage.createSnapshot(pool, "v1", "s1"))).toMatchObject({ reason: "exists" })
    await run(storage.deleteSnapshot(pool, "v1", "s1"))
    expect(await failure(storage.revertSnapshot(pool, "v1", "s1"))).toEqual({
      reason: "no-such-snapshot",
      message: "revert s1: no-such-snapshot: volume v1 has no snapshot s1",
    })
    await run(storage.resizeVolume(pool, "v1", 80 * mib))
    expect((await run(storage.listVolumes(pool))).map((volume) => [volume.id, volume.capacityBytes])).toEqual(
      [
        ["c1", 96 * mib],
        ["v1", 80 * mib],
      ],
    )
    await run(storage.createSnapshot(pool, "c1", "before"))
    await run(storage.deleteVolume(pool, "c1"))
    expect(existsSync(join(pool.path, "c1"))).toBe(false)
    expect(sh(`btrfs subvolume list ${mountpoint}`).stdout).not.toContain("before")
  })

  it("refuses a pool that is not on btrfs, a qcow2 volume, and shrinking, and changes nothing", async () => {
    const elsewhere: PoolDefinition = { id: "x", driver: "btrfs", path: home }
    expect(await failure(storage.ensurePool(elsewhere))).toMatchObject({
      reason: "unsupported",
      message: expect.stringContaining(`${home} is not on a btrfs filesystem`),
    })
    expect(
      await failure(storage.createVolume(pool, { id: "q", sizeBytes: mib, format: "qcow2" })),
    ).toMatchObject({
      reason: "unsupported",
      message: expect.stringContaining("a btrfs pool holds raw volumes"),
    })
    expect(existsSync(join(pool.path, "q"))).toBe(false)
    expect(await failure(storage.resizeVolume(pool, "v1", mib))).toMatchObject({ reason: "invalid" })
    expect((await run(storage.listVolumes(pool))).map((volume) => volume.id)).toEqual(["v1"])
  })
  it("finds what a create broken off by a crash left (a subvolume that trips the next create), discards it, and the create goes through", async () => {
    // What a node that died between `subvolume create` and the rename into place leaves.
    expect(sh(`btrfs subvolume create ${join(pool.path, ".w1.partial")}`).status).toBe(0)
    expect(await run(storage.listPartials(pool))).toEqual(["w1"])
    expect((await run(storage.listVolumes(pool))).map((volume) => volume.id)).toEqual(["v1"])
    expect(
      await failure(storage.createVolume(pool, { id: "w1", sizeBytes: mib, format: "raw" })),
    ).toMatchObject({
      reason: "failed",
    })
    await run(storage.discardPartial(pool, "w1"))
    // Nothing to discard is no failure (a discard asked for again after a restart).
    await run(storage.discardPartial(pool, "w1"))
    expect(await run(storage.listPartials(pool))).toEqual([])
    expect(
      (await run(storage.createVolume(pool, { id: "w1", sizeBytes: mib, format: "raw" }))).capacityBytes,
    ).toBe(mib)
    await run(storage.deleteVolume(pool, "w1"))
  })
})
