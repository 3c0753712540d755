import { describe, expect, it } from "vitest"
import {
  type DurableVote,
  defaultElectionTimings,
  ElectionNode,
  fenceBoundMs,
  type Message,
  type Output,
} from "../../../core/monitor/election.ts"

/**
 * A tiny deterministic harness in the manner of quinn-proto's tests: nodes, a 1 ms network that
 * can be cut per direction, and `run(untilMs)` that jumps time to the earliest wakeup.
 */
class Cluster {
  readonly nodes = new Map<string, ElectionNode>()
  readonly votes = new Map<string, DurableVote>()
  readonly deadlines = new Map<string, number>()
  readonly cut = new Set<string>()
  /** Nodes whose store refuses to persist a vote now (a full disk). */
  readonly refusing = new Set<string>()
  readonly primaries: Array<{ node: string; term: number; atMs: number }> = []
  /** Each node's decision-log position, when the test gives them logs. */
  readonly positions = new Map<string, { term: number; index: number }>()
  readonly fences: Array<{ node: string; atMs: number; fenced: boolean }> = []
  /** Each node's process (its restart count), and the messages an adversary recorded, by receiver. */
  readonly epochs = new Map<string, number>()
  readonly recorded: Array<{ to: string; message: Message }> = []
  private inFlight: Array<{ atMs: number; to: string; message: Message }> = []
  nowMs = 0

  readonly ids: ReadonlyArray<string>
  /** Who votes (every node unless the test says otherwise; the others are learners). */
  readonly voters: ReadonlyArray<string>

  constructor(ids: ReadonlyArray<string>, voters: ReadonlyArray<string> = ids) {
    this.ids = ids
    this.voters = voters
    for (const id of ids) this.start(id)
  }

  start(id: string): void {
    const epoch = (this.epochs.get(id) ?? -1) + 1
    this.epochs.set(id, epoch)
    const node = new ElectionNode(
      {
        ...defaultElectionTimings,
        self: id,
        voters: this.voters,
        epoch,
        logPosition: () => this.positions.get(id) ?? { term: 0, index: 0 },
      },
      this.nowMs,
      this.votes.get(id),
    )
    this.nodes.set(id, node)
    this.apply(id, node.handle({ _tag: "DeadlineReached" }, this.nowMs))
  }

  crash(id: string): void {
    this.nodes.delete(id)
    this.deadlines.delete(id)
  }

  isolate(id: string, direction: "both" | "outgoing" = "both"): void {
    for (const other of this.ids) {
      if (other === id) continue
      this.cut.add(`${id}>${other}`)
      if (direction === "both") this.cut.add(`${other}>${id}`)
    }
  }

  heal(): void {
    this.cut.clear()
  }

  primaryAt(): string | undefined {
    const holders = [...this.nodes].filter(([, node]) => node.isPrimary(this.nowMs)).map(([id]) => id)
    expect(holders.length).toBeLessThanOrEqual(1)
    return holders[0]
  }

  run(untilMs: number): void {
    for (let steps = 0; steps < 1_000_000; steps++) {
      const nextMessage = this.inFlight.reduce(
        (min, item) => Math.min(min, item.atMs),
        Number.MAX_SAFE_INTEGER,
      )
      const nextDeadline = Math.min(...this.deadlines.values(), Number.MAX_SAFE_INTEGER)
      const next = Math.min(nextMessage, nextDeadline)
      if (next > untilMs) break
      this.nowMs = next
      if (nextMessage <= nextDeadline) {
        const index = this.inFlight.findIndex((item) => item.atMs === next)
        const [item] = this.inFlight.splice(index, 1)
        const node = this.nodes.get(item!.to)
        if (node !== undefined)
          this.apply(item!.to, node.handle({ _tag: "MessageReceived", message: item!.message }, this.nowMs))
      } else {
        const id = [...this.deadlines].find(([, at]) => at === next)![0]
        this.deadlines.delete(id)
        this.apply(id, this.nodes.get(id)!.handle({ _tag: "DeadlineReached" }, this.nowMs))
      }
      this.primaryAt()
    }
    this.nowMs = untilMs
  }

