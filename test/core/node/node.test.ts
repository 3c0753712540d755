/**
 * The node's composition on its own, driven by a few lines standing in for a driver: what a
 * refused commit leaves, statistics after a rebuilt core, services in health and alarms, and
 * held service writes that must not overwrite newer ones.
 */
import { describe, expect, it } from "vitest"
import { decode } from "../../../core/cdb/codec.ts"
import { applyPersist, type DurableImage, emptyImage } from "../../../core/cdb/durable.ts"
import { defaultCdbConfig, type Member } from "../../../core/cdb/node.ts"
import { hypervisorService } from "../../../core/hypervisor/service.ts"
import { type DurableVote, defaultElectionTimings } from "../../../core/monitor/election.ts"
import {
  defaultNodeTimings,
  type Input,
  NodeCore,
  type Output,
  type Step,
  serviceFailingRule,
  storeFailingRule,
  storeStatsEveryMs,
} from "../../../core/node/node.ts"
import { PendingWrites } from "../../../core/node/pending.ts"
import type { ServiceFactories } from "../../../core/node/service.ts"

const encoder = new TextEncoder()

/**
 * A node of a cluster of `members` (by name: one domain, no relays), its store in memory; `full`
 * makes the store refuse commits.
 */
const node = (
  self: string,
  members: ReadonlyArray<string | Member>,
  storeCorrupted?: { readonly count: number; readonly lost: number },
  services: ServiceFactories = {},
  durable: { image: DurableImage; vote: DurableVote } = {
    image: emptyImage(),
    vote: { term: 0, votedFor: null },
  },
) => {
  const layout = members.map((member) =>
    typeof member === "string" ? { id: member, domain: "d1", relay: false } : member,
  )
  const core = new NodeCore(
    {
      self,
      cdb: {
        ...defaultCdbConfig,
        self,
        members: layout,
      },
      election: { ...defaultElectionTimings, self, voters: layout.map((member) => member.id) },
      incarnation: 1,
      timings: defaultNodeTimings,
      services,
      ...(storeCorrupted === undefined ? {} : { storeCorrupted }),
    },
    durable,
    0,
  )
  const state = {
    full: false,
    sent: [] as Array<Extract<Output, { _tag: "Send" }>>,
    carried: [] as Array<Output>,
  }
  const carry = (step: Step, nowMs: number): void => {
    if (step.commit !== undefined) {
      if (state.full) {
        carry(
          core.handle(
            {
              _tag: "CommitRefused",
              error: { reason: "disk-full", detail: "no space left on device" },
              durable,
            },
            nowMs,
          ),
          nowMs,
        )
        return
      }
      for (const persist of step.commit.persists) applyPersist(durable.image, persist, self, 1024)
      if (step.commit.vote !== undefined) durable.vote = step.commit.vote
    }
    for (const output of [...step.outputs, ...(step.commit === undefined ? [] : core.committed())]) {
      state.carried.push(output)
      if (output._tag === "Send") state.sent.push(output)
    }
  }
  const handle = (input: Input, nowMs: number) => carry(core.handle(input, nowMs), nowMs)
  /** Deadlines up to `untilMs`, as a driver's one timer would fire them. */
  const runUntil = (untilMs: number) => {
    for (let guard = 0; guard < 10_000; guard++) {
      const at = core.nextDeadline()
      if (at > untilMs) return
      handle({ _tag: "DeadlineReached" }, at)
    }
    throw new Error("more than 10,000 deadline steps")
  }
  return { core, state, handle, runUntil, durable }
}

/** Two nodes on one lossless link: both nodes' deadlines and datagrams, in time order. */
const pairOf = (n1: ReturnType<typeof node>, n2: ReturnType<typeof node>) => {
  let nowMs = 0
  return {
    nowMs: () => nowMs,
    runUntil: (untilMs: number) => {
      while (nowMs < untilMs) {
        nowMs = Math.min(untilMs, n1.core.nextDeadline(), n2.core.nextDeadline())
        for (const [self, peer] of [
          [n1, n2],
          [n2, n1],
        ] as const) {
          if (self.core.nextDeadline() <= nowMs) self.handle({ _tag: "DeadlineReached" }, nowMs)
          for (const sent of self.state.sent.splice(0))
            peer.handle({ _tag: "Datagram", bytes: sent.bytes, via: "domain" }, nowMs)
          for (const output of self.state.carried.splice(0))
            if (output._tag === "SendMessage" && (output.to === "all" || output.to === peer.core.self))
              peer.handle({ _tag: "MonitorMessage", message: output.message }, nowMs)
        }
      }
    },
  }
}

