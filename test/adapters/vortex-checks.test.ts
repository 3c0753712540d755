/**
 * The fault harness's checkers on histories written by hand: a clean one passes, and each
 * violation the harness exists to find — a refused write visible, an acknowledged write lost,
 * two primaries in a term, two leases at once, a system on two nodes, an HA system not back
 * within the bound, a primary not replaced, no convergence, an operator's api-key — is named.
 */
import { describe, expect, it } from "vitest"
import {
  checkHistory,
  type DomainSample,
  defaultBounds,
  type History,
  type StatusSample,
  type WriteRecord,
} from "../../adapters/vortex/checks.ts"

const version = (ms: number, origin = "n1") => ({ ms, counter: 0, origin })
const put = (id: number, token: string, outcome: WriteRecord["outcome"], ms?: number): WriteRecord => ({
  id,
  node: "n1",
  via: "api",
  role: "admin",
  op: "put",
  key: "project/p-1",
  token,
  startMs: id * 10,
  endMs: id * 10 + 5,
  outcome,
  ...(ms === undefined ? {} : { version: version(ms) }),
})
/** A node's status; a follower names the primary of term 1 (n1) unless told otherwise. */
const status = (
  node: string,
  sentMs: number,
  term: number,
  isPrimary: boolean,
  primary: string | null = isPrimary ? node : term === 1 ? "n1" : null,
): StatusSample => ({
  node,
  sentMs,
  recvMs: sentMs + 5,
  term,
  isPrimary,
  primary,
  fenced: false,
})
const domains = (node: string, sentMs: number, running: ReadonlyArray<string>): DomainSample => ({
  node,
  sentMs,
  recvMs: sentMs + 5,
  running,
})

/** Three nodes; n1 primary throughout; ha-1 on n2; one write acknowledged and held everywhere. */
const clean = (): History => {
  const held = { token: "w1", version: version(100) }
  return {
    seed: 1,
    nodes: ["n1", "n2", "n3"],
    writes: [put(0, "w0", "refused"), put(1, "w1", "ok", 100)],
    reads: [{ node: "n2", key: "project/p-1", startMs: 20, endMs: 25, token: "w1" }],
    statuses: [0, 300, 600, 900, 1_200].flatMap((ms) => [
      status("n1", ms, 1, true),
      status("n2", ms, 1, false),
      status("n3", ms, 1, false),
    ]),
    domains: [0, 300, 600, 900, 1_200].flatMap((ms) => [
      domains("n1", ms, []),
      domains("n2", ms, ["ha-1"]),
      domains("n3", ms, []),
    ]),
    processes: [],
    faults: [],
    haSystems: ["ha-1"],
    decisions: [
      {
        node: "n1",
        invokedMs: 10,
        returnedMs: 20,
        command: { _tag: "Grant", pool: "vlan", holder: "p1", range: { from: 100, to: 103 } },
        answer: { _tag: "Granted", pool: "vlan", value: 100, epoch: 1 },
      },
      {
        node: "n1",
        invokedMs: 30,
        command: { _tag: "Release", pool: "vlan", holder: "p1", value: 100 },
      },
    ],
    forbidden: [{ key: "api-key/k-00000001", path: "/v1/objects/API-KEY/k-00000001", status: 400 }],
    faultsStopMs: 1_000,
    convergedMs: 1_200,
    final: { n1: { "project/p-1": held }, n2: { "project/p-1": held }, n3: { "project/p-1": held } },
  }
}

const checks = (history: History) => checkHistory(history).violations.map((violation) => violation.check)

