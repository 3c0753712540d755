import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { pathBetween } from "../../../core/hypervisor/hypervisor.ts"
import { systemLifecycle } from "../../../core/lifecycle/tables.ts"
import { runHypervisor } from "../../../sim/hypervisor-run.ts"
import { noVmmFaults } from "../../../sim/vmm.ts"

const requestsArb = fc
  .array(
    fc.record({
      gapMs: fc.integer({ min: 1, max: 3_000 }),
      desired: fc.constantFrom("running", "stopped", "paused"),
    }),
    { maxLength: 8 },
  )
  .map((list) => {
    let atMs = 0
    return list.map(({ gapMs, desired }) => {
      atMs += gapMs
      return { atMs, desired } as const
    })
  })

const faultsArb = fc.record({
  startFailurePermille: fc.integer({ min: 0, max: 600 }),
  crashPermillePerSecond: fc.integer({ min: 0, max: 300 }),
  slowShutdownPermille: fc.integer({ min: 0, max: 500 }),
  slowShutdownUs: fc.integer({ min: 0, max: 5_000_000 }),
  ignoreShutdownPermille: fc.integer({ min: 0, max: 500 }),
})

const matches = (desired: string, observed: string) =>
  desired === "running"
    ? observed === "running"
    : desired === "paused"
      ? observed === "paused"
      : observed === "shutoff" || observed === "crashed"

describe("hypervisor reconcile loop (against the simulated VMM)", () => {
  it("any sequence of requests and driver faults ends in the desired state or a failed task with a reason; meta moves only along the lifecycle", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), requestsArb, faultsArb, (seed, requests, faults) => {
        // Faults during the requests; then a quiet minute in which the loop must settle.
        const run = runHypervisor(
          seed,
          requests,
          { ...faults, crashPermillePerSecond: 0 },
          (requests.at(-1)?.atMs ?? 0) + 60_000,
        )
        for (const state of run.metaStates) expect(systemLifecycle.states).toContain(state)
        for (let index = 1; index < run.metaStates.length; index++) {
          const [from, to] = [run.metaStates[index - 1]!, run.metaStates[index]!] as const
          // A meta write may change only its detail (why it is in that state): same state.
          if (from === to) continue
          expect(pathBetween(from as never, to as never).length, `${from} -> ${to}`).toBeGreaterThan(0)
        }
        const last = run.tasks.at(-1)!
        if (!matches(run.finalDesired, run.finalObserved)) {
          expect(last.state, JSON.stringify(last.log)).toBe("failed")
          expect(last.error ?? "").not.toBe("")
        } else expect(["succeeded", "failed", "cancelled"]).toContain(last.state)
        for (const task of run.tasks) expect(["succeeded", "failed", "cancelled"]).toContain(task.state)
      }),
      { numRuns: 150 },
    )
  })

  it("without faults every request's task succeeds or is superseded, and the domain ends as desired", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), requestsArb, (seed, requests) => {
        const run = runHypervisor(seed, requests, noVmmFaults, (requests.at(-1)?.atMs ?? 0) + 10_000)
        expect(matches(run.finalDesired, run.finalObserved)).toBe(true)
        expect(run.tasks.at(-1)?.state).toBe("succeeded")
        for (const task of run.tasks) expect(["succeeded", "cancelled"]).toContain(task.state)
      }),
      { numRuns: 100 },
    )
  })

  it("is deterministic: the same seed gives the same run", () => {
    const requests = [
      { atMs: 500, desired: "paused" },
      { atMs: 2_000, desired: "stopped" },
      { atMs: 4_000, desired: "running" },
    ] as const
    const faults = {
      startFailurePermille: 300,
      crashPermillePerSecond: 100,
      slowShutdownPermille: 300,
      slowShutdownUs: 3_000_000,
      ignoreShutdownPermille: 200,
    }
    expect(runHypervisor(7, requests, faults, 20_000)).toEqual(runHypervisor(7, requests, faults, 20_000))
  })
})
