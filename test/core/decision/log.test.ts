/**
 * The decision log on a deterministic little cluster (seeded, no clock): five members whose
 * messages are lost, duplicated and reordered, some cut off for a while, who crash and restart
 * from what they made durable, under a sequence of primaries an election could have chosen (one
 * per term, and only one whose log a majority of the live voters finds up to date). Checked at
 * every step: no two members ever apply different entries at one index (state-machine safety),
 * two logs that agree on an entry agree on everything before it (log matching), a new primary
 * holds every entry committed before it (leader completeness), and, once the faults stop, every
 * member applies every acknowledged proposal. Then a member that answers an `Append` without
 * making its entries durable (the planted bug): scripted, and at random, the checkers fire.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  DecisionLog,
  type DurableLog,
  type Entry,
  type LogConfig,
  type Membership,
  type Message,
  type Output,
  type StateMachine,
} from "../../../core/decision/log.ts"
import { Prng } from "../../../sim/prng.ts"

/** A state machine that remembers every command in order: two members agree iff their histories do. */
const history: StateMachine<string, ReadonlyArray<string>, number> = {
  initial: [],
  apply: (state, command) => ({ state: [...state, command], answer: state.length + 1 }),
}

type Log = DecisionLog<string, ReadonlyArray<string>, number>
type Out = Output<string, ReadonlyArray<string>, number>
type Msg = Message<string>

interface Member {
  readonly id: string
  log: Log
  up: boolean
  durable: { snapshot: DurableLog<string, ReadonlyArray<string>>["snapshot"]; entries: Array<Entry<string>> }
  /** What it applied in this run of it (index → command). */
  applied: Map<number, string>
}

const membership: Membership = { voters: ["a", "b", "c", "d", "e"], learners: [] }

/** Bytes of entries per Append and of snapshot text per chunk, and Appends unanswered (absent: no limit, one). */
type Limits = Pick<LogConfig, "maxAppendBytes" | "maxInflight">

/** Five members, a network the test drives, and the checkers on every step. */
class Cluster {
  readonly members: Array<Member>
  private readonly byId: Map<string, Member>
  readonly inFlight: Array<{ to: string; message: Msg }> = []
  readonly violations: Array<string> = []
  /** Every entry some member applied, by index: what is committed. */
  private readonly committed = new Map<number, string>()
  readonly acknowledged = new Set<string>()
  term = 0
  leader: Member | undefined
  private ticket = 0
  /** Members cut off from the others, both ways. */
  cut = new Set<string>()

  private readonly compactAfter: number
  /** The planted bug: this member answers an `Append` without making its entries durable. */
  private readonly unsafe: string | undefined

  private readonly limits: Limits

  constructor(compactAfter: number, unsafe?: string, limits: Limits = {}) {
    this.compactAfter = compactAfter
    this.unsafe = unsafe
    this.limits = limits
    this.members = membership.voters.map((id) => ({
      id,
      log: new DecisionLog(this.config(id), history),
      up: true,
      durable: { snapshot: undefined, entries: [] },
      applied: new Map(),
    }))
    this.byId = new Map(this.members.map((member) => [member.id, member]))
  }

  private config(self: string) {
    return {
      self,
      initial: membership,
      compactAfter: this.compactAfter,
      maxBatch: 8,
      ...(this.limits.maxAppendBytes === undefined ? {} : { maxAppendBytes: this.limits.maxAppendBytes }),
      ...(this.limits.maxInflight === undefined ? {} : { maxInflight: this.limits.maxInflight }),
    }
  }

  member(id: string): Member {
    return this.byId.get(id)!
  }

  private persist(member: Member, output: Out): void {
    if (output._tag === "PersistEntries")
      member.durable.entries = [
        ...member.durable.entries.filter((entry) => entry.index < output.from),
        ...output.entries,
      ]
    else if (output._tag === "PersistSnapshot") {
      member.durable.snapshot = output.snapshot
      member.durable.entries = member.durable.entries.filter((entry) => entry.index > output.snapshot.index)
    }
  }

