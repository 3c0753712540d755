/**
 * The libvirt storage adapter against libvirt itself: the built-in test driver in this process
 * (`test:///default`: real libvirt and FFI, pools and volumes in memory), and `qemu:///session`'s
 * storage driver on real files, run as an unprivileged user as the QEMU test does (the session
 * daemon does not start as root), with `virsh` and `qemu-img` saying what they see.
 */
import { spawnSync } from "node:child_process"
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Layer } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { LibvirtStorageLayer, poolXml } from "../../adapters/storage/libvirt.ts"
import { type PoolDefinition, Storage, StorageError } from "../../core/ports/storage.ts"
import { sessionPids, stopSession } from "./hypervisor/session.ts"

const withStorage = <A, E>(body: (storage: Storage["Service"]) => Effect.Effect<A, E>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(Storage, body).pipe(
        Effect.provide(Layer.fresh(LibvirtStorageLayer({ uri: "test:///default" }))),
      ),
    ),
  )

const failureOf = <A>(effect: Effect.Effect<A, StorageError>) =>
  Effect.exit(effect).pipe(
    Effect.map((exit) => {
      if (Exit.isSuccess(exit)) throw new Error("expected a failure")
      const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error
      if (!(error instanceof StorageError))
        throw new Error(`expected a StorageError, got ${String(exit.cause)}`)
      return error
    }),
  )

const gib = 1024 ** 3

describe("libvirt storage adapter on libvirt's test driver", () => {
  it("defines, builds and starts a dir pool, makes, clones and deletes volumes in it, then removes it", async () => {
    const pool: PoolDefinition = { id: "t1", driver: "dir", path: "/acp-test/t1" }
    const result = await withStorage((storage) =>
      Effect.gen(function* () {
        const built = yield* storage.ensurePool(pool)
        // A second build finds the pool libvirt has and changes nothing.
        const again = yield* storage.ensurePool(pool)
        const made = yield* storage.createVolume(pool, { id: "base", sizeBytes: gib, format: "qcow2" })
        const clone = yield* storage.createVolume(pool, {
          id: "copy",
          sizeBytes: gib,
          format: "qcow2",
          cloneOf: "base",
        })
        const twice = yield* failureOf(
          storage.createVolume(pool, { id: "base", sizeBytes: gib, format: "raw" }),
        )
        const missing = yield* failureOf(
          storage.createVolume(pool, { id: "other", sizeBytes: gib, format: "raw", cloneOf: "nothing" }),
        )
        // The test driver has no virStorageVolResize: said so, as libvirt says it.
        const grow = yield* failureOf(storage.resizeVolume(pool, "base", 2 * gib))
        const shrink = yield* failureOf(storage.resizeVolume(pool, "base", gib / 2))
        const listed = yield* storage.listVolumes(pool)
        const held = yield* failureOf(storage.removePool(pool))
        yield* storage.deleteVolume(pool, "copy")
        yield* storage.deleteVolume(pool, "base")
        const gone = yield* failureOf(storage.deleteVolume(pool, "base"))
        yield* storage.removePool(pool)
        const removed = yield* failureOf(storage.poolInfo(pool))
        return { built, again, made, clone, twice, missing, grow, shrink, listed, held, gone, removed }
      }),
    )
    expect(result.built.capacityBytes).toBeGreaterThan(0)
    expect(result.again.capacityBytes).toBe(result.built.capacityBytes)
    expect(result.made).toMatchObject({
      id: "base",
      format: "qcow2",
      capacityBytes: gib,
      path: "/acp-test/t1/base.qcow2",
    })
    expect(result.clone).toMatchObject({ id: "copy", format: "qcow2", capacityBytes: gib })
    expect(result.twice.reason).toBe("exists")
    expect(result.missing).toMatchObject({ reason: "no-such-volume", target: "nothing" })
    expect(result.grow.reason).toBe("unsupported")
    expect(result.grow.detail).toMatch(/virStorageVolResize/)
    expect(result.shrink.reason).toBe("invalid")
    expect(result.listed.map((volume) => volume.id)).toEqual(["base", "copy"])
    expect(result.held.detail).toMatch(/still holds base, copy/)
    expect(result.gone.reason).toBe("no-such-volume")
    expect(result.removed.reason).toBe("no-such-pool")
    expect(result.removed.detail).toMatch(/acp-t1/)
  })

  it("refuses fs and netfs pools without a source, and snapshots of raw volumes, naming what is wrong", async () => {
    expect(poolXml({ id: "f", driver: "fs", path: "/p" })).toMatchObject({
      invalid: expect.stringMatching(/block device/),
    })
    expect(poolXml({ id: "n", driver: "netfs", path: "/p", source: "no-colon" })).toMatchObject({
      invalid: expect.stringMatching(/host:\/path/),
    })
    expect(poolXml({ id: "n", driver: "netfs", path: "/p", source: "nas1:/export/a'b" })).toBe(
      "<pool type='netfs'><name>acp-n</name><source><host name='nas1'/><dir path='/export/a&apos;b'/><format type='nfs'/></source><target><path>/p</path></target></pool>",
    )
    expect(poolXml({ id: "f", driver: "fs", path: "/p", source: "/dev/loop7" })).toBe(
      "<pool type='fs'><name>acp-f</name><source><device path='/dev/loop7'/></source><target><path>/p</path></target></pool>",
    )
    const pool: PoolDefinition = { id: "t2", driver: "dir", path: "/acp-test/t2" }
    const result = await withStorage((storage) =>
      Effect.gen(function* () {
        const fs = yield* failureOf(storage.ensurePool({ id: "t3", driver: "fs", path: "/acp-test/t3" }))
        yield* storage.ensurePool(pool)
        yield* storage.createVolume(pool, { id: "plain", sizeBytes: gib, format: "raw" })
        const snapshot = yield* failureOf(storage.createSnapshot(pool, "plain", "s1"))
        const none = yield* storage.listSnapshots(pool, "plain")
        yield* storage.deleteVolume(pool, "plain")
        yield* storage.removePool(pool)
        return { fs, snapshot, none }
      }),
    )
    expect(result.fs).toMatchObject({ reason: "invalid", operation: "build" })
    expect(result.snapshot).toMatchObject({
      reason: "unsupported",
      detail: expect.stringMatching(/only qcow2/),
    })
    expect(result.none).toEqual([])
  })
})

