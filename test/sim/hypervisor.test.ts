import { describe, expect, it } from "vitest"
import { defaultSimOptions, type FaultEvent, type FaultName } from "../../sim/scenario.ts"
import { haBoundMs, type SimResult, simulate } from "../../sim/world.ts"

const nodes = 5
const calm = {
  rates: { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 },
  driftPpm: [150, -150, 80, -80, 0],
}
const run = (
  events: ReadonlyArray<FaultEvent>,
  options: { durationMs?: number; faults?: ReadonlyArray<FaultName>; seed?: number } = {},
): SimResult =>
  simulate({
    ...defaultSimOptions,
    seed: options.seed ?? 1,
    nodes,
    durationMs: options.durationMs ?? 25_000,
    systems: 10,
    writesPerSec: 50,
    ...(options.faults === undefined ? {} : { faults: options.faults }),
    schedule: { ...calm, events },
  })

/** The node the scheduler gave the most HA systems to (placement happens before any fault). */
const busiestHaNode = (): { index: number; systems: ReadonlyArray<string> } => {
  const created = run([]).hypervisor.created.filter((system) => system.ha)
  const counts = new Map<string, Array<string>>()
  for (const { system, node } of created) counts.set(node, [...(counts.get(node) ?? []), system])
  const [node, systems] = [...counts].sort((left, right) => right[1].length - left[1].length)[0]!
  return { index: Number(node.slice(1)) - 1, systems }
}

describe("hypervisor in the simulator", () => {
  it("without faults, every system runs where the scheduler put it, on one node only", () => {
    const result = run([])
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
    expect(result.hypervisor.created).toHaveLength(10)
    expect(new Set(result.hypervisor.created.map((system) => system.node)).size).toBeGreaterThan(1)
    expect(result.hypervisor.driverCalls).toBeGreaterThanOrEqual(20)
  })

  it("crash the node running HA systems: each runs on another node within 15 virtual seconds, never on two", () => {
    const busiest = busiestHaNode()
    // At 10 s: the HA systems run, placed by the first primary through the decision log.
    const result = run([{ kind: "crash", atMs: 10_000, durationMs: 30_000, node: busiest.index }], {
      durationMs: 30_000,
    })
    expect(result.violations).toEqual([])
    expect(result.hypervisor.failoverMs.samples).toBe(busiest.systems.length)
    expect(result.hypervisor.failoverMs.max!).toBeLessThan(haBoundMs)
    expect(result.converged).toBe(true)
  })

  it("cut that node off (a partition of one): it stops its HA systems before they start elsewhere, and does not take them back after the heal", () => {
    const busiest = busiestHaNode()
    const result = run([{ kind: "partition", atMs: 10_000, durationMs: 15_000, side: [busiest.index] }])
    expect(result.violations).toEqual([])
    expect(result.hypervisor.haActions).toBeGreaterThanOrEqual(busiest.systems.length)
    expect(result.converged).toBe(true)
  })

  it("the window a placement once had (seen only by its target, the primary lost, a new one elected on the other side) runs no system twice", () => {
    // Cut the busiest HA node off: the primary moves its first HA system a few seconds later.
    const busiest = busiestHaNode()
    const cut = { kind: "partition", atMs: 10_000, durationMs: 15_000, side: [busiest.index] } as const
    const first = run([cut]).hypervisor.moves.find((move) => move.from === `n${busiest.index + 1}`)!
    const primary = Number(first.by.slice(1)) - 1
    const target = Number(first.to.slice(1)) - 1
    // The same run (the same seed, the same schedule until then), but 100 ms before that move the
    // lost node rejoins the others and the primary and the move's target are cut off together:
    // the primary, still leased, proposes the move, which only its target hears.
    const splitMs = first.atMs - 100
    const result = run([
      { ...cut, durationMs: splitMs - cut.atMs },
      { kind: "partition", atMs: splitMs, durationMs: 10_000, side: [primary, target] },
    ])
    const moved = result.hypervisor.moves.find(
      (move) => move.system === first.system && move.to === first.to && move.atMs >= splitMs,
    )
    expect(moved?.by).toBe(first.by)
    const healMs = splitMs + 10_000
    const placed = result.hypervisor.placements.filter(
      (placement) =>
        placement.system === first.system && placement.atMs >= splitMs && placement.atMs < healMs,
    )
    // Never committed while the two were cut off; the other side, a majority, placed it again
    // (on the node it came from, which it hears again) without having seen it.
    expect(placed.some((placement) => placement.node === first.to)).toBe(false)
    expect(placed.some((placement) => placement.node === first.from)).toBe(true)
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("the vm checker is live: hosts without a fence (the unsafe fault no-fence) run a system twice under the same partition", () => {
    const busiest = busiestHaNode()
    const result = run([{ kind: "partition", atMs: 10_000, durationMs: 15_000, side: [busiest.index] }], {
      faults: [...defaultSimOptions.faults, "no-fence"],
    })
    expect(result.violations.some((violation) => violation.checker === "vm")).toBe(true)
  })

  it("a hypervisor service that cannot start (fault service-failure): the primary alarms it and health says why; its HA systems run again once it starts", () => {
    const busiest = busiestHaNode()
    const result = run([{ kind: "service-failure", atMs: 10_000, durationMs: 12_000, node: busiest.index }], {
      durationMs: 30_000,
    })
    expect(result.violations).toEqual([])
    expect(result.serviceAlarmChecks).toBe(1)
    expect(result.alarmsRaised).toBeGreaterThanOrEqual(1)
    // Every HA system the restart took down ran again (there, or moved by the primary once it could).
    expect(result.hypervisor.restartedInPlace + result.hypervisor.failoverMs.samples).toBeGreaterThanOrEqual(
      busiest.systems.length,
    )
    expect(result.converged).toBe(true)
  })

  it("the service-alarm checker is live: nodes that ignore their services (the unsafe fault no-service-alarm) are caught", () => {
    const busiest = busiestHaNode()
    const result = run([{ kind: "service-failure", atMs: 10_000, durationMs: 12_000, node: busiest.index }], {
      durationMs: 30_000,
      faults: [...defaultSimOptions.faults, "no-service-alarm"],
    })
    expect(result.violations.map((violation) => violation.checker)).toContain("service-alarm")
  })

  it("is deterministic with the hypervisor and guest faults on: the same seed twice gives the same trace", () => {
    const options = { ...defaultSimOptions, seed: 11, durationMs: 15_000, systems: 8 }
    const first = simulate(options)
    const second = simulate(options)
    expect(second.traceHash).toBe(first.traceHash)
    expect(second.hypervisor).toEqual(first.hypervisor)
    expect(first.hypervisor.driverCalls).toBeGreaterThan(0)
  })
})