const record = (value: string) => ({
  op: "put" as const,
  kind: "record",
  id: "r1",
  value: encoder.encode(value),
})

describe("the node's composition", () => {
  it("a refused commit answers the write as refused, shows nothing of it, says why in health, and recovers", () => {
    const n1 = node("n1", ["n1"])
    n1.runUntil(1_000)
    n1.state.full = true
    n1.handle({ _tag: "Write", ticket: 1, writes: [record("refused")] }, 1_001)
    const refused = n1.state.carried.find((output) => output._tag === "WriteRefused")
    expect(refused).toMatchObject({ ticket: 1, reason: "disk-full" })
    expect(n1.state.carried.some((output) => output._tag === "Written")).toBe(false)
    expect(n1.core.store.get("record", "r1")).toBeUndefined()
    expect(
      n1.core
        .health(1_500)
        .cluster.reasons.map((reason) => reason.reason)
        .join("\n"),
    ).toMatch(/store refuses writes \(disk full: no space left on device\)/)
    n1.state.full = false
    n1.handle({ _tag: "Write", ticket: 2, writes: [record("taken")] }, 2_000)
    expect(n1.state.carried.find((output) => output._tag === "Written")).toMatchObject({ ticket: 2 })
    expect(n1.state.carried.some((output) => output._tag === "StoreRecovered")).toBe(true)
    expect(new TextDecoder().decode(n1.core.store.get("record", "r1")!.value!)).toBe("taken")
    // Its stream stays continuous: the taken write has the number the refused one had.
    expect(n1.core.cdbCore.appliedUpTo("n1")).toBe(1)
  })

  it("a core rebuilt after a refused commit goes on numbering its statistics: a peer takes them", () => {
    const n1 = node("n1", ["n1", "n2"])
    const n2 = node("n2", ["n1", "n2"])
    const deliver = (nowMs: number) => {
      for (const sent of n1.state.sent.splice(0))
        n2.handle({ _tag: "Datagram", bytes: sent.bytes, via: "domain" }, nowMs)
    }
    const stats = (value: string) => ({
      _tag: "SetStats" as const,
      values: [{ kind: "node", id: "n1", value: encoder.encode(value) }],
    })
    n1.handle(stats("first"), 10)
    n1.handle(stats("second"), 20)
    deliver(30)
    expect(new TextDecoder().decode(n2.core.store.statsOf("node", "n1", "n1"))).toBe("second")
    // A refused commit: n1's CDB core is rebuilt from its durable image.
    n1.state.full = true
    n1.handle({ _tag: "Write", ticket: 1, writes: [record("x")] }, 40)
    n1.state.full = false
    n1.state.sent.splice(0)
    n1.handle(stats("after the rebuild"), 50)
    deliver(60)
    expect(new TextDecoder().decode(n2.core.store.statsOf("node", "n1", "n1"))).toBe("after the rebuild")
  })

  it("a core rebuilt after a refused commit goes on numbering its digests: its relay passes them on", () => {
    // Seed 1000299: numbered from 1 again, a relay's digests were dropped by the relay of the
    // next domain as old for as long as it had been up, and that domain never heard a majority.
    const layout: ReadonlyArray<Member> = [
      { id: "n1", domain: "d1", relay: true },
      { id: "n2", domain: "d2", relay: true },
      { id: "n3", domain: "d2", relay: false },
    ]
    const n1 = node("n1", layout)
    const n2 = node("n2", layout)
    /** Delivers n1's datagrams to its peer relay n2; whether n2 passed a digest of n1's on into its domain. */
    const passedOn = (nowMs: number): boolean => {
      n2.state.sent.splice(0)
      for (const sent of n1.state.sent.splice(0))
        if (sent.to._tag === "Relay") n2.handle({ _tag: "Datagram", bytes: sent.bytes, via: "relay" }, nowMs)
      return n2.state.sent.some((sent) => {
        if (sent.to._tag !== "Domain") return false
        const decoded = decode(sent.bytes, defaultCdbConfig.cluster, defaultCdbConfig.mtu)
        return decoded.ok && decoded.datagram.sender === "n1" && decoded.datagram.body.type === "digest"
      })
    }
    let nowMs = 0
    const heartbeats = (count: number): boolean => {
      let passed = false
      for (let beat = 0; beat < count; beat++) {
        nowMs += defaultCdbConfig.heartbeatMs
        n1.runUntil(nowMs)
        n2.runUntil(nowMs)
        if (passedOn(nowMs)) passed = true
      }
      return passed
    }
    expect(heartbeats(20)).toBe(true)
    n1.state.full = true
    n1.handle({ _tag: "Write", ticket: 1, writes: [record("refused")] }, nowMs + 1)
    expect(n1.state.carried.some((output) => output._tag === "WriteRefused")).toBe(true)
    n1.state.full = false
    n1.state.sent.splice(0)
    // Its next digests (numbered from 1 they would be the 1st to 3rd again) reach n3's domain.
    expect(heartbeats(3)).toBe(true)
  })

  it("a refused commit has the services read the store again: what they saw may be gone", () => {
    const n1 = node("n1", ["n1"], undefined, { hypervisor: hypervisorService({ volumeDir: "/var/lib/acp" }) })
    n1.runUntil(1_000)
    n1.handle({ _tag: "ServiceState", name: "hypervisor", state: "running", restarts: 0 }, 1_000)
    n1.runUntil(2_000)
    expect(n1.core.serviceRun("hypervisor")).toBeDefined()
    expect(n1.core.readPending("hypervisor")).toBe(false)
    n1.state.full = true
    n1.handle({ _tag: "Write", ticket: 1, writes: [record("refused")] }, 2_001)
    expect(n1.state.carried.some((output) => output._tag === "WriteRefused")).toBe(true)
    expect(n1.core.readPending("hypervisor")).toBe(true)
  })

  it("a failing service costs health points with its reason, and the primary alarms it after the threshold", () => {
    const n1 = node("n1", ["n1"])
    n1.runUntil(2_000)
    expect(n1.core.authority(2_000).isPrimary).toBe(true)
    n1.handle(
      {
        _tag: "ServiceState",
        name: "hypervisor",
        state: "backing-off",
        restarts: 3,
        lastError: "cannot load libvirt.so.0",
      },
      2_000,
    )
    const health = n1.core.health(2_100)
    expect(health.cluster.reasons).toContainEqual({
      points: 15,
      reason: "hypervisor on n1 backing-off: cannot load libvirt.so.0",
    })
    expect(health.nodes.n1!.score).toBe(85)
    n1.runUntil(2_000 + serviceFailingRule.raiseAfterMs - 200)
    expect(n1.core.openAlarms()).toEqual([])
    n1.runUntil(2_000 + serviceFailingRule.raiseAfterMs + 300)
    expect(n1.core.openAlarms().map((alarm) => [alarm.id, alarm.message])).toEqual([
      ["service-failing.n1.hypervisor", "hypervisor on n1 backing-off: cannot load libvirt.so.0"],
    ])
    // Starting again after the failure still counts as failing; running clears it.
    n1.handle(
      {
        _tag: "ServiceState",
        name: "hypervisor",
        state: "starting",
        restarts: 3,
        lastError: "cannot load libvirt.so.0",
      },
      8_000,
    )
    expect(
      n1.core
        .health(8_000)
        .cluster.reasons.some((reason) => reason.reason.startsWith("hypervisor on n1 starting")),
    ).toBe(true)
    n1.handle({ _tag: "ServiceState", name: "hypervisor", state: "running", restarts: 3 }, 8_100)
    n1.runUntil(8_100 + serviceFailingRule.clearAfterMs + 300)
    expect(n1.core.openAlarms()).toEqual([])
    expect(n1.core.health(10_600).cluster.score).toBe(100)
  })

  it("the driver's one timer: deadlines come when the cores ask, not every millisecond", () => {
    const n1 = node("n1", ["n1", "n2", "n3"])
    let steps = 0
    for (let guard = 0; guard < 100_000; guard++) {
      const at = n1.core.nextDeadline()
      if (at > 10_000) break
      n1.handle({ _tag: "DeadlineReached" }, at)
      steps++
    }
    // A follower that hears nobody: pings every 100 ms, CDB heartbeats every 200 ms, pre-votes.
    expect(steps).toBeGreaterThan(50)
    expect(steps).toBeLessThan(300)
  })
})

