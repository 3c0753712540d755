/**
 * The libvirt adapter against libvirt's built-in test driver (`test:///default`): real libvirt,
 * real FFI, no daemon. Needs `libvirt0` (installed by `.ci/run`).
 */
import { Effect, Exit, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { LibvirtVmmLayer } from "../../../adapters/hypervisor/libvirt.ts"
import { type DomainDefinition, Vmm, VmmError } from "../../../core/ports/vmm.ts"

const layer = LibvirtVmmLayer({ uri: "test:///default" })

const withVmm = <A, E>(body: (vmm: Vmm["Service"]) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(Vmm, body).pipe(Effect.provide(Layer.fresh(layer)))))

let serial = 0
const definition = (overrides: Partial<DomainDefinition> = {}): DomainDefinition => {
  serial++
  return {
    name: `acp-test-${serial}`,
    uuid: `6f1c2a3b-0000-4000-8000-${serial.toString(16).padStart(12, "0")}`,
    cpus: 2,
    memoryMiB: 128,
    disks: [
      {
        target: "vda",
        path: "/var/lib/acp/volumes/root.qcow2",
        bus: "virtio",
        format: "qcow2",
        readonly: false,
      },
    ],
    nics: [{ mac: "52:54:00:12:34:56", model: "virtio" }],
    ...overrides,
  }
}

/** The error an effect failed with, or a test failure if it succeeded. */
const failureOf = <A>(effect: Effect.Effect<A, VmmError>) =>
  Effect.exit(effect).pipe(
    Effect.map((exit) => {
      if (Exit.isSuccess(exit)) throw new Error("expected a failure")
      const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
      if (error === undefined || !(error.error instanceof VmmError))
        throw new Error(`unexpected cause ${exit.cause}`)
      return error.error
    }),
  )

