import { describe, expect, it } from "vitest"
import {
  defaultHypervisorTimings,
  HypervisorNode,
  type Output,
  type SystemSpecValue,
} from "../../../core/hypervisor/hypervisor.ts"
import { place, requestFor } from "../../../core/hypervisor/scheduler.ts"
import { encodeValue } from "../../../core/hypervisor/values.ts"
import { volumesIn } from "../../../core/hypervisor/view.ts"
import type { StorageReader } from "../../../core/storage/admission.ts"
import {
  admitSystemDisks,
  checkDisks,
  parseDiskFlag,
  pinsOf,
  planDisks,
} from "../../../core/storage/disks.ts"
import type { StoragePoolSpecValue, StorageVolumeSpecValue } from "../../../core/storage/storage.ts"

const gib = 1024 ** 3
const system = (disks: SystemSpecValue["disks"], node?: string): SystemSpecValue =>
  ({
    name: "web-1",
    ...(node === undefined ? {} : { node }),
    cpus: 1,
    memoryMiB: 64,
    disks,
    nics: [],
    ha: false,
    desired: "running",
    placement: { affinity: [], antiAffinity: [] },
  }) as unknown as SystemSpecValue
const disk = (volume: string, boot = false) =>
  ({ volume, bus: "virtio", boot }) as SystemSpecValue["disks"][number]

const storeOf = (
  pools: Record<string, StoragePoolSpecValue>,
  volumes: Record<string, StorageVolumeSpecValue>,
  systems: Record<string, SystemSpecValue> = {},
  capacityBytes = 10 * gib,
): StorageReader => ({
  pool: (id) => pools[id],
  volume: (id) => volumes[id],
  volumes: () => Object.entries(volumes).map(([id, spec]) => ({ id, spec })),
  systems: () => Object.entries(systems).map(([id, spec]) => ({ id, spec })),
  poolStats: (id) =>
    pools[id] === undefined
      ? undefined
      : { capacityBytes, allocationBytes: 0, availableBytes: capacityBytes },
})
const local = (node: string): StoragePoolSpecValue => ({
  name: "p",
  driver: "dir",
  node,
  shared: false,
})
const shared: StoragePoolSpecValue = { name: "nfs", driver: "netfs", shared: true }
const volume = (pool: string, sizeBytes = gib): StorageVolumeSpecValue => ({
  name: "v",
  pool,
  sizeBytes,
  format: "qcow2",
})

describe("--disk", () => {
  it("reads a new volume, an existing one and a clone, with format, bus and boot", () => {
    expect(parseDiskFlag("pool=p1,size=2GiB")).toEqual({ pool: "p1", sizeBytes: 2 * gib })
    expect(parseDiskFlag("volume=v1,bus=scsi,boot")).toEqual({ volume: "v1", bus: "scsi", boot: true })
    expect(parseDiskFlag("clone=base,size=20G,format=raw")).toEqual({
      clone: "base",
      sizeBytes: 20e9,
      format: "raw",
    })
  })

  it("names what is wrong in a bad one", () => {
    expect(parseDiskFlag("pool=p1")).toEqual({
      error: "--disk pool=p1: a new volume needs size=<size> (e.g. size=2GiB)",
    })
    expect(parseDiskFlag("pool=p1,size=lots")).toMatchObject({
      error: expect.stringContaining('"lots" is not a size'),
    })
    expect(parseDiskFlag("pool=p1,volume=v1,size=1G")).toMatchObject({
      error: expect.stringContaining("expected pool="),
    })
    expect(parseDiskFlag("volume=v1,colour=red")).toMatchObject({
      error: expect.stringContaining('unknown key "colour"'),
    })
    expect(parseDiskFlag("volume=v1,bus=usb")).toMatchObject({
      error: expect.stringContaining('bus "usb" is not one of'),
    })
  })
})