const missing = ["/usr/sbin/libvirtd", "/usr/bin/virsh", "/usr/bin/qemu-img", "/usr/bin/qemu-io"].filter(
  (path) => !existsSync(path),
)
const isRoot = process.getuid?.() === 0
const skipReason =
  missing.length > 0
    ? `libvirt session storage test skipped: missing ${missing.join(", ")} (apt-get install libvirt-daemon libvirt-clients qemu-utils)`
    : !isRoot
      ? "libvirt session storage test skipped: it needs root to run the session as an unprivileged user (setpriv)"
      : undefined
if (skipReason !== undefined) console.warn(skipReason)

const home = mkdtempSync(join(tmpdir(), "acp-vstore-"))
const runtime = join(home, "run")

afterAll(() => {
  stopSession(sessionPids(runtime))
  rmSync(home, { recursive: true, force: true })
})

describe.skipIf(skipReason !== undefined)("libvirt storage adapter on qemu:///session (real files)", () => {
  it("makes a dir pool, creates, clones, grows and deletes volumes; qcow2 content survives snapshot and revert; virsh agrees", () => {
    mkdirSync(runtime, { mode: 0o700 })
    chownSync(home, 65534, 65534)
    chownSync(runtime, 65534, 65534)
    const run = spawnSync(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        process.execPath,
        join(import.meta.dirname, "storage-libvirt-session.ts"),
      ],
      {
        encoding: "utf8",
        timeout: 120_000,
        env: { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    )
    expect(run.status, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as {
      built: { capacityBytes: number; availableBytes: number }
      poolList: string
      volList: string
      made: { path: string; capacityBytes: number; allocationBytes: number }
      cloned: { capacityBytes: number }
      grown: { capacityBytes: number }
      virshCapacity: string
      snapshots: ReadonlyArray<string>
      before: string
      overwritten: string
      reverted: string
      clonedContent: string
      afterDelete: string
      removed: { reason: string }
      poolListAfter: string
      timings: Record<string, number>
    }
    console.log(`libvirt session storage timings (ms): ${JSON.stringify(result.timings)}`)
    expect(result.built.capacityBytes).toBeGreaterThan(0)
    expect(result.poolList).toMatch(/acp-lv1\s+active/)
    expect(result.made.path).toBe(join(home, "pools", "lv1", "disk.qcow2"))
    expect(result.made.capacityBytes).toBe(64 * 1024 ** 2)
    // Thin: a fresh qcow2 volume takes a few hundred KiB, not its 64 MiB.
    expect(result.made.allocationBytes).toBeLessThan(4 * 1024 ** 2)
    expect(result.volList).toMatch(/disk\.qcow2/)
    expect(result.volList).toMatch(/copy\.qcow2/)
    expect(result.cloned.capacityBytes).toBe(64 * 1024 ** 2)
    expect(result.grown.capacityBytes).toBe(128 * 1024 ** 2)
    expect(result.virshCapacity).toMatch(/128\.00 MiB/)
    expect(result.snapshots).toEqual(["before"])
    expect(result.before).toBe(result.reverted)
    expect(result.overwritten).not.toBe(result.before)
    // The clone was made from the original bytes.
    expect(result.clonedContent).toBe(result.before)
    expect(result.afterDelete).not.toMatch(/copy\.qcow2/)
    expect(result.removed.reason).toBe("invalid")
    expect(result.poolListAfter).not.toMatch(/acp-lv1/)
    expect(existsSync(join(home, "pools", "lv1"))).toBe(false)
  })
})
