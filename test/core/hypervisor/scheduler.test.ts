import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  liveNodes,
  type NodeCapacity,
  type PlacedSystem,
  place,
  type SchedulerPolicy,
} from "../../../core/hypervisor/scheduler.ts"

const nodeArb = (id: string) =>
  fc.record({
    id: fc.constant(id),
    alive: fc.boolean(),
    fenced: fc.boolean(),
    roles: fc.constantFrom([], ["compute"], ["storage"]),
    cpuCount: fc.integer({ min: 1, max: 64 }),
    memoryMiB: fc.integer({ min: 0, max: 65_536 }),
    cpuUsageHundredths: fc.integer({ min: 0, max: 10_000 }),
  })

const clusterArb = fc
  .integer({ min: 0, max: 6 })
  .chain((count) => fc.tuple(...Array.from({ length: count }, (_, index) => nodeArb(`n${index + 1}`))))
  .chain((nodes: ReadonlyArray<NodeCapacity>) =>
    fc.record({
      nodes: fc.constant(nodes),
      placed: fc.array(
        fc.record({
          id: fc.integer({ min: 0, max: 40 }).map((index) => `s${index}`),
          node: nodes.length === 0 ? fc.constant("n1") : fc.constantFrom(...nodes.map((node) => node.id)),
          cpus: fc.integer({ min: 1, max: 16 }),
          memoryMiB: fc.integer({ min: 16, max: 16_384 }),
          antiAffinity: fc.array(
            fc.integer({ min: 0, max: 40 }).map((index) => `s${index}`),
            { maxLength: 3 },
          ),
        }),
        { maxLength: 20 },
      ),
      request: fc.record({
        id: fc.constant("new"),
        cpus: fc.integer({ min: 1, max: 16 }),
        memoryMiB: fc.integer({ min: 16, max: 16_384 }),
        affinity: fc.array(
          fc.integer({ min: 0, max: 40 }).map((index) => `s${index}`),
          { maxLength: 2 },
        ),
        antiAffinity: fc.array(
          fc.integer({ min: 0, max: 40 }).map((index) => `s${index}`),
          { maxLength: 3 },
        ),
      }),
      policy: fc.record({
        memoryOvercommitPercent: fc.integer({ min: 50, max: 200 }),
        cpuOvercommitPercent: fc.integer({ min: 100, max: 800 }),
      }),
    }),
  )

const committed = (placed: ReadonlyArray<PlacedSystem>, node: string) =>
  placed.filter((system) => system.node === node)

describe("scheduler", () => {
  it("never places on a dead, fenced or non-compute node, nor beyond memory or CPU limits, nor against (anti-)affinity", () => {
    fc.assert(
      fc.property(clusterArb, ({ nodes, placed, request, policy }) => {
        const decision = place(request, nodes, placed, policy as SchedulerPolicy)
        if (decision._tag === "Unplaceable") return
        const node = nodes.find((candidate) => candidate.id === decision.node)!
        expect(node.alive && !node.fenced).toBe(true)
        expect(node.roles.length === 0 || node.roles.includes("compute")).toBe(true)
        const here = committed(placed, node.id)
        const memory = here.reduce((sum, system) => sum + system.memoryMiB, 0) + request.memoryMiB
        expect(memory).toBeLessThanOrEqual((node.memoryMiB * policy.memoryOvercommitPercent) / 100)
        const cpus = here.reduce((sum, system) => sum + system.cpus, 0) + request.cpus
        expect(cpus).toBeLessThanOrEqual((node.cpuCount * policy.cpuOvercommitPercent) / 100)
        for (const system of here) {
          expect(request.antiAffinity).not.toContain(system.id)
          expect(system.antiAffinity).not.toContain(request.id)
        }
        for (const partner of placed.filter((system) => request.affinity.includes(system.id)))
          expect(partner.node).toBe(node.id)
      }),
      { numRuns: 2_000 },
    )
  })

  it("is deterministic: the same input in any order of nodes gives the same decision", () => {
    fc.assert(
      fc.property(clusterArb, fc.integer(), ({ nodes, placed, request, policy }, shift) => {
        const first = place(request, nodes, placed, policy as SchedulerPolicy)
        const rotated = nodes.map((_, index) => nodes[(index + Math.abs(shift)) % nodes.length]!)
        const second = place(request, rotated, [...placed].reverse(), policy as SchedulerPolicy)
        expect(second).toEqual(first)
      }),
      { numRuns: 1_000 },
    )
  })

  it("places when some node can take it, and explains every node's verdict", () => {
    const nodes: ReadonlyArray<NodeCapacity> = [
      { id: "a", alive: true, fenced: false, roles: [], cpuCount: 4, memoryMiB: 1024, cpuUsageHundredths: 0 },
      {
        id: "b",
        alive: true,
        fenced: false,
        roles: [],
        cpuCount: 4,
        memoryMiB: 4096,
        cpuUsageHundredths: 9_000,
      },
      {
        id: "c",
        alive: false,
        fenced: false,
        roles: [],
        cpuCount: 64,
        memoryMiB: 65_536,
        cpuUsageHundredths: 0,
      },
    ]
    const placed = [{ id: "db", node: "b", cpus: 2, memoryMiB: 1024, antiAffinity: ["web"] }]
    const decision = place(
      { id: "web", cpus: 1, memoryMiB: 512, affinity: [], antiAffinity: [] },
      nodes,
      placed,
    )
    expect(decision).toEqual({
      _tag: "Placed",
      node: "a",
      verdicts: [
        { node: "a", eligible: true, reason: "512 MiB free after placement", freeMemoryMiBAfter: 512 },
        { node: "b", eligible: false, reason: "anti-affinity with db", freeMemoryMiBAfter: 2560 },
        { node: "c", eligible: false, reason: "not alive", freeMemoryMiBAfter: 65024 },
      ],
    })
    const big = place({ id: "big", cpus: 1, memoryMiB: 8192, affinity: [], antiAffinity: [] }, nodes, placed)
    expect(big._tag).toBe("Unplaceable")
    expect(big.verdicts[1]?.reason).toBe("memory: 1024 + 8192 MiB > 4096 MiB (100% of 4096)")
  })

  it("excludes a node whose hypervisor cannot run systems, giving the service's own reason", () => {
    const node = {
      id: "a",
      alive: true,
      fenced: false,
      roles: [],
      cpuCount: 4,
      memoryMiB: 1024,
      cpuUsageHundredths: 0,
    }
    const reason = "hypervisor backing-off: cannot load libvirt.so.0 (apt-get install libvirt0)"
    const decision = place(
      { id: "web", cpus: 1, memoryMiB: 64, affinity: [], antiAffinity: [] },
      [
        { ...node, unavailable: reason },
        { ...node, id: "b" },
      ],
      [],
    )
    expect(decision).toMatchObject({ _tag: "Placed", node: "b" })
    expect(decision.verdicts[0]).toMatchObject({ node: "a", eligible: false, reason })
    expect(
      liveNodes([
        { ...node, alive: false },
        { ...node, id: "b", fenced: true },
        { ...node, id: "c" },
      ]),
    ).toEqual(["c"])
  })
})
