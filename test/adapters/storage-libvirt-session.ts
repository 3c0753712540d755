/**
 * Run by the libvirt storage test as an unprivileged user (`qemu:///session` does not start as
 * root): a dir pool through libvirt's storage driver on real files, its volumes made, cloned,
 * grown, snapshotted and reverted by the adapter, with `virsh` and `qemu-io` saying after each
 * step what they see. Prints one JSON object.
 */
import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { Effect } from "effect"
import { LibvirtStorageLayer } from "../../adapters/storage/libvirt.ts"
import { type PoolDefinition, Storage } from "../../core/ports/storage.ts"

const home = process.env.HOME ?? "/tmp"
const uri = "qemu:///session"
const virsh = (...args: ReadonlyArray<string>) =>
  execFileSync("virsh", ["-c", uri, ...args], { encoding: "utf8" }).trim()
/** What the first 64 KiB of a volume hold, as qemu-io dumps them (a few distinct lines). */
const content = (path: string) =>
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "read -v 0 64k", path], { encoding: "utf8" })
    .split("\n")
    .filter((line) => /^[0-9a-f]{8}:/.test(line))
    .filter((line, index, lines) => index === 0 || line.slice(10) !== lines[index - 1]!.slice(10))
    .join("\n")
const write = (path: string, pattern: string) =>
  execFileSync("qemu-io", ["-f", "qcow2", "-c", `write -P ${pattern} 0 64k`, path], { encoding: "utf8" })

const mib = 1024 ** 2
const pool: PoolDefinition = { id: "lv1", driver: "dir", path: join(home, "pools", "lv1") }
const libvirtName = `acp-${pool.id}`

const program = Effect.gen(function* () {
  const storage = yield* Storage
  const timings: Record<string, number> = {}
  const timed = <A, E>(name: string, effect: Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const started = performance.now()
      const result = yield* effect
      timings[name] = Math.round((performance.now() - started) * 10) / 10
      return result
    })
  const built = yield* timed("build", storage.ensurePool(pool))
  const poolList = virsh("pool-list", "--all")
  const made = yield* timed(
    "create",
    storage.createVolume(pool, { id: "disk", sizeBytes: 64 * mib, format: "qcow2" }),
  )
  write(made.path, "0x5a")
  const before = content(made.path)
  const cloned = yield* timed(
    "clone",
    storage.createVolume(pool, { id: "copy", sizeBytes: 64 * mib, format: "qcow2", cloneOf: "disk" }),
  )
  const clonedContent = content(cloned.path)
  const volList = virsh("vol-list", libvirtName, "--details")
  const grown = yield* timed("resize", storage.resizeVolume(pool, "disk", 128 * mib))
  const virshCapacity = virsh("vol-info", "--pool", libvirtName, "disk.qcow2")
  yield* timed("snapshot", storage.createSnapshot(pool, "disk", "before"))
  const snapshots = (yield* storage.listSnapshots(pool, "disk")).map((snapshot) => snapshot.name)
  write(made.path, "0xa5")
  const overwritten = content(made.path)
  yield* timed("revert", storage.revertSnapshot(pool, "disk", "before"))
  const reverted = content(made.path)
  yield* storage.deleteSnapshot(pool, "disk", "before")
  yield* timed("delete", storage.deleteVolume(pool, "copy"))
  const afterDelete = virsh("vol-list", libvirtName)
  const removed = yield* storage.removePool(pool).pipe(
    Effect.match({
      onFailure: (error) => ({ reason: error.reason }),
      onSuccess: () => ({ reason: "none" }),
    }),
  )
  yield* storage.deleteVolume(pool, "disk")
  yield* storage.removePool(pool)
  const poolListAfter = virsh("pool-list", "--all")
  return {
    built,
    poolList,
    volList,
    made,
    cloned,
    grown,
    virshCapacity,
    snapshots,
    before,
    overwritten,
    reverted,
    clonedContent,
    afterDelete,
    removed,
    poolListAfter,
    timings,
  }
})

const result = await Effect.runPromise(
  Effect.scoped(program.pipe(Effect.provide(LibvirtStorageLayer({ uri })))),
)
console.log(JSON.stringify(result))