  private apply(id: string, outputs: ReadonlyArray<Output>): void {
    for (const output of outputs) {
      switch (output._tag) {
        case "Send":
          this.deliver(id, output.to, output.message)
          break
        case "Broadcast":
          for (const other of this.ids) if (other !== id) this.deliver(id, other, output.message)
          break
        case "PersistVote":
          if (this.refusing.has(id)) {
            // As the driver does: nothing after the refused vote goes out; the core reverts.
            const durable = this.votes.get(id) ?? { term: 0, votedFor: null }
            this.apply(id, this.nodes.get(id)!.revertVote(durable, this.nowMs))
            return
          }
          this.votes.set(id, { term: output.term, votedFor: output.votedFor })
          break
        case "BecamePrimary":
          this.primaries.push({ node: id, term: output.term, atMs: this.nowMs })
          break
        case "Fence":
        case "Unfence":
          this.fences.push({ node: id, atMs: this.nowMs, fenced: output._tag === "Fence" })
          break
        case "ArmDeadline":
          this.deadlines.set(id, Math.min(this.deadlines.get(id) ?? Number.MAX_SAFE_INTEGER, output.atMs))
          break
        default:
          break
      }
    }
  }

  /** Plays back to `to`, as it arrives now, a message the adversary recorded. */
  playBack(to: string, message: Message): void {
    this.inFlight.push({ atMs: this.nowMs + 1, to, message })
  }

  private deliver(from: string, to: string, message: Message): void {
    this.recorded.push({ to, message })
    if (this.recorded.length > 10_000) this.recorded.splice(0, 5_000)
    if (!this.cut.has(`${from}>${to}`)) this.inFlight.push({ atMs: this.nowMs + 1, to, message })
  }
}