describe("a system's disks", () => {
  it("plans new volumes named after the system, clones in their source's pool, the first disk booting", () => {
    const store = storeOf({ p1: local("n2") }, { base: { ...volume("p1", 2 * gib), format: "raw" } })
    const plan = planDisks(store, "web-1", [], [{ pool: "p1", sizeBytes: gib }, { clone: "base" }])
    expect(plan).toEqual({
      volumes: [
        { id: "web-1-disk0", spec: { name: "web-1-disk0", pool: "p1", sizeBytes: gib, format: "qcow2" } },
        {
          id: "web-1-disk1",
          spec: { name: "web-1-disk1", pool: "p1", sizeBytes: 2 * gib, format: "raw", source: "base" },
        },
      ],
      disks: [disk("web-1-disk0", true), disk("web-1-disk1")],
    })
    const boot = planDisks(
      store,
      "web-1",
      [],
      [{ volume: "base" }, { pool: "p1", sizeBytes: gib, boot: true }],
    )
    expect("disks" in boot && boot.disks.map((d) => d.boot)).toEqual([false, true])
  })

  it("counts the volumes of one request against each other in the pool's space, and refuses two boot disks", () => {
    const store = storeOf({ p1: local("n2") }, {}, {}, 3 * gib)
    const plan = planDisks(
      store,
      "web-1",
      [],
      [
        { pool: "p1", sizeBytes: 2 * gib },
        { pool: "p1", sizeBytes: 2 * gib },
      ],
    )
    expect(plan).toMatchObject({ reason: "no-space" })
    expect((plan as { message: string }).message).toContain("web-1-disk1")
    expect(
      planDisks(
        store,
        "web-1",
        [],
        [
          { pool: "p1", sizeBytes: gib, boot: true },
          { pool: "p1", sizeBytes: gib, boot: true },
        ],
      ),
    ).toEqual({ reason: "invalid", message: "system web-1: only one disk can be the boot disk" })
    expect(planDisks(store, "web-1", [], [{ pool: "p9", sizeBytes: gib }])).toMatchObject({
      reason: "no-such-pool",
    })
    expect(planDisks(store, "web-1", [], [{ clone: "nope" }])).toEqual({
      reason: "invalid",
      message: "system web-1: there is no volume nope to clone",
    })
  })

  it("pins a system to the node of its local pool; a shared pool pins nothing; pools on two nodes are refused", () => {
    const store = storeOf(
      { p1: local("n2"), p2: local("n3"), nfs: shared },
      { a: volume("p1"), b: volume("p2"), s: volume("nfs") },
    )
    expect(checkDisks(store, "web-1", [disk("a")])).toEqual({
      pin: { node: "n2", reason: "disks: volume a is in pool p1, local to n2" },
    })
    expect(checkDisks(store, "web-1", [disk("s")])).toEqual({ pin: undefined })
    expect(checkDisks(store, "web-1", [disk("a"), disk("b")])).toMatchObject({
      reason: "invalid",
      message: expect.stringContaining("a in p1 on n2, b in p2 on n3"),
    })
    expect(checkDisks(store, "web-1", [disk("zz")])).toEqual({
      reason: "invalid",
      message: "system web-1: there is no storage-volume zz",
    })
    expect(admitSystemDisks(store, "web-1", system([disk("a")], "n1"))).toEqual({
      reason: "invalid",
      message: "system web-1 is on n1, but its disks: volume a is in pool p1, local to n2",
    })
  })

  it("refuses a volume that is another system's disk, unless it is shareable", () => {
    const volumes = { a: volume("p1"), s: { ...volume("p1"), shareable: true } }
    const store = storeOf({ p1: local("n2") }, volumes, { "db-1": system([disk("a"), disk("s")]) })
    expect(checkDisks(store, "web-1", [disk("a")])).toEqual({
      reason: "in-use",
      message: "storage-volume a is a disk of db-1 and is not shareable: detach it there first",
    })
    expect(checkDisks(store, "web-1", [disk("s")])).toMatchObject({ pin: { node: "n2" } })
    expect(checkDisks(store, "db-1", [disk("a")])).toMatchObject({ pin: { node: "n2" } })
    expect([...pinsOf(store).keys()]).toEqual(["db-1"])
  })

  it("the scheduler takes only the pinned node, and says why of the others", () => {
    const nodes = ["n1", "n2", "n3"].map((id) => ({
      id,
      alive: true,
      fenced: false,
      roles: [],
      cpuCount: 4,
      memoryMiB: id === "n1" ? 8_192 : 1_024,
      cpuUsageHundredths: 0,
    }))
    const pin = { node: "n2", reason: "disks: volume a is in pool p1, local to n2" }
    const decision = place(requestFor("web-1", system([]), pin), nodes, [])
    expect(decision._tag === "Placed" && decision.node).toBe("n2")
    expect(decision.verdicts.find((verdict) => verdict.node === "n1")).toMatchObject({
      eligible: false,
      reason: pin.reason,
    })
    expect(place(requestFor("web-1", system([])), nodes, [])).toMatchObject({ node: "n1" })
  })
})

