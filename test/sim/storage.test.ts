import { describe, expect, it } from "vitest"
import { Prng } from "../../core/random.ts"
import { StorageChecker } from "../../sim/checkers/storage.ts"
import type { Sim } from "../../sim/events.ts"
import type { SimNode } from "../../sim/host.ts"
import { defaultSimOptions } from "../../sim/scenario.ts"
import { SimStorage } from "../../sim/storage.ts"
import { noVmmFaults, SimVmm } from "../../sim/vmm.ts"
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
    expect(disk.execute({ _tag: "ensurePool", pool }, 0).pool?.capacityBytes).toBe(3 * 1024 * 1024)
    const made = disk.execute(
      { _tag: "createVolume", pool, volume: { id: "a", sizeBytes: gib, format: "qcow2" } },
      0,
    )
    expect(made.volume).toMatchObject({ id: "a", capacityBytes: gib, allocationBytes: 1024 * 1024 })
    disk.pools.get("p")!.files.set("a", { ...made.volume!, allocationBytes: 2 * 1024 * 1024 })
    const refused = disk.execute(
      { _tag: "createVolume", pool, volume: { id: "b", sizeBytes: gib, format: "qcow2", cloneOf: "a" } },
      0,
    )
    expect(refused.error?.reason).toBe("no-space")
    expect([...disk.pools.get("p")!.files.keys()]).toEqual(["a"])
    expect(disk.observe([pool, { ...pool, id: "q" }], 1_000_000).map((seen) => seen.error?.reason)).toEqual([
      undefined,
      "no-such-pool",
    ])
  })

  it("the storage-attach checker fires when a volume that is not shareable is open in two active guests", () => {
    const violations: Array<string> = []
    const nodes: Array<SimNode> = []
    const sim = {
      nodes,
      violate: (checker: string, message: string) => {
        violations.push(`${checker}: ${message}`)
      },
    } as unknown as Sim
    const checker = new StorageChecker(sim)
    const shareable = new Set(["shared"])
    const store = {
      get: (kind: string, id: string) =>
        kind === "storage-volume"
          ? { value: new TextEncoder().encode(JSON.stringify({ shareable: shareable.has(id) })) }
          : undefined,
    }
    const vmm = new SimVmm(new Prng(1), noVmmFaults)
    const node = { id: "n1", vmm, core: { store } } as unknown as SimNode
    nodes.push(node)
    const define = (name: string, paths: ReadonlyArray<string>) => {
      const disks = paths.map((path) => ({
        target: "vda",
        path,
        bus: "virtio",
        format: "qcow2",
        readonly: false,
      }))
      vmm.execute(
        name,
        {
          _tag: "define",
          definition: { name, uuid: name, cpus: 1, memoryMiB: 64, disks, nics: [] },
        } as never,
        0,
      )
      vmm.execute(name, { _tag: "start" }, 0)
    }
    define("acp-a", ["/pools/p/data.qcow2", "/pools/p/shared.qcow2"])
    checker.domainActive("acp-a", node)
    define("acp-b", ["/pools/p/shared.qcow2"])
    checker.domainActive("acp-b", node)
    expect(violations).toEqual([])
    define("acp-c", ["/pools/p/data.qcow2"])
    checker.domainActive("acp-c", node)
    expect(violations).toEqual([
      "storage-attach: volume data (/pools/p/data.qcow2) is open in acp-c on n1 and in acp-a on n1, and it is not shareable",
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
    disk.execute({ _tag: "ensurePool", pool }, 0)
    const create = (id: string, sizeBytes: number) => {
      const call = { _tag: "createVolume" as const, pool, volume: { id, sizeBytes, format: "raw" as const } }
      disk.execute(call, 0)
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

  it("a host crash breaks off what runs on its disk: a create leaves a half-made image that takes space and is no volume", () => {
    const create = {
      _tag: "createVolume" as const,
      pool,
      volume: { id: "a", sizeBytes: gib, format: "qcow2" as const },
    }
    const disk = (seed: number) => {
      const made = new SimStorage(new Prng(seed), noFaults, 100 * 1024 * 1024)
      made.execute({ _tag: "ensurePool", pool }, 0)
      made.execute(create, 10_000)
      // A call whose answer has come is whole: a crash after it takes nothing.
      made.hostCrashed(20_000)
      made.execute({ ...create, volume: { ...create.volume, id: "b" } }, 30_000)
      made.hostCrashed(30_001)
      return made
    }
    // Half the calls a crash meets are broken off before their last step, half just after it.
    const runs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(disk)
    expect(runs.every((each) => each.pools.get("p")!.files.has("a"))).toBe(true)
    const after = runs.filter((each) => each.brokenOff === 0)
    expect(after.length).toBeGreaterThan(0)
    for (const each of after) expect([...each.pools.get("p")!.files.keys()]).toEqual(["a", "b"])
    const broken = runs.find((each) => each.brokenOff === 1)!
    expect([...broken.pools.get("p")!.files.keys()]).toEqual(["a"])
    expect(broken.partials()).toEqual(["p/b"])
    const seen = broken.observe([pool], 1_000_000)[0]!
    expect(seen.partials).toEqual(["b"])
    expect(seen.info?.allocationBytes).toBe(2 * 1024 * 1024)
    // Its next create trips over it (as btrfs's would) until it is discarded.
    expect(broken.execute({ ...create, volume: { ...create.volume, id: "b" } }, 40_000).error?.reason).toBe(
      "failed",
    )
    broken.execute({ _tag: "discardPartial", pool, volume: "b" }, 50_000)
    expect(broken.partials()).toEqual([])
    expect(broken.execute({ ...create, volume: { ...create.volume, id: "b" } }, 60_000).volume?.id).toBe("b")
  })

  // Runs where a host crashed while a create, snapshot or revert ran on its disk, and the call was
  // broken off (seeds 2 and 9 of 20 s runs with 12 systems, today): what it left is cleaned up,
  // every volume said available is on its disk.
  it.each([
    { seed: 2, durationMs: 20_000, systems: 12 },
    { seed: 9, durationMs: 20_000, systems: 12 },
  ])(
    "seed $seed: a crash inside a storage call breaks it off, and the cluster cleans up and converges",
    (run) => {
      const result = simulate({ ...defaultSimOptions, ...run })
      expect(result.violations).toEqual([])
      expect(result.converged).toBe(true)
      expect(result.storage.crashesInCall).toBeGreaterThan(0)
      expect(result.storage.brokenOff).toBeGreaterThan(0)
    },
  )

  // 1000015 and 1000017 caught the mutants storage-partial-left and storage-available-while-creating;
  // 2014 once left a system waiting for good on a volume the operator attached after its create had
  // failed for want of space (the operator now attaches only what is available, as a user would).
  it.each([
    { seed: 1000015, durationMs: 60_000, systems: 4, domains: 1 },
    { seed: 1000017, durationMs: 60_000, systems: 12, domains: 2 },
    { seed: 2014, durationMs: 20_000, systems: 12, domains: 1 },
  ])("seed $seed: no violations, converges", (run) => {
    const result = simulate({ ...defaultSimOptions, ...run })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("seed 2001: a look at the disk during a create does not see the volume before the create's last step", () => {
    // It once did, and its node published the volume available; a crash then broke the create
    // off, leaving the cluster told of a disk that was not there (storage-lost). The simulated
    // disk now shows a running create as the partial image it is writing, as the real drivers do.
    const result = simulate({ ...defaultSimOptions, seed: 2001, durationMs: 20_000, systems: 12, domains: 1 })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("a create still running shows as the partial image it writes, and whole once its answer is due", () => {
    const disk = new SimStorage(new Prng(1), noFaults, 100 * 1024 * 1024)
    disk.execute({ _tag: "ensurePool", pool }, 0)
    const made = disk.execute(
      { _tag: "createVolume", pool, volume: { id: "a", sizeBytes: gib, format: "raw" } },
      0,
    )
    const due = Math.max(1_000, made.latencyUs)
    expect(disk.observe([pool], due - 1)[0]).toMatchObject({ volumes: [], partials: ["a"] })
    const whole = disk.observe([pool], due)[0]!
    expect(whole.volumes?.map((volume) => volume.id)).toEqual(["a"])
    expect(whole.partials).toBeUndefined()
  })
})