describe("held service writes", () => {
  const put = { op: "put" as const, kind: "system", id: "vm1", value: encoder.encode("move to n2") }
  const meta = { op: "meta" as const, kind: "system", id: "vm1", value: encoder.encode("stopped") }

  it("a held put is written again only while its object is as it was when it was decided; a meta always", () => {
    const held = new PendingWrites(500)
    held.refused([put, meta], 1_000, () => "v1")
    expect(held.due(1_400, () => "v1")).toEqual([])
    expect(held.due(1_500, () => "v1")).toEqual([put, meta])
    held.refused([put, meta], 2_000, () => "v1")
    // Somebody wrote the system since (an operator's stop): the move is stale, dropped.
    expect(held.due(2_500, () => "v2")).toEqual([meta])
  })

  it("a newer put for the same object, decided on the object as it is now, replaces the held one", () => {
    const held = new PendingWrites(500)
    held.refused([put], 1_000, () => "v1")
    const newer = { ...put, value: encoder.encode("move to n3") }
    held.refused([newer], 1_100, () => "v2")
    expect(held.due(1_600, () => "v2")).toEqual([newer])
  })
})

describe("a store that refuses commits, as the others see it", () => {
  it("its node says so in its statistics; the primary raises store-failing after the threshold and clears it once it takes commits again", () => {
    const n1 = node("n1", ["n1", "n2"])
    const n2 = node("n2", ["n1", "n2"])
    const pair = pairOf(n1, n2)
    const runUntil = pair.runUntil
    runUntil(3_000)
    let nowMs = pair.nowMs()
    const primary = [n1, n2].find((candidate) => candidate.core.authority(nowMs).isPrimary)!
    const other = primary === n1 ? n2 : n1
    other.state.full = true
    other.handle({ _tag: "Write", ticket: 1, writes: [record("refused")] }, nowMs)
    const failedAt = nowMs
    runUntil(failedAt + storeFailingRule.raiseAfterMs - 500)
    expect(primary.core.openAlarms()).toEqual([])
    runUntil(failedAt + storeFailingRule.raiseAfterMs + storeStatsEveryMs + 500)
    nowMs = pair.nowMs()
    expect(primary.core.openAlarms().map((alarm) => [alarm.id, alarm.severity, alarm.message])).toEqual([
      [
        `store-failing.${other.core.self}.store`,
        "critical",
        `the store of ${other.core.self} refuses writes (disk full: no space left on device)`,
      ],
    ])
    other.state.full = false
    other.handle({ _tag: "Write", ticket: 2, writes: [record("taken")] }, nowMs)
    runUntil(nowMs + storeFailingRule.clearAfterMs + 500)
    expect(primary.core.openAlarms()).toEqual([])
  })
})