  carry(member: Member, outputs: ReadonlyArray<Out>): void {
    // The driver's rule: a step's persists are durable before anything of it is sent — except
    // on the unsafe member, whose entries stay in memory only.
    for (const output of outputs)
      if (member.id !== this.unsafe || output._tag !== "PersistEntries") this.persist(member, output)
    for (const output of outputs) {
      if (output._tag === "Send") this.inFlight.push({ to: output.to, message: output.message })
      if (output._tag !== "Applied") continue
      const earlier = this.committed.get(output.index)
      if (earlier !== undefined && earlier !== output.command)
        this.violations.push(
          `state-machine safety: ${member.id} applied ${output.command} at ${output.index}, another applied ${earlier}`,
        )
      this.committed.set(output.index, output.command)
      if (member.applied.has(output.index))
        this.violations.push(`${member.id} applied index ${output.index} twice in one run`)
      member.applied.set(output.index, output.command)
      if (output.ticket !== undefined) this.acknowledged.add(output.command)
    }
  }

  logMatching(): void {
    const logs = this.members.filter((member) => member.up).map((member) => member.log.held())
    // Each log is consecutive from just after its snapshot: one entry per index, in order.
    for (const member of this.members.filter((candidate) => candidate.up)) {
      let expected = member.log.snapshotNow().index + 1
      for (const entry of member.log.held()) {
        if (entry.index !== expected)
          this.violations.push(`${member.id}'s log holds index ${entry.index} where ${expected} belongs`)
        expected = entry.index + 1
      }
    }
    for (const [index, left] of logs.entries())
      for (const right of logs.slice(index + 1)) {
        const byIndex = new Map(right.map((entry) => [entry.index, entry]))
        let agreeFrom: number | undefined
        for (const entry of [...left].reverse()) {
          const other = byIndex.get(entry.index)
          if (other === undefined) continue
          if (agreeFrom === undefined && other.term === entry.term) agreeFrom = entry.index
          if (agreeFrom !== undefined && JSON.stringify(other) !== JSON.stringify(entry))
            this.violations.push(`log matching: two logs agree at ${agreeFrom} but differ at ${entry.index}`)
        }
      }
  }

  /** The members an election could make primary now: a majority of the live voters finds its log up to date. */
  electable(): Array<Member> {
    const live = this.members.filter((member) => member.up && !this.cut.has(member.id))
    const majority = Math.floor(membership.voters.length / 2) + 1
    if (live.length < majority) return []
    return live.filter(
      (candidate) =>
        live.filter((voter) => {
          const position = candidate.log.position()
          return voter.log.upToDate(position.term, position.index)
        }).length >= majority,
    )
  }

  elect(leader: Member): void {
    this.term++
    this.leader = leader
    // Leader completeness: everything committed so far is in the new primary's log (or snapshot).
    const snapshot = leader.log.snapshotNow()
    const held = new Map(leader.log.held().map((entry) => [entry.index, entry]))
    for (const [index, command] of this.committed) {
      if (index <= snapshot.index) continue
      const entry = held.get(index)
      if (entry?.body._tag !== "Command" || entry.body.command !== command)
        this.violations.push(
          `leader completeness: ${leader.id}, primary of term ${this.term}, lacks ${command} at ${index}`,
        )
    }
    for (const member of this.members)
      if (member.up)
        this.carry(
          member,
          member === leader
            ? member.log.handle({ _tag: "Lead", term: this.term })
            : member.log.handle({ _tag: "Follow", term: this.term, leader: leader.id }),
        )
  }

  crash(member: Member): void {
    member.up = false
    if (this.leader === member) this.leader = undefined
  }

  restart(member: Member): void {
    member.up = true
    member.applied = new Map()
    member.log = new DecisionLog(this.config(member.id), history, {
      snapshot: member.durable.snapshot,
      entries: member.durable.entries,
    })
    this.carry(
      member,
      member.log.handle({ _tag: "Follow", term: this.term, leader: this.leader?.id ?? null }),
    )
  }

  propose(): void {
    const leader = this.leader
    if (leader?.up === true)
      this.carry(
        leader,
        leader.log.handle({ _tag: "Propose", command: `c${this.ticket}`, ticket: this.ticket++ }),
      )
  }

  tick(): void {
    for (const member of this.members) if (member.up) this.carry(member, member.log.handle({ _tag: "Tick" }))
  }

  /** Delivers the message at `index` of those in flight, unless a cut is between its ends. */
  deliver(index: number): void {
    const [envelope] = this.inFlight.splice(index, 1)
    if (envelope === undefined) return
    if (this.cut.has(envelope.to) !== this.cut.has(envelope.message.from)) return
    const target = this.member(envelope.to)
    if (target.up) this.carry(target, target.log.handle({ _tag: "Message", message: envelope.message }))
  }