describe("libvirt adapter on the test driver", () => {
  it("takes a domain through its whole lifecycle, and libvirt reports each state", async () => {
    const spec = definition()
    const states = await withVmm((vmm) =>
      Effect.gen(function* () {
        const seen: Array<string> = []
        const state = () => vmm.info(spec.name).pipe(Effect.map((info) => info.state))
        yield* vmm.define(spec)
        seen.push(yield* state())
        yield* vmm.start(spec.name)
        seen.push(yield* state())
        yield* vmm.suspend(spec.name)
        seen.push(yield* state())
        yield* vmm.resume(spec.name)
        seen.push(yield* state())
        yield* vmm.reboot(spec.name)
        seen.push(yield* state())
        yield* vmm.shutdown(spec.name)
        seen.push(yield* state())
        yield* vmm.start(spec.name)
        yield* vmm.destroy(spec.name)
        seen.push(yield* state())
        const listed = (yield* vmm.list).find((domain) => domain.name === spec.name)
        yield* vmm.undefine(spec.name)
        const after = (yield* vmm.list).some((domain) => domain.name === spec.name)
        return { seen, listed, after }
      }),
    )
    expect(states.seen).toEqual(["shutoff", "running", "paused", "running", "running", "shutoff", "shutoff"])
    expect(states.listed).toEqual({ name: expect.stringMatching(/^acp-test-/), state: "shutoff" })
    expect(states.after).toBe(false)
  })

  it("reports the definition's CPUs and memory, and I/O counters per disk and NIC", async () => {
    const spec = definition({ cpus: 3, memoryMiB: 256 })
    const { info, io } = await withVmm((vmm) =>
      Effect.gen(function* () {
        yield* vmm.define(spec)
        yield* vmm.start(spec.name)
        const info = yield* vmm.info(spec.name)
        const io = yield* vmm.io(spec.name, spec)
        yield* vmm.destroy(spec.name)
        yield* vmm.undefine(spec.name)
        return { info, io }
      }),
    )
    expect(info).toMatchObject({ name: spec.name, state: "running", cpus: 3, maxMemoryKiB: 256 * 1024 })
    expect(typeof info.cpuTimeNs).toBe("bigint")
    // The test driver makes its counters up, but they come through the real calls.
    expect(io.diskReadBytes).toBeGreaterThanOrEqual(0n)
    expect(io.netRxBytes).toBeGreaterThanOrEqual(0n)
  })

  it("attaches a disk to a stopped domain and detaches it again; a running one cannot hot-plug here", async () => {
    const spec = definition()
    const extra = {
      target: "vdb",
      path: "/var/lib/acp/volumes/data & more.qcow2",
      bus: "virtio",
      format: "qcow2",
      readonly: false,
    } as const
    const result = await withVmm((vmm) =>
      Effect.gen(function* () {
        yield* vmm.define(spec)
        yield* vmm.attachDisk(spec.name, extra)
        const attached = yield* vmm.disks(spec.name)
        const twice = yield* failureOf(vmm.attachDisk(spec.name, extra))
        yield* vmm.start(spec.name)
        const running = yield* vmm.info(spec.name)
        const hotplug = yield* failureOf(vmm.detachDisk(spec.name, extra))
        yield* vmm.destroy(spec.name)
        yield* vmm.detachDisk(spec.name, extra)
        const detached = yield* vmm.disks(spec.name)
        const missing = yield* failureOf(vmm.detachDisk(spec.name, extra))
        yield* vmm.undefine(spec.name)
        return { attached, twice, running, hotplug, detached, missing }
      }),
    )
    expect(result.attached).toEqual([
      { target: "vda", path: "/var/lib/acp/volumes/root.qcow2" },
      { target: "vdb", path: "/var/lib/acp/volumes/data & more.qcow2" },
    ])
    expect(result.twice).toMatchObject({ reason: "invalid-state", detail: "a disk is already on vdb" })
    expect(result.running.state).toBe("running")
    expect(result.hotplug).toMatchObject({ reason: "unsupported", operation: "detach" })
    expect(result.hotplug.detail).toMatch(/cannot hot-plug/)
    expect(result.detached).toEqual([{ target: "vda", path: "/var/lib/acp/volumes/root.qcow2" }])
    expect(result.missing).toMatchObject({ reason: "invalid-state", detail: "no disk is on vdb" })
  })

  it("maps libvirt's failures into typed errors naming the operation and the system", async () => {
    const spec = definition()
    const errors = await withVmm((vmm) =>
      Effect.gen(function* () {
        yield* vmm.define(spec)
        yield* vmm.start(spec.name)
        const startRunning = yield* failureOf(vmm.start(spec.name))
        const resumeRunning = yield* failureOf(vmm.resume(spec.name))
        const undefineRunning = yield* failureOf(vmm.undefine(spec.name))
        const unknown = yield* failureOf(vmm.start("acp-no-such-system"))
        const badMac = yield* failureOf(
          vmm.define(definition({ nics: [{ mac: "52:54:00:zz:00:01", model: "virtio" }] })),
        )
        const console = yield* failureOf(vmm.console(spec.name, 4096))
        yield* vmm.destroy(spec.name)
        const destroyStopped = yield* failureOf(vmm.destroy(spec.name))
        yield* vmm.undefine(spec.name)
        return { startRunning, resumeRunning, undefineRunning, unknown, badMac, console, destroyStopped }
      }),
    )
    expect(errors.startRunning).toMatchObject({
      reason: "invalid-state",
      operation: "start",
      system: spec.name,
    })
    expect(errors.startRunning.detail).toMatch(/running/)
    expect(errors.resumeRunning).toMatchObject({ reason: "invalid-state", operation: "resume" })
    expect(errors.undefineRunning).toMatchObject({ reason: "invalid-state", operation: "undefine" })
    expect(errors.unknown).toMatchObject({
      reason: "no-such-system",
      operation: "start",
      system: "acp-no-such-system",
      code: 42,
    })
    expect(errors.badMac).toMatchObject({ reason: "invalid-definition", operation: "define" })
    expect(errors.badMac.detail).toMatch(/mac/i)
    expect(errors.console).toMatchObject({ reason: "unsupported", operation: "console" })
    expect(errors.destroyStopped).toMatchObject({ reason: "invalid-state", operation: "destroy", code: 55 })
    expect(errors.startRunning.message).toContain(`start ${spec.name}: invalid-state`)
  })

  it("frees what libvirt hands over: 20,000 calls leave the heap where it was", async () => {
    const spec = definition()
    const growth = await withVmm((vmm) =>
      Effect.gen(function* () {
        yield* vmm.define(spec)
        yield* vmm.start(spec.name)
        const round = Effect.forEach(Array.from({ length: 2_000 }), () => vmm.io(spec.name, spec), {
          discard: true,
        })
        // The allocator and the JIT settle over the first few thousand calls.
        for (let index = 0; index < 5; index++) yield* round
        const before = process.memoryUsage().rss
        for (let index = 0; index < 10; index++) yield* round
        const after = process.memoryUsage().rss
        yield* vmm.destroy(spec.name)
        yield* vmm.undefine(spec.name)
        return after - before
      }),
    )
    // Each io call copies out one domain XML (~1 KiB): 20,000 leaked copies would be ~20 MiB.
    expect(growth).toBeLessThan(16 * 1024 * 1024)
  }, 60_000)
})
