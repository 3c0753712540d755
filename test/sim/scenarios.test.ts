import { describe, expect, it } from "vitest"
import { defaultElectionTimings } from "../../core/monitor/election.ts"
import {
  decodeSchedule,
  defaultSimOptions,
  drawnTopology,
  drawScenario,
  encodeSchedule,
  type FaultEvent,
  type Schedule,
  type SimOptions,
} from "../../sim/scenario.ts"
import { shrink } from "../../sim/shrink.ts"
import { eventsPerNodeSecond, simulate } from "../../sim/world.ts"

const calm = (nodes: number, events: ReadonlyArray<FaultEvent>): Schedule => ({
  rates: { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 },
  driftPpm: Array.from({ length: nodes }, () => 0),
  events,
})

const scenario = (overrides: Partial<SimOptions> & { readonly events: ReadonlyArray<FaultEvent> }) => {
  const nodes = overrides.nodes ?? 5
  const { events, ...rest } = overrides
  return simulate({ ...defaultSimOptions, seed: 1, ...rest, nodes, schedule: calm(nodes, events) })
}

describe("simulator scenarios", () => {
  it("partition 2|3 for 5 minutes, writes on both sides, heal: converges and keeps every acknowledged write", () => {
    const result = scenario({
      durationMs: 305_000,
      events: [{ kind: "partition", atMs: 2_000, durationMs: 300_000, side: [0, 1] }],
    })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
    const [a, b, c, d, e] = result.acknowledgedByNode as [number, number, number, number, number]
    expect(Math.min(a, b)).toBeGreaterThan(5_000)
    expect(Math.min(c, d, e)).toBeGreaterThan(5_000)
    // More than a node's retained changes were written on the other side: catching up took snapshots.
    expect(result.snapshotsInstalled).toBeGreaterThan(0)
  }, 120_000)

  it("crash a writer for 10 s while the others write, restart it: it keeps its acknowledged writes and catches up", () => {
    const result = scenario({
      durationMs: 30_000,
      events: [{ kind: "crash", atMs: 5_000, durationMs: 10_000, node: 2 }],
    })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("one-way isolation of a node for 20 s (it hears, nobody hears it): converges after the heal", () => {
    const result = scenario({
      durationMs: 30_000,
      events: [{ kind: "asymmetric", atMs: 3_000, durationMs: 20_000, node: 4 }],
    })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("three L2 domains joined by relays, the relay of d2 cut off for 10 s: every node converges, no change applied twice", () => {
    const result = scenario({
      nodes: 9,
      domains: 3,
      durationMs: 30_000,
      events: [{ kind: "partition", atMs: 5_000, durationMs: 10_000, side: [1] }],
    })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("a flapping link and 30% loss with duplication and reordering: converges after the heal", () => {
    const nodes = 5
    const result = simulate({
      ...defaultSimOptions,
      seed: 3,
      durationMs: 20_000,
      schedule: {
        rates: { lossPermille: 300, duplicatePermille: 100, jitterUs: 40_000 },
        driftPpm: [200, -200, 0, 100, -100].slice(0, nodes),
        events: [{ kind: "flapping", atMs: 1_000, durationMs: 15_000, node: 1, periodMs: 400 }],
      },
    })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })
})

describe("simulator determinism", () => {
  it("the same seed twice gives the same traceHash and the same figures", () => {
    const options = { ...defaultSimOptions, seed: 42, durationMs: 10_000 }
    const first = simulate(options)
    const second = simulate(options)
    expect(second.traceHash).toBe(first.traceHash)
    expect(second.events).toBe(first.events)
    expect(second.datagramsDelivered).toBe(first.datagramsDelivered)
  })

  it("different seeds give different traces", () => {
    const hashes = new Set(
      [1, 2, 3, 4, 5].map((seed) => simulate({ ...defaultSimOptions, seed, durationMs: 5_000 }).traceHash),
    )
    expect(hashes.size).toBe(5)
  })
})

describe("simulator checkers", () => {
  it("the canary checker fails when enabled, proving the checkers see every applied change", () => {
    const result = simulate({ ...defaultSimOptions, seed: 7, durationMs: 5_000, canary: true })
    expect(result.violations.some((violation) => violation.checker === "canary")).toBe(true)
  })

  it("crashes come inside steps too (after a part of a step's commit and outputs), and every acknowledged write survives them", () => {
    let inStep = 0
    for (let seed = 1; seed <= 12; seed++) {
      const result = simulate({
        ...defaultSimOptions,
        seed,
        durationMs: 20_000,
        faults: ["crash", "loss", "reordering"],
        systems: 4,
      })
      expect(result.violations, result.replay).toEqual([])
      inStep += result.crashesInStep
    }
    expect(inStep).toBeGreaterThan(3)
  })

  it("a node down for good (fault stay-down): the survivors converge on what they hold of its stream, its HA systems run elsewhere", () => {
    const result = scenario({
      durationMs: 20_000,
      systems: 8,
      events: [{ kind: "stay-down", atMs: 10_000, durationMs: 0, node: 4 }],
    })
    expect(result.violations, result.replay).toEqual([])
    expect(result.converged).toBe(true)
    // n5 ran two HA systems (vm5, vm6): both run elsewhere, each within the HA bound.
    expect(result.hypervisor.created.filter((system) => system.node === "n5" && system.ha)).toHaveLength(2)
    expect(result.hypervisor.failoverSamplesMs).toHaveLength(2)
    for (const ms of result.hypervisor.failoverSamplesMs) expect(ms).toBeLessThan(15_000)
  })

  it("clocks drifting far beyond the bound (unsafe drift-beyond-bound) make the lease checker fire", () => {
    for (let seed = 1; seed <= 3; seed++) {
      const result = simulate({
        ...defaultSimOptions,
        seed,
        durationMs: 20_000,
        faults: ["drift-beyond-bound"],
      })
      expect(
        result.violations.some((violation) => violation.checker === "lease"),
        result.replay,
      ).toBe(true)
    }
  })

  it("the unsafe fsync-lie fault (a disk that forgets acknowledged writes) is caught", () => {
    const result = simulate({ ...defaultSimOptions, seed: 3, durationMs: 20_000, faults: ["fsync-lie"] })
    expect(result.violations.length).toBeGreaterThan(0)
  })

  it("a driver that acknowledges and sends what its full disk refused (unsafe fault ignore-refused-commit) is caught", () => {
    const result = simulate({
      ...defaultSimOptions,
      seed: 1,
      durationMs: 60_000,
      faults: ["disk-full", "ignore-refused-commit"],
    })
    expect(result.commitsRefused).toBeGreaterThan(0)
    expect(result.violations.some((violation) => violation.checker === "refused")).toBe(true)
  })

  it("a full disk (fault disk-full) is refused, undone and survived: commits refused, no violation, convergence", () => {
    const result = simulate({ ...defaultSimOptions, seed: 77, faults: ["disk-full", "loss", "crash"] })
    expect(result.commitsRefused).toBeGreaterThan(0)
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  it("replays of a crashed primary's datagrams hold the election only where the replay window is off (unsafe no-replay-window)", () => {
    const run = (faults: SimOptions["faults"]) =>
      simulate({
        ...defaultSimOptions,
        seed: 1,
        durationMs: 20_000,
        faults,
        schedule: {
          rates: { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 },
          driftPpm: [0, 0, 0, 0, 0],
          events: [
            { kind: "replay", atMs: 4_000, durationMs: 15_000 },
            // n3 is seed 1's primary at 8 s.
            { kind: "crash", atMs: 8_000, durationMs: 11_000, node: 2 },
          ],
        },
      })
    const guarded = run(["replay", "crash"])
    expect(guarded.violations).toEqual([])
    expect(guarded.replays.dropped).toBeGreaterThan(1_000)
    expect(guarded.failoverMs.samples).toBe(1)
    const unguarded = run(["replay", "crash", "no-replay-window"])
    expect(unguarded.replays.dropped).toBe(0)
    expect(unguarded.violations.map((violation) => violation.checker)).toContain("primary")
  })

  it("shrinks a failing run to a smaller schedule that still fails the same checker, and its replay fails too", () => {
    const options = { ...defaultSimOptions, seed: 3, durationMs: 20_000, faults: ["fsync-lie" as const] }
    const failing = simulate(options)
    const shrunk = shrink(options, failing, 60)!
    expect(shrunk).toBeDefined()
    expect(shrunk.minimal.events.length).toBeLessThanOrEqual(shrunk.original.events.length)
    const durationOf = (schedule: Schedule) =>
      schedule.events.reduce((sum, event) => sum + event.durationMs, 0)
    expect(durationOf(shrunk.minimal)).toBeLessThan(durationOf(shrunk.original))
    const replayed = simulate({ ...options, schedule: shrunk.minimal })
    expect(replayed.violations.map((violation) => violation.checker)).toContain(shrunk.checker)
    expect(shrunk.result.replay).toContain("--schedule ")
  })

  // Seed 1000299 (found shrinking it): a run whose topology the seed draws was shrunk from a
  // schedule drawn for one domain, so the stay-down meant for a plain node fell on a relay and the
  // shrinker reported a different failure. Seed 8 draws 3 domains and a stay-down.
  it("shrinks from the schedule the run had when the seed draws the topology", () => {
    const options = {
      ...defaultSimOptions,
      seed: 8,
      durationMs: 20_000,
      faults: ["fsync-lie" as const, "stay-down" as const],
      drawn: ["domains" as const, "systems" as const],
    }
    const topology = drawnTopology(options)
    expect(topology.domains).toBe(3)
    const ran = drawScenario(topology).schedule
    expect(drawScenario(options).schedule).not.toEqual(ran)
    const failing = simulate(options)
    expect(failing.violations.length).toBeGreaterThan(0)
    const shrunk = shrink(options, failing, 10)!
    expect(shrunk.original).toEqual(ran)
    for (const event of shrunk.minimal.events)
      if (event.kind === "stay-down") expect(event.node).toBeGreaterThanOrEqual(topology.domains)
  })
})

describe("regressions with drift at its bound", () => {
  // Seed 1003, 9 nodes in 3 domains, 10 s: the first sweep with drift drawn up to the bound. A
  // relay whose disk had been full kept dropping all but two datagrams a second long after its
  // disk was free: it learned that its store worked again only from a commit, and the datagrams
  // it took persisted nothing (fixed: a probe that persists nothing lets the next datagram through).
  it("seed 1003, 9 nodes, 3 domains, 10 s: converges with no violations", () => {
    const result = simulate({ ...defaultSimOptions, seed: 1003, nodes: 9, domains: 3, durationMs: 10_000 })
    expect(result.commitsRefused).toBeGreaterThan(0)
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })
})

describe("budgets", () => {
  it("a run over its event budget stops with a liveness failure that names the budget, and replays", () => {
    const options = { ...defaultSimOptions, seed: 4, durationMs: 5_000, eventBudget: 5 }
    const result = simulate(options)
    expect(result.converged).toBe(false)
    expect(result.violations.map((violation) => violation.checker)).toEqual(["budget"])
    expect(result.pending[0]).toMatch(
      /^over the event budget: \d+ events \(5 per node and virtual second\) by \d+ ms$/,
    )
    expect(result.virtualMs).toBeLessThan(5_000)
    expect(simulate(options).traceHash).toBe(result.traceHash)
  })

  it("the default budget is far above what a heavy run takes", () => {
    const result = simulate({ ...defaultSimOptions, seed: 4, durationMs: 10_000, writesPerSec: 1_000 })
    expect(result.violations).toEqual([])
    expect(result.events / ((result.virtualMs / 1000) * result.nodes)).toBeLessThan(eventsPerNodeSecond / 5)
  })
})

describe("regressions: seeds that once failed", () => {
  // Seed 3, 60 s, all faults with disk-full: a core rebuilt after a refused commit starts its
  // failure detector over, but the driver kept the old member view, so an alarm about a node
  // that had come back was never cleared (fixed: the view starts over with the core).
  // Seed 50220, 20 s, all faults: the primary stepped down on a higher term, the vote for it was
  // refused by its full disk and reverted, and the SteppedDown after it never went out: the
  // lease checker held its lease as still running while the node, a follower, voted for another.
  it("seed 50220, 20 s, all faults: a reverted vote ends the lease the node held", () => {
    const result = simulate({ ...defaultSimOptions, seed: 50_220, durationMs: 20_000 })
    expect(result.commitsRefused).toBeGreaterThan(0)
    expect(result.violations).toEqual([])
  })

  it("seed 3, 60 s, all faults: a rebuilt core's member view starts over with it", () => {
    const result = simulate({ ...defaultSimOptions, seed: 3 })
    expect(result.commitsRefused).toBeGreaterThan(0)
    expect(result.violations).toEqual([])
  })

  // Seeds 256 and 351, 20 s, all faults, 12 systems: while its disk was full a node held an HA
  // system (fenced) after writing that it had crashed; both writes were refused and held, and
  // the retry of the older one was written after the newer one in the same batch, so the
  // cluster never saw the hold and the primary never released it (fixed: held writes go first).
  // Seed 2059, 12 systems, the faults before service-failure (the first sweep of the simulator on
  // the node's composition): hosts published their capacity once, at start; the primary, which
  // had lost those datagrams, saw no capacity anywhere and never placed a handed-over HA system
  // (fixed: every 2 s, as a real node's hypervisor service does).
  // Seed 1085, same options: an adversary replayed, 1.5 s after a node restarted, pings a dead
  // node had sent just before; the restarted node heard a majority that was not there and fenced
  // late (fixed: once the tolerated clock offset has passed since its start, a receiver takes
  // nothing sealed before it). Seed 1165: one node's full disk left two voters of five able to
  // vote; the primary checker counted it in a majority that could elect (fixed in the checker).
  // Seed 1459, same options: within the 500 ms a restarted receiver still took datagrams sealed
  // before its start, the adversary played it a cut-off node's last pings; the node it believed
  // to hear unfenced the cut-off one (fixed: NTP-synced clocks need 100 ms, not 500).
  const before = defaultSimOptions.faults.filter((fault) => fault !== "service-failure")
  for (const [seed, faults] of [
    [256, defaultSimOptions.faults],
    [351, defaultSimOptions.faults],
    [1085, defaultSimOptions.faults],
    [1165, defaultSimOptions.faults],
    [1459, defaultSimOptions.faults],
    [2059, before],
  ] as const) {
    it(`seed ${seed}, 20 s, ${faults.length} faults, 12 systems: converges with no violations`, () => {
      const result = simulate({ ...defaultSimOptions, seed, durationMs: 20_000, systems: 12, faults })
      expect(result.violations).toEqual([])
      expect(result.converged).toBe(true)
    })
  }

  // Seed 47, 10 s, 5 nodes, 1 domain, all faults, with a 1 s lease: a node
  // stepped back 12.5 s took that lead, crashed, and restarted once its clock was set right, so
  // its start was 12.5 s ahead of the cluster's time; a sender stepped back 21.5 s held the larger
  // lead (over its own wall clock) and was taken for one that had learnt the receiver's (fixed
  // in the checker: what is excused is a sender that has not heard the restarted receiver).
  it("seed 47, 10 s, 1 s lease: a restarted receiver ahead of the cluster's time is heard once its senders hear it", () => {
    const result = simulate({
      ...defaultSimOptions,
      seed: 47,
      durationMs: 10_000,
      domains: 1,
      systems: 0,
      electionTimings: { ...defaultElectionTimings, leaseMs: 1_000, electionJitterMs: 400 },
    })
    expect(result.violations).toEqual([])
  })

  // Seed 9300225 of the 2,000-seed sweep (5 nodes, 1 domain, 12 systems, all faults): the primary
  // of term 2 stayed down; the voters that had elected it were in term 2 with the shortest logs,
  // the others in term 1 with the longest, and each side refused the other's pre-votes for a
  // minute (fixed: a pre-candidate takes the term of a voter that refuses it from a later term).
  it("seed 9300225, 20 s, 12 systems: a primary is elected after the primary of the last term stays down", () => {
    const result = simulate({
      ...defaultSimOptions,
      seed: 9_300_225,
      durationMs: 20_000,
      systems: 12,
    })
    expect(result.violations).toEqual([])
    expect(result.converged).toBe(true)
  })

  // Seed 9300830 of the same sweep (5 nodes, 2 domains): a new primary, its store not caught up
  // and its clock stepped back, mirrored the log's placements (epochs 11-16) into the specs with
  // versions older than the last primary's mirrors (epochs 1-8), which it had not yet received
  // and which then won (fixed: the primary mirrors from a caught-up store only).
  it("seed 9300830, 20 s, 12 systems, 2 domains: no placement's mirror goes back to an earlier epoch", () => {
    const result = simulate({
      ...defaultSimOptions,
      seed: 9_300_830,
      domains: 2,
      durationMs: 20_000,
      systems: 12,
    })
    expect(result.violations).toEqual([])
  })

  // Seed 9311446 of the second 2,000-seed sweep (5 nodes, 3 domains): n2's outgoing cut ended
  // just as n5's began; n5 heard n2's pings say n5 was heard 333 ms before, counted n2 as the
  // node's rule says, and unfenced, while the fencing checker (both ways open at one instant)
  // had it cut off all along (fixed in the checker: each way open within the window).
  it("seed 9311446, 20 s, 12 systems, 3 domains: a node that counts a peer by its rule is not taken for one cut off", () => {
    const result = simulate({
      ...defaultSimOptions,
      seed: 9_311_446,
      domains: 3,
      durationMs: 20_000,
      systems: 12,
    })
    expect(result.violations).toEqual([])
  })

  // Seed 42, 20 s, all faults: a restarted node forgot meta that its stream vector counted, and
  // served snapshots that spread the hole (fixed by keeping meta in the durable image).
  for (const seed of [5, 42, 99]) {
    it(`seed ${seed}, 20 s, all faults: converges with no violations`, () => {
      const result = simulate({ ...defaultSimOptions, seed, durationMs: 20_000 })
      expect(result.violations).toEqual([])
    })
  }
})

describe("schedule encoding", () => {
  it("a drawn schedule survives the round trip through the replay command's base64url, byte for byte", () => {
    for (const seed of [1, 42, 7_777]) {
      const { schedule } = drawScenario({ ...defaultSimOptions, seed })
      const text = encodeSchedule(schedule)
      // An independent encoder as the oracle: Node's own unpadded base64url of the same JSON.
      expect(text).toBe(Buffer.from(JSON.stringify(schedule)).toString("base64url"))
      expect(decodeSchedule(text)).toEqual(schedule)
    }
    expect(() => decodeSchedule("not*base64")).toThrow("schedule: not base64url")
  })
})