describe("the hypervisor opens a system's volumes where its pool's node made them", () => {
  const bytes = (value: unknown) => encodeValue(value)
  const store = (state: string | undefined) => ({
    list: (kind: string) =>
      kind === "storage-pool"
        ? [{ id: "p1", value: bytes(local("n1")) }]
        : kind === "storage-volume"
          ? [{ id: "v1", value: bytes({ ...volume("p1"), format: "raw" }) }]
          : [],
    metaOf: (kind: string) =>
      kind === "storage-volume" && state !== undefined
        ? [{ node: "n1", value: bytes({ state, path: "/pools/p1/v1.raw" }) }]
        : [],
  })

  it("describes each volume as this node can open it", () => {
    expect(volumesIn("n1", store("available"))).toEqual([
      { id: "v1", format: "raw", path: "/pools/p1/v1.raw" },
    ])
    expect(volumesIn("n1", store("creating"))).toEqual([{ id: "v1", format: "raw", waiting: "is creating" }])
    expect(volumesIn("n2", store("available"))).toEqual([
      { id: "v1", format: "raw", waiting: "is in pool p1, local to n1" },
    ])
  })

  it("defines the domain only once the volume is available, with its path and format, and publishes its disks", () => {
    const core = new HypervisorNode({ ...defaultHypervisorTimings, self: "n1", volumeDir: "/v" }, 0)
    const authority = { leaderContactMs: 0, fenced: false }
    const spec = system([disk("v1", true)], "n1")
    const view = (state: string) => ({
      _tag: "ViewChanged" as const,
      view: { systems: [{ id: "web-1", spec }], tasks: [], volumes: volumesIn("n1", store(state)) },
    })
    const calls = (outputs: ReadonlyArray<Output>) => outputs.flatMap((o) => (o._tag === "Call" ? [o] : []))
    const meta = (outputs: ReadonlyArray<Output>) =>
      outputs.flatMap((o) => (o._tag === "WriteMeta" ? [o.meta] : [])).at(-1)
    core.handle(view("creating"), 0, authority)
    const waiting = core.handle({ _tag: "Observed", domains: [] }, 0, authority)
    expect(calls(waiting)).toEqual([])
    expect(meta(waiting)?.detail).toBe("waiting: volume v1 is creating")
    const ready = core.handle(view("available"), 10, authority)
    const define = calls(ready)[0]
    expect(define?.call).toEqual({
      _tag: "define",
      definition: expect.objectContaining({
        disks: [
          {
            target: "vda",
            path: "/pools/p1/v1.raw",
            bus: "virtio",
            format: "raw",
            readonly: false,
            boot: true,
          },
        ],
      }),
    })
    const defined = core.handle(
      { _tag: "CallDone", requestId: define!.requestId, observed: "shutoff" },
      20,
      authority,
    )
    expect(meta(defined)?.disks).toEqual([{ target: "vda", path: "/pools/p1/v1.raw" }])
    expect(meta(defined)?.detail).toBeUndefined()
  })
})
