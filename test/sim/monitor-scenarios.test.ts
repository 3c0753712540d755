import { describe, expect, it } from "vitest"
import { defaultSimOptions, type FaultEvent } from "../../sim/scenario.ts"
import { type SimResult, simulate } from "../../sim/world.ts"

const nodes = 5
const calm = {
  rates: { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 },
  driftPpm: [150, -150, 80, -80, 0],
}
const run = (events: ReadonlyArray<FaultEvent>, durationMs = 20_000): SimResult =>
  simulate({ ...defaultSimOptions, seed: 1, nodes, durationMs, schedule: { ...calm, events } })

/** The node that is primary at `atMs` in a run without faults (the same seed elects the same node). */
const primaryAt = (atMs: number): number => {
  const interval = run([]).primaries.find((candidate) => candidate.fromMs <= atMs && candidate.toMs > atMs)
  expect(interval).toBeDefined()
  return Number(interval!.node.slice(1)) - 1
}

describe("monitor in the simulator", () => {
  it("crash the primary: a new primary holds a lease within 5 s, in a higher term", () => {
    const primary = primaryAt(5_000)
    const result = run([{ kind: "crash", atMs: 5_000, durationMs: 10_000, node: primary }])
    expect(result.violations).toEqual([])
    expect(result.failoverMs.samples).toBe(1)
    expect(result.failoverMs.max!).toBeLessThan(5_000)
    const after = result.primaries.find((interval) => interval.fromMs > 5_000)!
    expect(after.node).not.toBe(`n${primary + 1}`)
    expect(after.term).toBeGreaterThan(result.primaries[0]!.term)
  })

  it("isolate the primary, asymmetric (it hears, nobody hears it): it fences, another takes over, never two leases at once", () => {
    const primary = primaryAt(5_000)
    const result = run([{ kind: "asymmetric", atMs: 5_000, durationMs: 8_000, node: primary }])
    expect(result.violations).toEqual([])
    expect(result.fences).toBeGreaterThan(0)
    expect(result.failoverMs.max!).toBeLessThan(5_000)
    expect(result.converged).toBe(true)
  })

  it("partition 2|3 with the primary among the 2: the 3 elect a primary, the 2 have none and fence, and the alarm clears after the heal", () => {
    const primary = primaryAt(5_000)
    const minority = [primary, (primary + 1) % nodes]
    const result = run([{ kind: "partition", atMs: 5_000, durationMs: 12_000, side: minority }], 25_000)
    expect(result.violations).toEqual([])
    const during = result.primaries.filter((interval) => interval.fromMs > 5_000 && interval.fromMs < 17_000)
    expect(during.length).toBeGreaterThan(0)
    for (const interval of during)
      expect(minority.map((index) => `n${index + 1}`)).not.toContain(interval.node)
    expect(result.fences).toBeGreaterThanOrEqual(2)
    expect(result.alarmsRaised).toBeGreaterThanOrEqual(2)
    expect(result.converged).toBe(true)
  })

  it("a flapping link of 400 ms raises no alarm (hysteresis)", () => {
    const result = run([{ kind: "flapping", atMs: 3_000, durationMs: 10_000, node: 2, periodMs: 400 }])
    expect(result.violations).toEqual([])
    expect(result.alarmsRaised).toBe(0)
  })
})