describe("a store that refused commits", () => {
  it("takes, after a datagram that persisted nothing, the next one too: only a commit shows the store works again", () => {
    const n1 = node("n1", ["n1", "n2"])
    const n2 = node("n2", ["n1", "n2"])
    n1.runUntil(100)
    n2.runUntil(100)
    n1.state.full = true
    n1.handle({ _tag: "Write", ticket: 1, writes: [record("refused")] }, 100)
    n1.state.full = false
    n2.state.sent.splice(0)
    // A heartbeat of n2's (a digest, no change) once the probe interval has passed: taken, nothing to commit.
    n2.runUntil(100 + defaultNodeTimings.storeProbeMs + 200)
    const heartbeat = n2.state.sent.splice(0)
    expect(heartbeat.length).toBeGreaterThan(0)
    const at = 100 + defaultNodeTimings.storeProbeMs + 200
    for (const sent of heartbeat) n1.handle({ _tag: "Datagram", bytes: sent.bytes, via: "domain" }, at)
    expect(n1.state.carried.some((output) => output._tag === "StoreRecovered")).toBe(false)
    // A change of n2's right after: taken too (the probe found nothing to commit), committed: recovered.
    n2.handle({ _tag: "Write", ticket: 1, writes: [{ ...record("from n2"), id: "r2" }] }, at + 1)
    for (const sent of n2.state.sent.splice(0))
      n1.handle({ _tag: "Datagram", bytes: sent.bytes, via: "domain" }, at + 1)
    expect(n1.state.carried.some((output) => output._tag === "StoreRecovered")).toBe(true)
    expect(n1.core.store.get("record", "r2")).toBeDefined()
  })
})