  /** Heartbeats and deliveries until nothing is in flight, `rounds` times. */
  settle(rounds: number): void {
    for (let round = 0; round < rounds; round++) {
      this.tick()
      while (this.inFlight.length > 0) this.deliver(0)
    }
  }
}

const run = (
  seed: number,
  steps: number,
  options: Limits & { compactAfter?: number; unsafe?: string } = {},
) => {
  const random = new Prng(seed)
  const cluster = new Cluster(options.compactAfter ?? 16, options.unsafe, options)
  let cutUntil = 0
  for (let step = 0; step < steps; step++) {
    const faulty = step < steps - 400
    if (step >= cutUntil) cluster.cut = new Set()
    if (faulty && cluster.cut.size === 0 && random.chance(3)) {
      cluster.cut = new Set([random.pick(cluster.members).id, random.pick(cluster.members).id])
      cutUntil = step + random.between(50, 400)
    }
    const roll = random.below(1000)
    // An election now and then, and soon when there is no primary (as the real one would).
    const leaderless = cluster.leader?.up !== true
    if (faulty && (roll < 4 || (leaderless && roll < 60))) {
      // Half the time the adversary's pick: the electable member whose log is furthest behind.
      const candidates = cluster
        .electable()
        .sort((left, right) => left.log.position().index - right.log.position().index)
      if (candidates.length > 0) cluster.elect(random.chance(500) ? candidates[0]! : random.pick(candidates))
    } else if (faulty && roll < 10) {
      // The unsafe member crashes more often: its unstored entries are what the checkers must see lost.
      const member =
        options.unsafe !== undefined && random.chance(500)
          ? cluster.member(options.unsafe)
          : random.pick(cluster.members)
      if (member.up && cluster.members.filter((other) => other.up).length > 3) cluster.crash(member)
      else if (!member.up) cluster.restart(member)
    } else if (roll < 120) cluster.propose()
    else if (roll < 250) cluster.tick()
    else if (cluster.inFlight.length > 0) {
      // A message: any of those in flight (reordering), sometimes lost, sometimes twice.
      const index = faulty ? random.below(cluster.inFlight.length) : 0
      if (faulty && random.chance(100)) cluster.inFlight.splice(index, 1)
      else {
        if (faulty && random.chance(50)) cluster.inFlight.push(cluster.inFlight[index]!)
        cluster.deliver(index)
      }
    }
    if (step % 25 === 0) cluster.logMatching()
  }
  // The quiet end: everyone up and connected, one primary, heartbeats until nothing is in flight.
  cluster.cut = new Set()
  for (const member of cluster.members) if (!member.up) cluster.restart(member)
  const candidates = cluster.electable()
  if (cluster.leader === undefined && candidates.length > 0) cluster.elect(candidates[0]!)
  cluster.settle(200)
  cluster.logMatching()
  const decided = cluster.members.map((member) => member.log.decided())
  for (const command of cluster.acknowledged)
    for (const [index, state] of decided.entries())
      if (!state.includes(command))
        cluster.violations.push(`${cluster.members[index]!.id} lacks ${command}, acknowledged`)
  if (new Set(decided.map((state) => JSON.stringify(state))).size !== 1)
    cluster.violations.push("the members did not end with the same decided state")
  return {
    violations: cluster.violations,
    acknowledged: cluster.acknowledged.size,
    terms: cluster.term,
    decided: decided[0]!.length,
  }
}

