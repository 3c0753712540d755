/**
 * Storage operations on this host through the dir driver (`adapters/storage/dir.ts`): how long a
 * 1 GiB volume takes to make, raw and qcow2; to clone with `--data` MiB written into it (the
 * driver copies with `qemu-img convert`), beside `cp --reflink=auto` of the same image (the peer
 * a copy-on-write pool would use; on a filesystem without reflinks it is a plain copy); and a
 * qcow2 snapshot and its revert. Each figure is the median of `--runs`.
 *
 *   node bench/storage.ts [--runs 5] [--data 256] [--dir /var/tmp]
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
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
  const clone = rows.find(([name]) => name.startsWith("clone 1 GiB qcow2"))![1]
  const peer = rows.find(([name]) => name.startsWith("peer: cp --reflink=auto of that qcow2"))![1]
  console.log(`storage on ${home} (median of ${runs})`)
  for (const [name, ms] of rows) console.log(`  ${name.padEnd(48)} ${ms.toFixed(1).padStart(8)} ms`)
  console.log(`  qcow2 clone / cp: ${(clone / peer).toFixed(2)}x`)
} finally {
  rmSync(home, { recursive: true, force: true })
}