describe("a store that held corrupted values at its start, as the others see it", () => {
  it("its node says so in its statistics and the primary raises store-corrupted at once", () => {
    const n1 = node("n1", ["n1", "n2"])
    const n2 = node("n2", ["n1", "n2"], { count: 2, lost: 1 })
    const pair = pairOf(n1, n2)
    pair.runUntil(4_000)
    const nowMs = pair.nowMs()
    const primary = [n1, n2].find((candidate) => candidate.core.authority(nowMs).isPrimary)!
    expect(primary.core.openAlarms().map((alarm) => [alarm.id, alarm.severity, alarm.message])).toEqual([
      [
        "store-corrupted.n2.store",
        "major",
        "the store of n2 held 2 corrupted value(s) at its start, not served: 1 of its own given back by a peer, the rest asked of peers again or restored from its own log",
      ],
    ])
    // Alone, it has nobody to ask: still missing, and said so.
    const alone = node("n3", ["n3"], { count: 1, lost: 1 })
    alone.runUntil(4_000)
    expect(JSON.stringify(alone.core.health(4_000))).toContain("1 of its own not yet back from a peer")
  })

  /**
   * n1 writes r1, which n2 takes; n1 restarts with its store having lost it (a failed checksum)
   * and its own log no longer holding it.
   */
  const ownValueLost = () => {
    const n1 = node("n1", ["n1", "n2"])
    const n2 = node("n2", ["n1", "n2"])
    n1.handle({ _tag: "Write", ticket: 1, writes: [record("mine")] }, 0)
    pairOf(n1, n2).runUntil(2_000)
    expect(n2.core.store.get("record", "r1")).toBeDefined()
    expect(n1.durable.image.entries.delete("record\u0000r1")).toBe(true)
    n1.durable.image.ownLog.length = 0
    const restarted = node("n1", ["n1", "n2"], { count: 1, lost: 1 }, {}, n1.durable)
    expect(restarted.core.store.get("record", "r1")).toBeUndefined()
    return { restarted, pair: pairOf(restarted, n2) }
  }

  it("its own values that its own log no longer held come back from a peer's snapshot, durably", () => {
    const { restarted, pair } = ownValueLost()
    pair.runUntil(4_000)
    expect(restarted.core.store.get("record", "r1")?.value).toEqual(encoder.encode("mine"))
    // Durable, as it came: its store holds it again.
    expect(restarted.durable.image.entries.get("record\u0000r1")?.version.origin).toBe("n1")
    const reasons = JSON.stringify(restarted.core.health(pair.nowMs()))
    expect(reasons).toContain("1 of its own given back by a peer")
  })

  it("a snapshot that gave back its own values in a refused commit is asked for again", () => {
    const { restarted, pair: second } = ownValueLost()
    restarted.state.full = true
    second.runUntil(1_500)
    expect(restarted.core.counters.commitsRefused).toBeGreaterThan(0)
    expect(restarted.durable.image.entries.has("record\u0000r1")).toBe(false)
    restarted.state.full = false
    second.runUntil(5_000)
    expect(restarted.durable.image.entries.get("record\u0000r1")?.version.origin).toBe("n1")
    expect(JSON.stringify(restarted.core.health(second.nowMs()))).toContain(
      "1 of its own given back by a peer",
    )
  })
})
