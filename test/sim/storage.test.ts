import { describe, expect, it } from "vitest"
import { Prng } from "../../core/random.ts"
import { StorageChecker } from "../../sim/checkers/storage.ts"
import type { Sim } from "../../sim/events.ts"
import type { SimNode } from "../../sim/host.ts"
import { defaultSimOptions } from "../../sim/scenario.ts"
import { SimStorage } from "../../sim/storage.ts"
import { simulate } from "../../sim/world.ts"

const gib = 1024 ** 3
const noFaults = { failurePermille: 0, slowPermille: 0, slowUs: 0 }
const pool = { id: "p", driver: "dir" as const, path: "/pools/p" }

describe("storage in the simulator", () => {
  it("runs with the systems: pools built on every node, volumes made, grown and deleted, every checker quiet, byte for byte again", () => {
    const options = { ...defaultSimOptions, seed: 11, durationMs: 15_000, systems: 8 }
    const first = simulate(options)
    expect(first.violations).toEqual([])
    expect(first.converged).toBe(true)
    // Five pools built, and volume calls beyond them.
    expect(first.storage.calls).toBeGreaterThan(10)
    expect(first.storage.volumes).toBeGreaterThan(0)
    expect(simulate(options).traceHash).toBe(first.traceHash)
  })

  it("the simulated disk refuses a clone that does not fit and keeps nothing of it", () => {
    const disk = new SimStorage(new Prng(1), noFaults, 3 * 1024 * 1024)
    expect(disk.execute({ _tag: "ensurePool", pool }).pool?.capacityBytes).toBe(3 * 1024 * 1024)
    const made = disk.execute({
      _tag: "createVolume",
      pool,
      volume: { id: "a", sizeBytes: gib, format: "qcow2" },
    })
    expect(made.volume).toMatchObject({ id: "a", capacityBytes: gib, allocationBytes: 1024 * 1024 })
    disk.pools.get("p")!.files.set("a", { ...made.volume!, allocationBytes: 2 * 1024 * 1024 })
    const refused = disk.execute({
      _tag: "createVolume",
      pool,
      volume: { id: "b", sizeBytes: gib, format: "qcow2", cloneOf: "a" },
    })
    expect(refused.error?.reason).toBe("no-space")
    expect([...disk.pools.get("p")!.files.keys()]).toEqual(["a"])
    expect(disk.observe([pool, { ...pool, id: "q" }]).map((seen) => seen.error?.reason)).toEqual([
      undefined,
      "no-such-pool",
    ])
  })

  it("the checkers fire: a pool that gives more than it has, a volume deleted that no client deleted", () => {
    const violations: Array<string> = []
    const sim = {
      violate: (checker: string, message: string) => {
        violations.push(`${checker}: ${message}`)
      },
    } as unknown as Sim
    const checker = new StorageChecker(sim)
    const disk = new SimStorage(new Prng(1), noFaults, 10 * gib)
    const node = { id: "n1", storage: disk } as unknown as SimNode
    checker.poolCreated("p", 1.5)
    disk.execute({ _tag: "ensurePool", pool })
    const create = (id: string, sizeBytes: number) => {
      const call = { _tag: "createVolume" as const, pool, volume: { id, sizeBytes, format: "raw" as const } }
      disk.execute(call)
      checker.executed(node, call, false)
    }
    create("a", 8 * gib)
    create("b", 7 * gib)
    expect(violations).toEqual([])
    create("c", 1 * gib)
    expect(violations).toEqual([
      `storage-space: pool p on n1 gives ${16 * gib} bytes after createVolume of c: more than its ${15 * gib}`,
    ])
    checker.clientDeleted("a")
    checker.executed(node, { _tag: "deleteVolume", pool, volume: "a" }, false)
    checker.executed(node, { _tag: "deleteVolume", pool, volume: "b" }, false)
    expect(violations.slice(1)).toEqual([
      "storage-delete: n1 deleted volume b from pool p, which no client deleted",
    ])
    // A call the driver refused did nothing: nothing to check.
    checker.executed(node, { _tag: "deleteVolume", pool, volume: "c" }, true)
    expect(violations).toHaveLength(2)
  })
})