describe("election", () => {
  it("elects exactly one primary among five within a few seconds, and keeps it while nothing fails", () => {
    const cluster = new Cluster(["n1", "n2", "n3", "n4", "n5"])
    cluster.run(3_000)
    const primary = cluster.primaryAt()
    expect(primary).toBeDefined()
    cluster.run(20_000)
    expect(cluster.primaryAt()).toBe(primary)
    expect(cluster.primaries.length).toBe(1)
  })

  it("crash the primary: another takes over within 5 s, in a higher term", () => {
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.run(3_000)
    const first = cluster.primaryAt()!
    const firstTerm = cluster.nodes.get(first)!.currentTerm
    cluster.crash(first)
    const crashedAt = cluster.nowMs
    cluster.run(crashedAt + 5_000)
    const second = cluster.primaryAt()
    expect(second).toBeDefined()
    expect(second).not.toBe(first)
    expect(cluster.nodes.get(second!)!.currentTerm).toBeGreaterThan(firstTerm)
  })

  it("partition 2|3 with the primary on the minority side: it steps down before the majority elects, and the minority has none", () => {
    const cluster = new Cluster(["n1", "n2", "n3", "n4", "n5"])
    cluster.run(3_000)
    const old = cluster.primaryAt()!
    const others = cluster.ids.filter((id) => id !== old)
    const minority = [old, others[0]!]
    for (const a of minority)
      for (const b of cluster.ids) if (!minority.includes(b)) cluster.cut.add(`${a}>${b}`).add(`${b}>${a}`)
    cluster.run(cluster.nowMs + 6_000)
    const now = cluster.primaryAt()
    expect(now).toBeDefined()
    expect(minority).not.toContain(now)
    for (const id of minority) expect(cluster.nodes.get(id)!.isPrimary(cluster.nowMs)).toBe(false)
  })

  it("a node cut off in a minority does not raise terms, and does not disturb the primary when it returns (PreVote)", () => {
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.run(3_000)
    const primary = cluster.primaryAt()!
    const term = cluster.nodes.get(primary)!.currentTerm
    const loner = cluster.ids.find((id) => id !== primary)!
    cluster.isolate(loner)
    cluster.run(cluster.nowMs + 20_000)
    expect(cluster.nodes.get(loner)!.currentTerm).toBe(term)
    cluster.heal()
    cluster.run(cluster.nowMs + 5_000)
    expect(cluster.primaryAt()).toBe(primary)
    expect(cluster.nodes.get(primary)!.currentTerm).toBe(term)
  })

  it("a node that hears everyone but whom nobody hears fences itself within the fence bound, and unfences after", () => {
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.run(3_000)
    const cutAt = cluster.nowMs
    cluster.isolate("n2", "outgoing")
    cluster.run(cutAt + fenceBoundMs(defaultElectionTimings) + 10)
    const fence = cluster.fences.find((event) => event.node === "n2" && event.fenced)
    expect(fence).toBeDefined()
    expect(fence!.atMs - cutAt).toBeLessThanOrEqual(fenceBoundMs(defaultElectionTimings))
    cluster.heal()
    cluster.run(cluster.nowMs + 2_000)
    expect(cluster.nodes.get("n2")!.isFenced()).toBe(false)
  })

  it("a restarted node cut off fences though an adversary plays back the pings it was sent before its restart", () => {
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.run(3_000)
    const victim = cluster.ids.find((id) => id !== cluster.primaryAt())!
    const pings = cluster.recorded.filter(
      (item) => item.to === victim && item.message._tag === "Ping" && item.message.hears.length > 0,
    )
    expect(pings.length).toBeGreaterThan(20)
    cluster.crash(victim)
    cluster.run(cluster.nowMs + 100)
    cluster.isolate(victim)
    cluster.start(victim)
    const restartedAt = cluster.nowMs
    // Every 20 ms, the next of the pings its peers sent it in its last run (as the clocks go,
    // they might pass as fresh: a receiver whose clock is behind), in order.
    for (let at = 0, next = 0; at < 5_000; at += 20, next++) {
      const item = pings[next % pings.length]!
      cluster.playBack(victim, item.message)
      cluster.run(restartedAt + at + 20)
    }
    const fence = cluster.fences.find(
      (event) => event.node === victim && event.fenced && event.atMs >= restartedAt,
    )
    expect(fence, "the restarted node never fenced").toBeDefined()
    expect(fence!.atMs - restartedAt).toBeLessThanOrEqual(fenceBoundMs(defaultElectionTimings))
    // And it promised no primary on the strength of them: it would grant a pre-vote now.
    expect(cluster.nodes.get(victim)!.knownLeader).toBeNull()
  })

  it("a restarted voter keeps its vote for the term (durable) and waits out a lease before standing", () => {
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.run(3_000)
    const voter = cluster.ids.find((id) => id !== cluster.primaryAt())!
    const before = cluster.votes.get(voter)
    cluster.crash(voter)
    cluster.run(cluster.nowMs + 100)
    cluster.start(voter)
    expect(cluster.nodes.get(voter)!.currentTerm).toBe(before?.term)
    cluster.run(cluster.nowMs + 5_000)
    expect(cluster.primaries.length).toBe(1)
  })

  it("voters whose store refuses their votes cast none and elect no one; once it takes them, they elect", () => {
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.run(3_000)
    const primary = cluster.primaryAt()!
    const survivors = cluster.ids.filter((id) => id !== primary)
    const durable = new Map(survivors.map((id) => [id, cluster.votes.get(id)]))
    cluster.crash(primary)
    for (const id of survivors) cluster.refusing.add(id)
    cluster.run(cluster.nowMs + 5_000)
    expect(cluster.primaries.length).toBe(1)
    for (const id of survivors) {
      expect(cluster.votes.get(id)).toEqual(durable.get(id))
      expect(cluster.nodes.get(id)!.currentTerm).toBe(durable.get(id)?.term ?? 0)
    }
    cluster.refusing.clear()
    cluster.run(cluster.nowMs + 5_000)
    expect(cluster.primaries.length).toBe(2)
    expect(cluster.primaries[1]!.term).toBeGreaterThan(cluster.primaries[0]!.term)
  })

  it("never elects a candidate whose decision log is behind a majority's (leader completeness)", () => {
    for (const behind of ["n1", "n2", "n3"]) {
      const cluster = new Cluster(["n1", "n2", "n3"])
      for (const id of cluster.ids)
        cluster.positions.set(id, id === behind ? { term: 1, index: 2 } : { term: 1, index: 7 })
      cluster.run(5_000)
      expect(cluster.primaryAt()).toBeDefined()
      expect(cluster.primaries.map((primary) => primary.node)).not.toContain(behind)
    }
    // n3 is behind both: whichever of n1 and n2 leads, when it dies the other takes over, never n3.
    const cluster = new Cluster(["n1", "n2", "n3"])
    cluster.positions.set("n1", { term: 1, index: 9 })
    cluster.positions.set("n2", { term: 1, index: 9 })
    cluster.positions.set("n3", { term: 1, index: 4 })
    cluster.run(5_000)
    const first = cluster.primaryAt()!
    expect(["n1", "n2"]).toContain(first)
    cluster.crash(first)
    cluster.run(15_000)
    expect(cluster.primaryAt()).toBe(first === "n1" ? "n2" : "n1")
  })

  // Sim seed 9300225: the primary of term 2 died for good; the two voters that had elected it were
  // in term 2 with the shortest logs, the two with the longest still in term 1. Each side refused
  // the other's pre-votes (a term not past its own; a log behind), and no one was elected for a minute.
  it("a candidate ahead in its log but behind in its term takes the term from the refusals, and is elected", () => {
    const cluster = new Cluster(["n1", "n2", "n3", "n4", "n5"])
    for (const id of cluster.ids) cluster.crash(id)
    const logs: Record<string, { term: number; index: number }> = {
      n1: { term: 1, index: 32 },
      n2: { term: 1, index: 31 },
      n3: { term: 1, index: 33 },
      n4: { term: 1, index: 30 },
    }
    for (const [id, position] of Object.entries(logs)) cluster.positions.set(id, position)
    cluster.votes.set("n1", { term: 1, votedFor: "n3" })
    cluster.votes.set("n2", { term: 2, votedFor: "n5" })
    cluster.votes.set("n3", { term: 1, votedFor: "n3" })
    cluster.votes.set("n4", { term: 2, votedFor: "n5" })
    for (const id of ["n1", "n2", "n3", "n4"]) cluster.start(id)
    cluster.run(10_000)
    expect(["n1", "n3"]).toContain(cluster.primaryAt())
    expect(cluster.primaries.every((primary) => primary.term > 2)).toBe(true)
  })

  it("learners follow the primary without voting or fencing; voters changed on every node count from then on", () => {
    const cluster = new Cluster(["a", "b", "c", "d", "e"], ["a", "b", "c"])
    cluster.run(5_000)
    const primary = cluster.primaryAt()!
    expect(["a", "b", "c"]).toContain(primary)
    // The learners know the primary (its pings name them) and are never fenced.
    for (const learner of ["d", "e"]) expect(cluster.nodes.get(learner)!.knownLeader).toBe(primary)
    expect(cluster.fences.filter((fence) => fence.fenced)).toEqual([])
    // The voters become b, c, d (as the log's membership would say it on every node): a and e
    // die, and the three of the new voters that live elect among themselves.
    for (const node of cluster.nodes.values()) node.setVoters(["b", "c", "d"])
    cluster.crash("a")
    cluster.crash("e")
    cluster.run(15_000)
    expect(["b", "c", "d"]).toContain(cluster.primaryAt())
  })

  it("a single voter is its own majority", () => {
    const cluster = new Cluster(["solo"])
    cluster.run(3_000)
    expect(cluster.primaryAt()).toBe("solo")
  })
})
