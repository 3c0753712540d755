/**
 * Storage operations on this host through the dir driver (`adapters/storage/dir.ts`): how long a
 * 1 GiB volume takes to make, raw and qcow2; to clone with `--data` MiB written into it (the
 * driver copies with `qemu-img convert`), beside `cp --reflink=auto` of the same image (the peer
 * a copy-on-write pool would use; on a filesystem without reflinks it is a plain copy); and a
 * qcow2 snapshot and its revert; and, as root with btrfs-progs, the same on a btrfs pool
 * (`adapters/storage/btrfs.ts`, a loop-mounted image): a raw volume, a clone (a subvolume
 * snapshot), a snapshot and a revert (a reflink copy). Each figure is the median of `--runs`.
 *
 *   node bench/storage.ts [--runs 5] [--data 256] [--dir /var/tmp]
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { makeBtrfsStorage } from "../adapters/storage/btrfs.ts"
import { makeDirStorage } from "../adapters/storage/dir.ts"
import type { PoolDefinition, VolumeFormat } from "../core/ports/storage.ts"

const flag = (name: string, fallback: string) => {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? fallback : process.argv[index + 1]!
}
const runs = Number(flag("runs", "5"))
const dataMiB = Number(flag("data", "256"))
const home = mkdtempSync(join(flag("dir", "/var/tmp"), "acp-bench-storage-"))
const storage = makeDirStorage()
const pool: PoolDefinition = { id: "bench", driver: "dir", path: join(home, "pool") }
const gib = 1024 ** 3
const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)

const median = (values: ReadonlyArray<number>) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const timed = async (body: () => Promise<unknown>) => {
  const started = performance.now()
  await body()
  return performance.now() - started
}

const rows: Array<[string, number]> = []
const measure = async (name: string, body: (index: number) => Promise<unknown>) => {
  const samples: Array<number> = []
  for (let index = 0; index < runs; index++) samples.push(await timed(() => body(index)))
  rows.push([name, median(samples)])
  process.stderr.write(`${name}: ${median(samples).toFixed(1)} ms\n`)
}

try {
  await run(storage.ensurePool(pool))
  for (const format of ["raw", "qcow2"] as ReadonlyArray<VolumeFormat>) {
    await measure(`create 1 GiB ${format}`, (index) =>
      run(storage.createVolume(pool, { id: `new-${format}-${index}`, sizeBytes: gib, format })),
    )
    const source = `src-${format}`
    const made = await run(storage.createVolume(pool, { id: source, sizeBytes: gib, format }))
    const write = spawnSync("qemu-io", ["-f", format, "-c", `write -P 0x5a 0 ${dataMiB}M`, made.path])
    if (write.status !== 0) throw new Error(`qemu-io: ${write.stderr}`)
    await measure(`clone 1 GiB ${format} (${dataMiB} MiB written)`, (index) =>
      run(
        storage.createVolume(pool, {
          id: `clone-${format}-${index}`,
          sizeBytes: gib,
          format,
          cloneOf: source,
        }),
      ),
    )
    await measure(`peer: cp --reflink=auto of that ${format} image`, async (index) => {
      const copied = spawnSync("cp", [
        "--reflink=auto",
        "--sparse=always",
        made.path,
        join(home, `cp-${format}-${index}`),
      ])
      if (copied.status !== 0) throw new Error(`cp: ${copied.stderr}`)
    })
  }
  await measure("qcow2 snapshot", (index) => run(storage.createSnapshot(pool, "src-qcow2", `s${index}`)))
  await measure("qcow2 revert", (index) => run(storage.revertSnapshot(pool, "src-qcow2", `s${index}`)))
  const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8" })
  const mountpoint = join(home, "btrfs")
  const withBtrfs =
    process.getuid?.() === 0 &&
    sh("command -v mkfs.btrfs").status === 0 &&
    sh(
      `truncate -s 3G ${home}/btrfs.img && mkfs.btrfs -q ${home}/btrfs.img && mkdir ${mountpoint} && mount -o loop ${home}/btrfs.img ${mountpoint}`,
    ).status === 0
  if (!withBtrfs) process.stderr.write("btrfs: skipped (needs root and btrfs-progs)\n")
  else
    try {
      const btrfs = makeBtrfsStorage()
      const bpool: PoolDefinition = { id: "bench-btrfs", driver: "btrfs", path: join(mountpoint, "pool") }
      await run(btrfs.ensurePool(bpool))
      await measure("btrfs: create 1 GiB raw", (index) =>
        run(btrfs.createVolume(bpool, { id: `new-${index}`, sizeBytes: gib, format: "raw" })),
      )
      const made = await run(btrfs.createVolume(bpool, { id: "src", sizeBytes: gib, format: "raw" }))
      const write = spawnSync("qemu-io", ["-f", "raw", "-c", `write -P 0x5a 0 ${dataMiB}M`, made.path])
      if (write.status !== 0) throw new Error(`qemu-io: ${write.stderr}`)
      sh("sync")
      await measure(`btrfs: clone 1 GiB raw (${dataMiB} MiB written)`, (index) =>
        run(
          btrfs.createVolume(bpool, { id: `clone-${index}`, sizeBytes: gib, format: "raw", cloneOf: "src" }),
        ),
      )
      await measure("btrfs: snapshot", (index) => run(btrfs.createSnapshot(bpool, "src", `s${index}`)))
      await measure("btrfs: revert", (index) => run(btrfs.revertSnapshot(bpool, "src", `s${index}`)))
    } finally {
      sh(`umount ${mountpoint}`)
    }
  const clone = rows.find(([name]) => name.startsWith("clone 1 GiB qcow2"))![1]
  const peer = rows.find(([name]) => name.startsWith("peer: cp --reflink=auto of that qcow2"))![1]
  console.log(`storage on ${home} (median of ${runs})`)
  for (const [name, ms] of rows) console.log(`  ${name.padEnd(48)} ${ms.toFixed(1).padStart(8)} ms`)
  console.log(`  qcow2 clone / cp: ${(clone / peer).toFixed(2)}x`)
  const btrfsClone = rows.find(([name]) => name.startsWith("btrfs: clone"))?.[1]
  if (btrfsClone !== undefined)
    console.log(`  qcow2 clone / btrfs clone: ${(clone / btrfsClone).toFixed(1)}x`)
} finally {
  rmSync(home, { recursive: true, force: true })
}
