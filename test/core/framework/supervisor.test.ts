import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  defaultSupervisorTimings,
  type Input,
  type Output,
  Supervisor,
} from "../../../core/framework/supervisor.ts"
import { serviceLifecycle } from "../../../core/lifecycle/tables.ts"

const services = [
  { name: "cdb", after: [] },
  { name: "monitor", after: ["cdb"] },
  { name: "api", after: ["cdb"] },
  { name: "agent", after: ["api"] },
]
const make = () => new Supervisor({ ...defaultSupervisorTimings, services })

/** A driver that answers every Start with Started and every Stop with Stopped, at once. */
const obliging = (supervisor: Supervisor, input: Input, nowMs: number): Array<Output> => {
  const seen: Array<Output> = []
  const queue: Array<Input> = [input]
  for (let steps = 0; queue.length > 0 && steps < 100; steps++) {
    for (const output of supervisor.handle(queue.shift()!, nowMs)) {
      seen.push(output)
      if (output._tag === "Start") queue.push({ _tag: "Started", name: output.name })
      if (output._tag === "Stop") queue.push({ _tag: "Stopped", name: output.name })
    }
  }
  return seen
}

const input = fc.oneof(
  fc.constant<Input>({ _tag: "StartAll" }),
  fc.constant<Input>({ _tag: "StopAll" }),
  fc.constant<Input>({ _tag: "DeadlineReached" }),
  fc.record({
    _tag: fc.constantFrom("Started" as const, "Stopped" as const),
    name: fc.constantFrom("cdb", "monitor", "api", "agent", "ghost"),
  }),
  fc.record({
    _tag: fc.constant("Failed" as const),
    name: fc.constantFrom("cdb", "monitor", "api", "agent", "ghost"),
    reason: fc.constant("boom"),
  }),
)

describe("supervisor", () => {
  it("any sequence of inputs keeps every service inside its lifecycle, never throws, and never starts a service before its dependencies run", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(input, fc.nat(5_000)), { maxLength: 80 }), (steps) => {
        const supervisor = make()
        let nowMs = 0
        for (const [step, advanceMs] of steps) {
          nowMs += advanceMs
          const running = new Set(
            services.map((service) => service.name).filter((name) => supervisor.stateOf(name) === "running"),
          )
          for (const output of supervisor.handle(step, nowMs)) {
            if (output._tag === "StateChanged" && output.state === "running") running.add(output.name)
            if (output._tag === "Start") {
              const service = services.find((candidate) => candidate.name === output.name)!
              for (const dependency of service.after) expect(supervisor.stateOf(dependency)).toBe("running")
            }
          }
          for (const service of services)
            expect(serviceLifecycle.states).toContain(supervisor.stateOf(service.name))
        }
      }),
      { numRuns: 400 },
    )
  })

  it("starts in dependency order and stops in the reverse order", () => {
    const supervisor = make()
    const started = obliging(supervisor, { _tag: "StartAll" }, 0)
      .filter((output) => output._tag === "Start")
      .map((output) => output.name)
    expect(started.indexOf("cdb")).toBeLessThan(started.indexOf("api"))
    expect(started.indexOf("api")).toBeLessThan(started.indexOf("agent"))
    for (const service of services) expect(supervisor.stateOf(service.name)).toBe("running")
    const stopped = obliging(supervisor, { _tag: "StopAll" }, 10)
      .filter((output) => output._tag === "Stop")
      .map((output) => output.name)
    expect(stopped.indexOf("agent")).toBeLessThan(stopped.indexOf("api"))
    expect(stopped.indexOf("api")).toBeLessThan(stopped.indexOf("cdb"))
    for (const service of services) expect(supervisor.stateOf(service.name)).toBe("stopped")
  })

  it("restarts a failed service after a back-off that doubles, up to the cap, and reports each change with its reason", () => {
    const supervisor = make()
    obliging(supervisor, { _tag: "StartAll" }, 0)
    const delays: Array<number> = []
    let nowMs = 1_000
    for (let failure = 0; failure < 12; failure++) {
      const outputs = supervisor.handle({ _tag: "Failed", name: "api", reason: "port in use" }, nowMs)
      expect(outputs).toContainEqual(
        expect.objectContaining({
          _tag: "StateChanged",
          name: "api",
          state: "failed",
          reason: "port in use",
        }),
      )
      const retryAt = outputs.find((output) => output._tag === "ArmDeadline")!
      delays.push((retryAt as { atMs: number }).atMs - nowMs)
      nowMs = (retryAt as { atMs: number }).atMs
      expect(obliging(supervisor, { _tag: "DeadlineReached" }, nowMs)).toContainEqual({
        _tag: "Start",
        name: "api",
      })
    }
    expect(delays.slice(0, 5)).toEqual([100, 200, 400, 800, 1600])
    expect(Math.max(...delays)).toBe(defaultSupervisorTimings.backoffMaxMs)
  })

  it("forgets past failures once a service has run stably", () => {
    const supervisor = make()
    obliging(supervisor, { _tag: "StartAll" }, 0)
    for (let failure = 0; failure < 5; failure++) {
      const outputs = supervisor.handle({ _tag: "Failed", name: "monitor", reason: "x" }, 1_000 * failure)
      const at = (outputs.find((output) => output._tag === "ArmDeadline") as { atMs: number }).atMs
      obliging(supervisor, { _tag: "DeadlineReached" }, at)
    }
    supervisor.handle({ _tag: "DeadlineReached" }, 10_000_000)
    const after = supervisor.handle({ _tag: "Failed", name: "monitor", reason: "x" }, 10_000_000)
    expect(
      (after.find((output) => output._tag === "ArmDeadline") as { atMs: number }).atMs - 10_000_000,
    ).toBe(100)
  })

  it("reports the last failure while the service backs off and starts again, and drops it once it runs", () => {
    const supervisor = make()
    obliging(supervisor, { _tag: "StartAll" }, 0)
    const failed = supervisor.handle(
      { _tag: "Failed", name: "api", reason: "cannot load libvirt.so.0" },
      1_000,
    )
    expect(failed).toContainEqual(
      expect.objectContaining({ state: "backing-off", lastError: "cannot load libvirt.so.0" }),
    )
    const retryAt = (failed.find((output) => output._tag === "ArmDeadline") as { atMs: number }).atMs
    const restarted = supervisor.handle({ _tag: "DeadlineReached" }, retryAt)
    expect(restarted).toContainEqual(
      expect.objectContaining({ name: "api", state: "starting", lastError: "cannot load libvirt.so.0" }),
    )
    const running = supervisor.handle({ _tag: "Started", name: "api" }, retryAt + 1)
    const change = running.find((output) => output._tag === "StateChanged" && output.name === "api")
    expect(change).toEqual({ _tag: "StateChanged", name: "api", state: "running", restarts: 1 })
  })
  it("rejects an event the lifecycle does not allow, naming the service and its state", () => {
    const outputs = make().handle({ _tag: "Started", name: "api" }, 0)
    expect(outputs).toContainEqual(
      expect.objectContaining({
        _tag: "Rejected",
        rejection: expect.objectContaining({ id: "api", state: "stopped", event: "started" }),
      }),
    )
  })
})