describe("the fault harness's checkers", () => {
  it("pass a clean history and count what it holds", () => {
    const result = checkHistory(clean())
    expect(result.violations).toEqual([])
    expect(result.figures.writes).toEqual({ ok: 1, refused: 1, unknown: 0 })
    expect(result.figures.convergenceMs).toBe(200)
  })

  it("name a refused write that a read or a node shows", () => {
    expect(
      checks({ ...clean(), reads: [{ node: "n3", key: "project/p-1", startMs: 1, endMs: 2, token: "w0" }] }),
    ).toEqual(["refused-visible"])
    const history = clean()
    const final = { ...history.final, n3: { "project/p-1": { token: "w0", version: version(100) } } }
    expect(checks({ ...history, final })).toContain("refused-visible")
  })

  it("name an acknowledged write lost, or held at another version", () => {
    const history = clean()
    const older = { token: "w1", version: version(90) }
    expect(checks({ ...history, final: { ...history.final, n2: { "project/p-1": older } } })).toEqual(
      expect.arrayContaining(["acknowledged-lost", "acknowledged-version", "diverged"]),
    )
    expect(checks({ ...history, final: { ...history.final, n2: {} } })).toEqual(
      expect.arrayContaining(["acknowledged-lost", "diverged"]),
    )
    // Gone everywhere is fine once a delete went through.
    const deleted: WriteRecord = { ...put(2, "", "ok"), op: "delete" }
    const { token: _token, ...withoutToken } = deleted
    expect(
      checks({ ...history, writes: [...history.writes, withoutToken], final: { n1: {}, n2: {}, n3: {} } }),
    ).toEqual([])
  })

  it("name two primaries in one term, and two leases at one time", () => {
    const history = clean()
    expect(checks({ ...history, statuses: [...history.statuses, status("n2", 450, 1, true)] })).toContain(
      "two-primaries-in-a-term",
    )
    // n2 primary in term 2 from 300 to 900 while n1 still holds term 1 throughout.
    const statuses = history.statuses.map((sample) =>
      sample.node === "n2" && sample.sentMs >= 300
        ? { ...sample, term: 2, isPrimary: true, primary: "n2" }
        : sample,
    )
    expect(checks({ ...history, statuses })).toContain("two-leases")
    // A handover proves no overlap: n1 stops at 300, n2 starts at 600.
    const handover = history.statuses.map((sample) =>
      sample.node === "n1" && sample.sentMs >= 600
        ? { ...sample, isPrimary: false, term: 2, primary: "n2" }
        : sample.node === "n2" && sample.sentMs >= 600
          ? { ...sample, term: 2, isPrimary: true, primary: "n2" }
          : sample,
    )
    expect(checks({ ...history, statuses: handover })).toEqual([])
  })

  it("name a system running on two nodes at once, not one that moved", () => {
    const history = clean()
    const both = history.domains.map((sample) =>
      sample.node === "n3" && sample.sentMs >= 300 ? { ...sample, running: ["ha-1"] } : sample,
    )
    expect(checks({ ...history, domains: both })).toEqual(
      expect.arrayContaining(["active-on-two", "ha-at-end"]),
    )
    // One sample on each side of a move proves nothing overlapped.
    const moved = history.domains.map((sample) =>
      sample.node === "n2" && sample.sentMs >= 600
        ? { ...sample, running: [] }
        : sample.node === "n3" && sample.sentMs >= 600
          ? { ...sample, running: ["ha-1"] }
          : sample,
    )
    expect(checks({ ...history, domains: moved })).toEqual([])
  })

  it("measure a failover and an election, and name one beyond the bound when nothing else was faulty", () => {
    const base = clean()
    const killAt = 1_000
    const afterHeal = [
      domains("n1", 100_050, []),
      domains("n2", 100_050, []),
      domains("n3", 100_050, ["ha-1"]),
    ]
    const sampled = (ms: number, node: string, running: ReadonlyArray<string>) =>
      domains(node, killAt + ms, running)
    const history: History = {
      ...base,
      processes: [{ node: "n2", kind: "kill", atMs: killAt, wasPrimary: false }],
      faults: [{ kind: "kill", startMs: killAt, endMs: killAt + 40_000, detail: "n2" }],
      domains: [
        ...base.domains,
        sampled(2_000, "n3", []),
        sampled(4_000, "n3", ["ha-1"]),
        sampled(4_300, "n3", ["ha-1"]),
        ...afterHeal,
      ],
      faultsStopMs: 100_000,
      convergedMs: 100_100,
    }
    const fast = checkHistory(history)
    expect(fast.violations).toEqual([])
    expect(fast.figures.failovers).toEqual([{ system: "ha-1", node: "n2", ms: 4_005 }])
    const slow = {
      ...history,
      domains: [
        ...base.domains,
        sampled(40_000, "n3", ["ha-1"]),
        sampled(40_300, "n3", ["ha-1"]),
        ...afterHeal,
      ],
    }
    expect(checks(slow)).toEqual(["ha-failover"])
    // With a partition in the window the bound is not judged.
    expect(
      checks({
        ...slow,
        faults: [...slow.faults, { kind: "partition", startMs: 2_000, endMs: 5_000, detail: "n1 | n3" }],
      }),
    ).toEqual([])

    const primaryLost: History = {
      ...base,
      processes: [{ node: "n1", kind: "kill", atMs: killAt, wasPrimary: true }],
      faults: [{ kind: "kill", startMs: killAt, endMs: killAt + 40_000, detail: "n1 (primary)" }],
      statuses: [...base.statuses, status("n3", killAt + 20_000, 2, true)],
      domains: [...base.domains, ...afterHeal],
      faultsStopMs: 100_000,
      convergedMs: 100_100,
    }
    expect(checks(primaryLost)).toEqual(["election"])
    expect(checkHistory(primaryLost).figures.elections).toEqual([{ node: "n1", ms: 20_005 }])
  })

  it("name a silent node that another still hears, once the failure detector has had its time", () => {
    const base = clean()
    const heard = (sentMs: number, alive: ReadonlyArray<string>) => ({
      ...status("n3", sentMs, 1, false),
      alive,
    })
    const history: History = {
      ...base,
      processes: [
        { node: "n2", kind: "kill", atMs: 2_000, wasPrimary: false },
        { node: "n2", kind: "restart", atMs: 20_000 },
      ],
      statuses: [
        ...base.statuses,
        heard(3_000, ["n1", "n2"]),
        heard(8_000, ["n1"]),
        heard(21_000, ["n1", "n2"]),
      ],
    }
    // Heard 1 s after the kill (within the detector's time) and after the restart: fine.
    expect(checks(history)).toEqual([])
    const replayed = { ...history, statuses: [...history.statuses, heard(12_000, ["n1", "n2"])] }
    expect(checks(replayed)).toEqual(["silent-heard"])
  })

  it("name an election after a clock step in quiet, and a primary that wakes still primary of its old term", () => {
    const base = clean()
    const step = { kind: "clock" as const, startMs: 600, endMs: 1_250, detail: "n1 +7 s (now 7 s)" }
    expect(checks({ ...base, faults: [step] })).toEqual([])
    const lost = base.statuses.map((sample) =>
      sample.sentMs === 900 ? { ...sample, term: 2, isPrimary: false, primary: null } : sample,
    )
    expect(checks({ ...base, faults: [step], statuses: lost })).toContain("clock-step")
    // A node fenced before the step and still fenced after it is no change the step made.
    const fencedBefore = base.statuses.map((sample) =>
      sample.node === "n3" ? { ...sample, fenced: true } : sample,
    )
    expect(checks({ ...base, faults: [step], statuses: fencedBefore })).toEqual([])
    const fencedAfter = base.statuses.map((sample) =>
      sample.node === "n3" && sample.sentMs >= 900 ? { ...sample, fenced: true } : sample,
    )
    expect(checks({ ...base, faults: [step], statuses: fencedAfter })).toContain("clock-step")
    // With something else faulty around it, the step is not judged.
    const partition = { kind: "partition" as const, startMs: 0, endMs: 700, detail: "n1 | n2,n3" }
    expect(checks({ ...base, faults: [step, partition], statuses: lost })).not.toContain("clock-step")

    const paused: History = {
      ...base,
      processes: [
        { node: "n1", kind: "pause", atMs: 1_300, wasPrimary: true },
        { node: "n1", kind: "resume", atMs: 9_000 },
      ],
      statuses: [
        ...base.statuses,
        status("n2", 5_000, 2, true),
        status("n2", 5_300, 2, true),
        status("n1", 9_100, 1, true),
      ],
      domains: [
        ...base.domains,
        domains("n1", 9_100, []),
        domains("n2", 9_100, ["ha-1"]),
        domains("n3", 9_100, []),
      ],
      faultsStopMs: 9_050,
      convergedMs: 9_200,
    }
    expect(checks(paused)).toContain("woke-as-primary")
    const deposed = { ...paused, statuses: [...paused.statuses.slice(0, -1), status("n1", 9_100, 2, false)] }
    expect(checks(deposed)).toEqual([])
  })

  it("name a read-only key's write acknowledged, or visible even when its answer was lost", () => {
    const history = clean()
    const readOnly = (outcome: WriteRecord["outcome"]): WriteRecord => ({
      ...put(2, "w2", outcome, outcome === "ok" ? 110 : undefined),
      role: "read-only",
    })
    expect(checks({ ...history, writes: [...history.writes, readOnly("refused")] })).toEqual([])
    expect(checks({ ...history, writes: [...history.writes, readOnly("unknown")] })).toEqual([])
    expect(checks({ ...history, writes: [...history.writes, readOnly("ok")] })).toEqual(["privilege"])
    const seen = { ...history.reads[0]!, token: "w2" }
    expect(checks({ ...history, writes: [...history.writes, readOnly("unknown")], reads: [seen] })).toEqual([
      "refused-visible",
    ])
  })

  it("name a cluster that did not converge, and an operator that wrote an api-key", () => {
    expect(checks({ ...clean(), convergedMs: null })).toEqual(["converged"])
    const history = clean()
    const minted = { key: "api-key/k-00000002", path: "/v1/objects/api%2Dkey/k-00000002", status: 200 }
    const final = {
      ...history.final,
      n1: { ...history.final.n1, [minted.key]: { token: null, version: version(5) } },
    }
    expect(checks({ ...history, forbidden: [minted], final })).toEqual(
      expect.arrayContaining(["privilege", "privilege", "diverged"]),
    )
    expect(defaultBounds.electionMs).toBeLessThan(defaultBounds.failoverMs)
  })

  it("name a decision whose answer no order of the clients' decisions explains (an acknowledged grant lost)", () => {
    const history = clean()
    expect(checkHistory(history).figures.decisions).toEqual({
      answered: 1,
      unknown: 1,
      verdict: "Linearizable",
    })
    const lost = {
      ...history,
      decisions: [
        ...history.decisions,
        {
          node: "n2",
          invokedMs: 40,
          returnedMs: 50,
          command: { _tag: "Grant", pool: "vlan", holder: "p2", range: { from: 100, to: 103 } },
          // p1 still holds 100 unless the unanswered release took effect: then 100 is right, at epoch 2.
          answer: { _tag: "Granted", pool: "vlan", value: 100, epoch: 1 },
        },
      ] as History["decisions"],
    }
    expect(checks(lost)).toContain("linearizable")
    const released = {
      ...lost,
      decisions: lost.decisions.map((record) =>
        record.node === "n2"
          ? { ...record, answer: { _tag: "Granted", pool: "vlan", value: 100, epoch: 2 } }
          : record,
      ) as History["decisions"],
    }
    expect(checks(released)).not.toContain("linearizable")
  })

  it("take a watchdog's kill just after a pause ended as the pause's, and any other exit as a finding", () => {
    const watchdogLine =
      'SIGKILL: {"message":"watchdog: no heartbeat from the node for 3727 ms (timeout 3700 ms): killed it"}'
    const history = clean()
    const paused = {
      ...history,
      processes: [
        { node: "n2", kind: "pause", atMs: 100, wasPrimary: false },
        { node: "n2", kind: "resume", atMs: 3_738 },
        { node: "n2", kind: "exited", atMs: 3_741, detail: watchdogLine },
        { node: "n2", kind: "restart", atMs: 4_741 },
      ] as History["processes"],
    }
    expect(checks(paused)).not.toContain("exited")
    const killedWhilePaused = {
      ...history,
      processes: [
        { node: "n2", kind: "pause", atMs: 100, wasPrimary: false },
        { node: "n2", kind: "exited", atMs: 3_900, detail: watchdogLine },
        { node: "n2", kind: "restart", atMs: 6_000 },
      ] as History["processes"],
    }
    expect(checks(killedWhilePaused)).not.toContain("exited")
    const stalled = {
      ...paused,
      processes: [{ node: "n2", kind: "exited", atMs: 3_741, detail: watchdogLine }] as History["processes"],
    }
    expect(checks(stalled)).toContain("exited")
  })
})