describe("the decision log", () => {
  it("on a faulty little cluster: safety at every step, every acknowledged proposal everywhere at the end", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), (seed) => {
        // Half the runs send within a small byte budget: snapshots (the applied history) go in chunks.
        // And a third with Appends pipelined (4 unanswered at most).
        const result = run(seed, 3_000, {
          ...(seed % 2 === 0 ? { maxAppendBytes: 120 } : {}),
          ...(seed % 3 === 0 ? { maxInflight: 4 } : {}),
        })
        expect(result.violations).toEqual([])
        expect(result.decided).toBeGreaterThanOrEqual(result.acknowledged)
      }),
      { numRuns: 60, seed: 42 },
    )
    // The runs do something: primaries come and go, proposals commit.
    const sample = run(7, 3_000)
    expect(sample.terms).toBeGreaterThan(5)
    expect(sample.acknowledged).toBeGreaterThan(10)
  })

  it("a member that installs a snapshot is counted as holding only what it knows matches (seed 464893)", () => {
    // It kept entries past the snapshot from an old term and answered with its last index: the
    // primary counted it for entries it lacked, and, once Appends waited for answers, never sent
    // it the ones it did lack.
    expect(run(464_893, 3_000).violations).toEqual([])
  })

  it("catches up a member from a snapshot once the log it lacks is compacted", () => {
    const result = run(11, 3_000, { compactAfter: 4 })
    expect(result.violations).toEqual([])
    expect(result.acknowledged).toBeGreaterThan(10)
    // And from a snapshot many datagrams long, in chunks, under loss, duplication and reordering.
    const chunked = run(11, 3_000, { compactAfter: 4, maxAppendBytes: 120 })
    expect(chunked.violations).toEqual([])
    expect(chunked.acknowledged).toBeGreaterThan(10)
  })

  it("sends a snapshot larger than a datagram in chunks within the budget; the follower installs it once whole", () => {
    const config = { compactAfter: 4, maxBatch: 8, maxAppendBytes: 100 }
    const primary: Log = new DecisionLog(
      { ...config, self: "a", initial: { voters: ["a"], learners: [] } },
      history,
    )
    primary.handle({ _tag: "Lead", term: 1 })
    for (let ticket = 1; ticket <= 30; ticket++)
      primary.handle({ _tag: "Propose", command: `décision-${"x".repeat(20)}-${ticket}`, ticket })
    expect(primary.snapshotNow().index).toBeGreaterThan(20)
    const follower: Log = new DecisionLog(
      { ...config, self: "b", initial: { voters: ["a"], learners: ["b"] } },
      history,
    )
    let toFollower = primary.handle({
      _tag: "ChangeMembership",
      membership: { voters: ["a"], learners: ["b"] },
      ticket: 99,
    })
    const chunks: Array<Msg & { _tag: "Snapshot" }> = []
    for (let round = 0; round < 200; round++) {
      const toPrimary: Array<Out> = []
      for (const output of toFollower)
        if (output._tag === "Send" && output.to === "b") {
          if (output.message._tag === "Snapshot") {
            chunks.push(output.message)
            // Each chunk fits the budget as it goes on the wire (its data, as JSON, in UTF-8).
            expect(new TextEncoder().encode(JSON.stringify(output.message.data)).length).toBeLessThanOrEqual(
              100,
            )
            // Every chunk arrives twice: the second changes nothing.
            toPrimary.push(...follower.handle({ _tag: "Message", message: output.message }))
          }
          toPrimary.push(...follower.handle({ _tag: "Message", message: output.message }))
        }
      if (toPrimary.length === 0) break
      toFollower = toPrimary.flatMap((output) =>
        output._tag === "Send" && output.to === "a"
          ? primary.handle({ _tag: "Message", message: output.message })
          : [],
      )
    }
    expect(chunks.length).toBeGreaterThan(5)
    expect(follower.snapshotNow()).toEqual(primary.snapshotNow())
    expect(follower.decided()).toEqual(primary.decided())
    // A chunk out of place is not taken: the answer says how much is held (nothing, here).
    const stray = follower.handle({
      _tag: "Message",
      message: { ...chunks[1]!, index: chunks[1]!.index + 50 },
    })
    expect(stray).toEqual([
      {
        _tag: "Send",
        to: "a",
        message: { _tag: "SnapshotReply", term: 1, from: "b", index: chunks[1]!.index + 50, offset: 0 },
      },
    ])
  })

  it("with a member that answers before its entries are durable, the checkers fire (scripted, and at random)", () => {
    const scripted = (unsafe: string | undefined) => {
      const cluster = new Cluster(16, unsafe)
      const [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map((id) => cluster.member(id))
      cluster.elect(b!)
      cluster.settle(3)
      // d and e cut off: x commits on a, b and c.
      cluster.cut = new Set(["d", "e"])
      cluster.propose()
      cluster.settle(3)
      expect(cluster.acknowledged.size).toBe(1)
      // b and c go down, a restarts from its disk; d and e come back.
      cluster.crash(b!)
      cluster.crash(c!)
      cluster.crash(a!)
      cluster.restart(a!)
      cluster.cut = new Set()
      const candidates = cluster.electable()
      // The adversary's choice: d if an election could make it primary, else whoever it can.
      cluster.elect(candidates.includes(d!) ? d! : candidates[0]!)
      cluster.propose()
      cluster.settle(3)
      cluster.restart(b!)
      cluster.restart(c!)
      cluster.settle(3)
      const kept = [a, b, c, d, e].filter((member) => member!.log.decided().includes("c0")).length
      return { violations: cluster.violations, candidates: candidates.map((member) => member.id), kept }
    }
    // With a durable a, only a can be elected among a, d and e: it holds x.
    expect(scripted(undefined)).toEqual({ violations: [], candidates: ["a"], kept: 5 })
    const unsafe = scripted("a")
    expect(unsafe.candidates).toContain("d")
    expect(unsafe.violations.join("\n")).toContain("leader completeness: d, primary of term 2, lacks c0 at 2")
    // And x, acknowledged, is gone everywhere once d's log prevails.
    expect(unsafe.kept).toBe(0)

    const failing = [...Array(200).keys()]
      .map((seed) => run(seed + 1, 3_000, { unsafe: "a" }))
      .filter((result) => result.violations.length > 0)
    process.stdout.write(`the unsafe member at random: ${failing.length} of 200 seeds caught\n`)
    expect(failing.length).toBeGreaterThan(0)
  })

  it("refuses a proposal off the primary, and a second membership change before the first commits", () => {
    const log: Log = new DecisionLog(
      { self: "a", initial: membership, compactAfter: 16, maxBatch: 8 },
      history,
    )
    expect(log.handle({ _tag: "Propose", command: "x", ticket: 1 })).toEqual([
      { _tag: "Refused", ticket: 1, reason: "not-primary" },
    ])
    log.handle({ _tag: "Lead", term: 1 })
    expect(log.ready()).toBe(false)
    const single: Log = new DecisionLog(
      { self: "a", initial: { voters: ["a"], learners: [] }, compactAfter: 16, maxBatch: 8 },
      history,
    )
    single.handle({ _tag: "Lead", term: 1 })
    expect(single.ready()).toBe(true)
    const added = single.handle({
      _tag: "ChangeMembership",
      membership: { voters: ["a", "b"], learners: [] },
      ticket: 2,
    })
    expect(added.map((output) => output._tag)).toContain("MembershipChanged")
    expect(single.membership().voters).toEqual(["a", "b"])
    expect(
      single.handle({
        _tag: "ChangeMembership",
        membership: { voters: ["a", "b", "c"], learners: [] },
        ticket: 3,
      }),
    ).toEqual([{ _tag: "Refused", ticket: 3, reason: "change-in-progress" }])
  })

  it("answers a membership change proposed here once it is committed, with its ticket", () => {
    const pair: Log = new DecisionLog(
      { self: "a", initial: { voters: ["a", "b"], learners: [] }, compactAfter: 16, maxBatch: 8 },
      history,
    )
    const follower: Log = new DecisionLog(
      { self: "b", initial: { voters: ["a", "b"], learners: [] }, compactAfter: 16, maxBatch: 8 },
      history,
    )
    /** Delivers what each sends to the other until nothing is sent; returns a's outputs. */
    const exchange = (first: ReadonlyArray<Out>) => {
      const seen = [...first]
      let toB = first
      for (let round = 0; round < 20; round++) {
        const toA = toB.flatMap((output) =>
          output._tag === "Send" && output.to === "b"
            ? follower.handle({ _tag: "Message", message: output.message })
            : [],
        )
        toB = toA.flatMap((output) =>
          output._tag === "Send" && output.to === "a"
            ? pair.handle({ _tag: "Message", message: output.message })
            : [],
        )
        seen.push(...toB)
        if (toB.length === 0) break
      }
      return seen
    }
    follower.handle({ _tag: "Follow", term: 1, leader: "a" })
    exchange(pair.handle({ _tag: "Lead", term: 1 }))
    expect(pair.ready()).toBe(true)
    const learner = { voters: ["a", "b"], learners: ["c"] }
    const appended = pair.handle({ _tag: "ChangeMembership", membership: learner, ticket: 7 })
    // Appended: in force at once (Raft's rule), answered only once b holds it too.
    expect(pair.membership()).toEqual(learner)
    expect(appended.some((output) => output._tag === "MembershipApplied")).toBe(false)
    expect(pair.membershipCommitted()).toBe(false)
    const answered = exchange(appended).filter((output) => output._tag === "MembershipApplied")
    expect(answered).toEqual([{ _tag: "MembershipApplied", index: 2, membership: learner, ticket: 7 }])
    expect(pair.membershipCommitted()).toBe(true)
    // The follower applies it too, without an answer (it did not propose it).
    expect(follower.membership()).toEqual(learner)
  })

  it("keeps every Append within its byte budget (one entry at least), so it fits a datagram", () => {
    const single: Log = new DecisionLog(
      {
        self: "a",
        initial: { voters: ["a"], learners: [] },
        compactAfter: 1_000,
        maxBatch: 64,
        maxAppendBytes: 300,
      },
      history,
    )
    single.handle({ _tag: "Lead", term: 1 })
    for (let ticket = 1; ticket <= 40; ticket++)
      single.handle({ _tag: "Propose", command: `command-${"x".repeat(40)}-${ticket}`, ticket })
    // A second voter: the primary catches it up, an Append at a time, each within 300 bytes.
    const outputs = single.handle({
      _tag: "ChangeMembership",
      membership: { voters: ["a", "b"], learners: [] },
      ticket: 99,
    })
    const appends = outputs.flatMap((output) =>
      output._tag === "Send" && output.message._tag === "Append" ? [output.message] : [],
    )
    expect(appends.length).toBeGreaterThan(0)
    for (const append of appends) {
      expect(append.entries.length).toBeGreaterThan(0)
      if (append.entries.length > 1)
        expect(JSON.stringify(append.entries).length).toBeLessThanOrEqual(300 + append.entries.length)
    }
    expect(appends[0]!.entries.length).toBeLessThan(40)
  })
  it("pipelines up to maxInflight Appends to a follower that answers, and probes one at a time after a rejection", () => {
    const config = { compactAfter: 1_000, maxBatch: 1, maxInflight: 4 }
    const primary: Log = new DecisionLog(
      { ...config, self: "a", initial: { voters: ["a", "b"], learners: [] } },
      history,
    )
    const follower: Log = new DecisionLog(
      { ...config, self: "b", initial: { voters: ["a", "b"], learners: [] } },
      history,
    )
    const appendsTo = (outputs: ReadonlyArray<Out>) =>
      outputs.flatMap((output) =>
        output._tag === "Send" && output.to === "b" && output.message._tag === "Append"
          ? [output.message]
          : [],
      )
    const deliver = (outputs: ReadonlyArray<Out>) =>
      outputs.flatMap((output) =>
        output._tag === "Send" && output.to === "b"
          ? follower.handle({ _tag: "Message", message: output.message })
          : [],
      )
    const answer = (outputs: ReadonlyArray<Out>) =>
      outputs.flatMap((output) =>
        output._tag === "Send" && output.to === "a"
          ? primary.handle({ _tag: "Message", message: output.message })
          : [],
      )
    // A new primary probes: one Append (its no-op), until the follower answers.
    const probe = primary.handle({ _tag: "Lead", term: 1 })
    expect(appendsTo(probe)).toHaveLength(1)
    expect(appendsTo(answer(deliver(probe)))).toHaveLength(0)
    // Answered: the window is open; each Append carries what the last did not (one entry each here).
    const window = [1, 2, 3, 4, 5, 6].flatMap((ticket) =>
      primary.handle({ _tag: "Propose", command: `c${ticket}`, ticket }),
    )
    const sent = appendsTo(window)
    expect(sent.map((append) => append.entries[0]!.index)).toEqual([2, 3, 4, 5])
    // The first is lost: the three after it are rejected, the window starts over from the gap,
    // and one probe goes per rejection, not a window each.
    const toFollower = window.filter((output) => output._tag === "Send" && output.to === "b")
    expect(toFollower).toHaveLength(4)
    const afterLoss = answer(deliver(toFollower.slice(1)))
    const probes = appendsTo(afterLoss)
    expect(probes.length).toBeGreaterThan(0)
    expect(probes.length).toBeLessThanOrEqual(3)
    for (const append of probes) expect(append.prevIndex).toBe(1)
    // Delivered, everything follows and commits on both.
    let inFlight: Array<Out> = [...afterLoss]
    for (let round = 0; round < 20 && inFlight.length > 0; round++) inFlight = answer(deliver(inFlight))
    expect(primary.decided()).toHaveLength(6)
    expect(follower.position()).toEqual(primary.position())
  })
})
