/**
 * Primary election among the monitors of the voting members, as a sans-I/O state machine:
 * terms, one vote per term (durable before it is sent), a majority to win, and a lease the
 * primary renews. Raft's leader election with PreVote and leader leases, without a log.
 *
 * Safety under clock drift (every clock within `maxDriftPpm` of true time):
 * - A voter that hears the primary at local time r promises not to grant a vote or pre-vote
 *   until r + leaseMs (its clock).
 * - The primary's lease, started by a heartbeat it sent at local time s and that a majority
 *   acknowledged, is valid until s + leaseMs·(1 − 2·drift). Every acknowledging voter received
 *   it after s, so in true time its promise outlasts the lease: no other node can gather a
 *   majority while the lease is valid, and the primary stops acting as primary when it ends.
 * - PreVote: a node asks whether it could win before it raises its term, so a node cut off in
 *   a minority never inflates terms and never disturbs the majority's primary when it returns.
 *
 * Quorum and self-fencing: every node pings every voter, and each ping says whom its sender
 * hears. A peer counts towards this node's majority only both ways: this node heard it, and it
 * heard this node, within `quorumWindowMs` (a node that hears everyone but whom nobody hears has
 * no majority: the others will elect a primary and restart its systems). A node without such a
 * majority for longer than `leaseMs` emits `Fence` (stop its highly available systems), and
 * `Unfence` once it has one again.
 *
 * Each ping names its sender's process (`epoch`, its durable restart count) and says which
 * process of each voter it hears: a node counts a peer as hearing it, and takes a primary's ping
 * as contact (a promise, an acknowledgement), only from a ping that names the process it is. A
 * ping sealed before this process started — played back by an adversary, whatever the clocks
 * say — cannot make it believe it is heard, or that a primary it can no longer reach is alive.
 * (The simulator's clock steps found it: a restarted node whose clock was behind took replayed
 * pings as fresh, and did not fence.)
 */
import { fnv1a32 } from "../hash.ts"

export interface ElectionConfig {
  readonly self: string
  /** The configured voting members, `self` included if it votes. */
  readonly voters: ReadonlyArray<string>
  readonly heartbeatMs: number
  readonly leaseMs: number
  /** Extra wait before an election, spread over the voters so they rarely collide. */
  readonly electionJitterMs: number
  readonly maxDriftPpm: number
  readonly quorumWindowMs: number
  /** This process: the node's durable restart count (0 where there is no store). */
  readonly epoch?: number
  /**
   * The decision log's last entry (`core/decision/log.ts`), when there is one: a candidate sends
   * its own with every (pre-)vote request, and a voter refuses one whose log is behind its own
   * (Raft's leader completeness: a primary holds every committed decision).
   */
  readonly logPosition?: () => { readonly term: number; readonly index: number }
  /**
   * The decision log's commit index, which a primary's pings carry: a node that takes authority
   * from a ping acts on decisions (starts an HA system) only once it has applied that far, so it
   * never acts on a placement that a decision the primary had committed before the ping undid.
   */
  readonly logCommit?: () => number
}

export const defaultElectionTimings = {
  heartbeatMs: 100,
  leaseMs: 1500,
  electionJitterMs: 600,
  maxDriftPpm: 500,
  quorumWindowMs: 400,
} as const

/**
 * How long after a node loses its majority it has certainly fenced itself, in its own clock:
 * its peers stop listing it a quorum window after they last heard it, its own window on them
 * then lapses, then the lease runs out; plus a heartbeat for the tick that notices. The primary
 * must wait at least this long (drift allowed for) before it restarts a lost node's systems.
 */
export const fenceBoundMs = (
  config: Pick<ElectionConfig, "leaseMs" | "quorumWindowMs" | "heartbeatMs">,
): number => config.leaseMs + 2 * config.quorumWindowMs + config.heartbeatMs

export type Message =
  | {
      readonly _tag: "Ping"
      readonly from: string
      readonly term: number
      readonly leader: boolean
      /** The sender is primary with a valid lease now: the only pings that keep HA systems running. */
      readonly leased: boolean
      readonly seq: number
      /** The sender's process: its durable restart count. */
      readonly epoch: number
      /**
       * The voters the sender heard within its quorum window, each with the process it heard:
       * how a receiver learns it is heard (it, not an earlier run of it).
       */
      readonly hears: ReadonlyArray<readonly [string, number]>
      /** The sender's decision-log commit index (`ElectionConfig.logCommit`). */
      readonly commit?: number
    }
  | { readonly _tag: "PingAck"; readonly from: string; readonly term: number; readonly seq: number }
  | {
      readonly _tag: "PreVote"
      readonly from: string
      readonly term: number
      readonly lastTerm?: number
      readonly lastIndex?: number
    }
  | {
      readonly _tag: "PreVoteReply"
      readonly from: string
      /** The term asked about. */
      readonly term: number
      readonly granted: boolean
      /**
       * The voter's own term, on a refusal from a voter already past the candidate's term: the
       * candidate takes it (etcd does the same), or it could ask forever for a term no voter in it
       * would grant, while the voters in it refuse its log.
       */
      readonly voterTerm?: number
    }
  | {
      readonly _tag: "Vote"
      readonly from: string
      readonly term: number
      readonly lastTerm?: number
      readonly lastIndex?: number
    }
  | { readonly _tag: "VoteReply"; readonly from: string; readonly term: number; readonly granted: boolean }

export type Input =
  | { readonly _tag: "MessageReceived"; readonly message: Message }
  | { readonly _tag: "DeadlineReached" }

export type Output =
  | { readonly _tag: "Send"; readonly to: string; readonly message: Message }
  | { readonly _tag: "Broadcast"; readonly message: Message }
  /** Must be durable before the outputs after it are carried out. */
  | { readonly _tag: "PersistVote"; readonly term: number; readonly votedFor: string | null }
  | { readonly _tag: "BecamePrimary"; readonly term: number; readonly leaseUntilMs: number }
  | { readonly _tag: "LeaseRenewed"; readonly term: number; readonly leaseUntilMs: number }
  | { readonly _tag: "SteppedDown"; readonly term: number; readonly reason: string }
  | { readonly _tag: "Fence"; readonly reason: string }
  | { readonly _tag: "Unfence" }
  | { readonly _tag: "ArmDeadline"; readonly atMs: number }

export interface DurableVote {
  readonly term: number
  readonly votedFor: string | null
}

type Role = "follower" | "pre-candidate" | "candidate" | "leader"

const neverMs = Number.MAX_SAFE_INTEGER

/** A deterministic per-node, per-term spread in [0, range): no randomness is needed to break symmetry. */
const spread = (self: string, term: number, range: number): number => {
  let hash = fnv1a32(0x811c9dc5 ^ term, self)
  hash = Math.imul(hash ^ (hash >>> 15), 0x2c1b3c6d)
  return ((hash ^ (hash >>> 12)) >>> 0) % Math.max(1, range)
}

export class ElectionNode {
  readonly config: ElectionConfig
  private term: number
  private votedFor: string | null
  private role: Role = "follower"
  private leader: string | null = null
  /** Until when (local) this node promised not to vote for anyone but the current leader. */
  private promiseUntilMs = -neverMs
  private leaseUntilMs = -neverMs
  private electionAtMs: number
  private nextPingMs: number
  private pingSeq = 0
  private readonly pingSentMs = new Map<number, number>()
  private readonly pingAcks = new Map<number, Set<string>>()
  private readonly votes = new Set<string>()
  private readonly lastHeardMs = new Map<string, number>()
  /** The process of each peer, as its latest ping named it. */
  private readonly epochOf = new Map<string, number>()
  /** When each peer last said (in a ping) that it hears this node. */
  private readonly heardByMs = new Map<string, number>()
  private lastMajorityMs: number
  /** When a leased primary that hears this node last pinged it (local clock). */
  private leaderContactMs = -neverMs
  /** The highest decision-log commit index a leased primary's ping that hears this node carried. */
  private contactCommit = 0
  private leaderSinceMs = -neverMs
  private fenced = false
  /** Whether this node may run for primary: not while its store refuses commits (it could not vote for itself). */
  private candidacy = true
  private outputs: Array<Output> = []
  /** Who votes now: the config's at first, then the decision log's (`setVoters`). */
  private voters: ReadonlyArray<string>

  constructor(config: ElectionConfig, nowMs: number, vote: DurableVote = { term: 0, votedFor: null }) {
    if (config.voters.length === 0) throw new Error("election: no voters configured")
    this.config = config
    this.voters = config.voters
    this.term = vote.term
    this.votedFor = vote.votedFor
    this.nextPingMs = nowMs
    this.lastMajorityMs = nowMs
    // A restarted node also waits out a lease before it may stand, so it cannot cut a live lease short.
    this.promiseUntilMs = nowMs + config.leaseMs
    this.electionAtMs = this.electionDeadline(nowMs)
  }

  // ---- getters -----------------------------------------------------------------------------

  get currentTerm(): number {
    return this.term
  }

  get currentRole(): Role {
    return this.role
  }

  /** The primary this node believes in, if any. */
  get knownLeader(): string | null {
    return this.leader
  }

  /** True while this node is primary with a valid lease: only then may it act as primary. */
  isPrimary(nowMs: number): boolean {
    return this.role === "leader" && nowMs < this.leaseUntilMs
  }

  leaseUntil(): number {
    return this.role === "leader" ? this.leaseUntilMs : -neverMs
  }

  isFenced(): boolean {
    return this.fenced
  }

  /**
   * When this node last knew a primary with a valid lease that hears it: now, if it is that
   * primary. A node with no such contact for a while must assume the majority has moved on.
   */
  /** How far this node must have applied the decision log to act on the authority its primary gives. */
  commitToApply(): number {
    return this.contactCommit
  }

  leaderContact(nowMs: number): number {
    return this.isPrimary(nowMs) ? nowMs : this.leaderContactMs
  }

  /** When this node last became primary (local clock). */
  get primarySince(): number {
    return this.leaderSinceMs
  }

  /** When this node last heard `node` (local clock), or never. */
  lastHeard(node: string): number {
    return this.lastHeardMs.get(node) ?? -neverMs
  }

  seesMajority(nowMs: number): boolean {
    return this.heardCount(nowMs) >= this.majority()
  }

  // ---- inputs ------------------------------------------------------------------------------

  handle(input: Input, nowMs: number): ReadonlyArray<Output> {
    if (input._tag === "MessageReceived") this.receive(input.message, nowMs)
    this.tick(nowMs)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  /**
   * The store refused to make the last `PersistVote` durable, and the driver carried out nothing
   * after it: go back to the vote the store holds. That vote (or term) never left this node, so
   * it becomes a follower in the durable term again — and keeps what it knows of its peers, the
   * fence clock among it, so a node cut off still fences within the bound.
   */
  /**
   * Its node can no longer do a primary's work (its store refuses commits: it can write no alarm,
   * no HA move) or vote: it steps down if it leads and runs for nothing until `resume`. The
   * others elect a primary once their promises to it run out, as after any step-down.
   */
  withdraw(nowMs: number, reason: string): ReadonlyArray<Output> {
    this.candidacy = false
    if (this.role !== "follower") this.adoptTerm(this.term, nowMs, reason)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  /**
   * The voters are now `voters` (the decision log's latest membership, committed or not: Raft's
   * rule, so that any two majorities in use at once intersect, one voter changing at a time).
   * A primary no longer among them goes on until its node says the change is committed.
   */
  setVoters(voters: ReadonlyArray<string>): void {
    if (voters.length > 0) this.voters = voters
  }

  /** Its node can act again: it may run for primary. */
  resume(): void {
    this.candidacy = true
  }

  revertVote(vote: DurableVote, nowMs: number): ReadonlyArray<Output> {
    const wasLeader = this.role === "leader"
    this.term = vote.term
    this.votedFor = vote.votedFor
    this.role = "follower"
    this.leader = null
    this.votes.clear()
    this.leaseUntilMs = -neverMs
    if (wasLeader)
      this.outputs.push({ _tag: "SteppedDown", term: this.term, reason: "its vote is not durable" })
    this.electionAtMs = this.electionDeadline(nowMs)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  private majority(): number {
    return Math.floor(this.voters.length / 2) + 1
  }

  private isVoter(node: string): boolean {
    return this.voters.includes(node)
  }

  private electionDeadline(nowMs: number): number {
    return (
      Math.max(nowMs, this.promiseUntilMs) +
      this.config.heartbeatMs * 2 +
      spread(this.config.self, this.term, this.config.electionJitterMs)
    )
  }

  private hears(node: string, nowMs: number): boolean {
    const heard = this.lastHeardMs.get(node)
    return heard !== undefined && nowMs - heard <= this.config.quorumWindowMs
  }

  /** Voters connected both ways (this node included, if it votes). */
  private heardCount(nowMs: number): number {
    let count = this.isVoter(this.config.self) ? 1 : 0
    for (const [node, heardBy] of this.heardByMs) {
      if (
        node !== this.config.self &&
        this.isVoter(node) &&
        nowMs - heardBy <= this.config.quorumWindowMs &&
        this.hears(node, nowMs)
      ) {
        count++
      }
    }
    return count
  }

  private receive(message: Message, nowMs: number): void {
    if (message.from === this.config.self) return
    this.lastHeardMs.set(message.from, nowMs)
    switch (message._tag) {
      case "Ping": {
        // Runs only grow: a ping played back from an older run of its sender changes nothing.
        this.epochOf.set(message.from, Math.max(this.epochOf.get(message.from) ?? 0, message.epoch))
        const epoch = this.config.epoch ?? 0
        const hearsThis = message.hears.some(([node, heard]) => node === this.config.self && heard === epoch)
        if (!hearsThis) return
        this.heardByMs.set(message.from, nowMs)
        if (message.leased) {
          this.leaderContactMs = nowMs
          this.contactCommit = Math.max(this.contactCommit, message.commit ?? 0)
        }
        if (message.leader) this.onLeaderPing(message, nowMs)
        return
      }
      case "PingAck":
        this.onPingAck(message, nowMs)
        return
      case "PreVote": {
        // Granted only if this node could vote for a new term now: it has heard no live leader,
        // and is none (a node back from a minority asks before the primary's pings name it).
        const granted =
          message.term > this.term &&
          nowMs >= this.promiseUntilMs &&
          !this.isPrimary(nowMs) &&
          this.isVoter(message.from) &&
          this.logUpToDate(message)
        this.send(message.from, {
          _tag: "PreVoteReply",
          from: this.config.self,
          term: message.term,
          granted,
          ...(!granted && this.term >= message.term ? { voterTerm: this.term } : {}),
        })
        return
      }
      case "PreVoteReply":
        if (
          this.role === "pre-candidate" &&
          !message.granted &&
          message.voterTerm !== undefined &&
          message.voterTerm > this.term
        ) {
          this.adoptTerm(message.voterTerm, nowMs, `${message.from} is in term ${message.voterTerm}`)
          return
        }
        if (this.role === "pre-candidate" && message.term === this.term + 1 && message.granted) {
          this.votes.add(message.from)
          if (this.votes.size >= this.majority()) this.startElection(nowMs)
        }
        return
      case "Vote":
        this.onVoteRequest(message, nowMs)
        return
      case "VoteReply":
        if (message.term > this.term) {
          this.adoptTerm(message.term, nowMs, "a higher term answered")
          return
        }
        if (this.role === "candidate" && message.term === this.term && message.granted) {
          this.votes.add(message.from)
          if (this.votes.size >= this.majority()) this.becomeLeader(nowMs)
        }
        return
    }
  }

  private onLeaderPing(message: Message & { _tag: "Ping" }, nowMs: number): void {
    if (message.term < this.term) return
    if (message.term > this.term || this.role !== "follower") {
      this.adoptTerm(message.term, nowMs, `${message.from} is primary in term ${message.term}`)
    }
    this.leader = message.from
    this.promiseUntilMs = nowMs + this.config.leaseMs
    this.electionAtMs = this.electionDeadline(nowMs)
    this.send(message.from, { _tag: "PingAck", from: this.config.self, term: message.term, seq: message.seq })
  }

  private onPingAck(message: Message & { _tag: "PingAck" }, nowMs: number): void {
    if (message.term > this.term) {
      this.adoptTerm(message.term, nowMs, "a higher term acknowledged")
      return
    }
    if (this.role !== "leader" || message.term !== this.term) return
    const acks = this.pingAcks.get(message.seq)
    const sentMs = this.pingSentMs.get(message.seq)
    if (acks === undefined || sentMs === undefined || !this.isVoter(message.from)) return
    acks.add(message.from)
    if (acks.size >= this.majority()) {
      const margin = (this.config.leaseMs * 2 * this.config.maxDriftPpm) / 1_000_000
      const until = sentMs + Math.floor(this.config.leaseMs - margin)
      if (until > this.leaseUntilMs) {
        this.leaseUntilMs = until
        this.outputs.push({ _tag: "LeaseRenewed", term: this.term, leaseUntilMs: until })
      }
      for (const seq of [...this.pingAcks.keys()]) {
        if (seq <= message.seq) {
          this.pingAcks.delete(seq)
          this.pingSentMs.delete(seq)
        }
      }
    }
  }

  private onVoteRequest(message: Message & { _tag: "Vote" }, nowMs: number): void {
    const sticky = nowMs < this.promiseUntilMs && this.leader !== message.from
    if (message.term < this.term || sticky || !this.isVoter(message.from)) {
      this.send(message.from, {
        _tag: "VoteReply",
        from: this.config.self,
        term: Math.max(this.term, message.term),
        granted: false,
      })
      return
    }
    if (message.term > this.term)
      this.adoptTerm(message.term, nowMs, `${message.from} stands in term ${message.term}`)
    const granted = (this.votedFor === null || this.votedFor === message.from) && this.logUpToDate(message)
    if (granted && this.votedFor === null) {
      this.votedFor = message.from
      this.outputs.push({ _tag: "PersistVote", term: this.term, votedFor: this.votedFor })
    }
    if (granted) this.electionAtMs = this.electionDeadline(nowMs)
    this.send(message.from, { _tag: "VoteReply", from: this.config.self, term: this.term, granted })
  }

  /** Whether a candidate's decision log is at least as up to date as this node's (no log: always). */
  private logUpToDate(message: { readonly lastTerm?: number; readonly lastIndex?: number }): boolean {
    const own = this.config.logPosition?.()
    if (own === undefined) return true
    const term = message.lastTerm ?? 0
    const index = message.lastIndex ?? 0
    return term > own.term || (term === own.term && index >= own.index)
  }

  /** This node's decision-log position, for its (pre-)vote requests. */
  private position(): { readonly lastTerm?: number; readonly lastIndex?: number } {
    const own = this.config.logPosition?.()
    return own === undefined ? {} : { lastTerm: own.term, lastIndex: own.index }
  }

  // ---- roles -------------------------------------------------------------------------------

  private adoptTerm(term: number, nowMs: number, reason: string): void {
    const wasLeader = this.role === "leader"
    if (term > this.term) {
      this.term = term
      this.votedFor = null
      this.outputs.push({ _tag: "PersistVote", term, votedFor: null })
    }
    this.role = "follower"
    this.leader = null
    this.votes.clear()
    if (wasLeader) {
      this.leaseUntilMs = -neverMs
      this.outputs.push({ _tag: "SteppedDown", term: this.term, reason })
    }
    this.electionAtMs = this.electionDeadline(nowMs)
  }

  private startPreVote(nowMs: number): void {
    this.role = "pre-candidate"
    this.leader = null
    this.votes.clear()
    if (this.isVoter(this.config.self)) this.votes.add(this.config.self)
    this.broadcast({ _tag: "PreVote", from: this.config.self, term: this.term + 1, ...this.position() })
    this.electionAtMs =
      nowMs +
      this.config.heartbeatMs * 4 +
      spread(this.config.self, this.term + 1, this.config.electionJitterMs)
    if (this.votes.size >= this.majority()) this.startElection(nowMs)
  }

  private startElection(nowMs: number): void {
    this.role = "candidate"
    this.term++
    this.votedFor = this.config.self
    this.outputs.push({ _tag: "PersistVote", term: this.term, votedFor: this.config.self })
    this.votes.clear()
    this.votes.add(this.config.self)
    this.broadcast({ _tag: "Vote", from: this.config.self, term: this.term, ...this.position() })
    this.electionAtMs =
      nowMs + this.config.heartbeatMs * 4 + spread(this.config.self, this.term, this.config.electionJitterMs)
    if (this.votes.size >= this.majority()) this.becomeLeader(nowMs)
  }

  private becomeLeader(nowMs: number): void {
    this.role = "leader"
    this.leader = this.config.self
    this.leaderSinceMs = nowMs
    this.leaseUntilMs = -neverMs
    this.pingAcks.clear()
    this.pingSentMs.clear()
    this.nextPingMs = nowMs
    this.outputs.push({ _tag: "BecamePrimary", term: this.term, leaseUntilMs: this.leaseUntilMs })
  }

  // ---- time --------------------------------------------------------------------------------

  private tick(nowMs: number): void {
    if (nowMs >= this.nextPingMs) {
      this.ping(nowMs)
      this.nextPingMs = nowMs + this.config.heartbeatMs
      // Requests are idempotent: asking again each heartbeat rides out lost datagrams within one round.
      if (this.role === "pre-candidate")
        this.broadcast({ _tag: "PreVote", from: this.config.self, term: this.term + 1, ...this.position() })
      if (this.role === "candidate")
        this.broadcast({ _tag: "Vote", from: this.config.self, term: this.term, ...this.position() })
    }
    if (this.role === "leader") {
      // A leader that could not renew steps down once its lease is over (or if it never got one in time).
      const grace = this.leaseUntilMs === -neverMs ? this.config.leaseMs : 0
      const lastValid = this.leaseUntilMs === -neverMs ? this.electionAtMs : this.leaseUntilMs
      if (nowMs >= lastValid + grace) this.adoptTerm(this.term, nowMs, "lease not renewed by a majority")
    } else if (nowMs >= this.electionAtMs && this.isVoter(this.config.self)) {
      if (this.role === "candidate" || this.role === "pre-candidate") this.role = "follower"
      if (this.candidacy) this.startPreVote(nowMs)
      else this.electionAtMs = this.electionDeadline(nowMs)
    }
    this.checkQuorum(nowMs)
  }

  private ping(nowMs: number): void {
    const seq = ++this.pingSeq
    const leader = this.role === "leader"
    if (leader) {
      this.pingSentMs.set(seq, nowMs)
      this.pingAcks.set(seq, new Set(this.isVoter(this.config.self) ? [this.config.self] : []))
      if (this.pingSentMs.size > 64) {
        const oldest = Math.min(...this.pingSentMs.keys())
        this.pingSentMs.delete(oldest)
        this.pingAcks.delete(oldest)
      }
      if (this.majority() === 1)
        this.onPingAck({ _tag: "PingAck", from: this.config.self, term: this.term, seq }, nowMs)
    }
    // Every node it hears, learners too: a learner takes the primary's pings (its term, its
    // authority to run what is placed on it) only from one that names it.
    // (Voters first, in their order, then the others sorted: the same bytes as before for a
    // cluster of voters only.)
    const voters = new Set(this.voters)
    const others = [...this.epochOf.keys()].filter((node) => !voters.has(node)).sort()
    const hears = [...this.voters, ...others]
      .filter((node) => node !== this.config.self && this.hears(node, nowMs) && this.epochOf.has(node))
      .map((node) => [node, this.epochOf.get(node)!] as const)
    const leased = this.isPrimary(nowMs)
    const commit = this.config.logCommit?.()
    this.broadcast({
      _tag: "Ping",
      from: this.config.self,
      term: this.term,
      leader,
      leased,
      seq,
      epoch: this.config.epoch ?? 0,
      hears,
      ...(commit === undefined ? {} : { commit }),
    })
  }

  private checkQuorum(nowMs: number): void {
    if (this.heardCount(nowMs) >= this.majority()) {
      this.lastMajorityMs = nowMs
      if (this.fenced) {
        this.fenced = false
        this.outputs.push({ _tag: "Unfence" })
      }
    } else if (!this.fenced && nowMs - this.lastMajorityMs > this.config.leaseMs) {
      this.fenced = true
      this.outputs.push({
        _tag: "Fence",
        reason: `no majority of ${this.voters.length} voters seen for ${nowMs - this.lastMajorityMs} ms`,
      })
    }
  }

  /**
   * The next time `tick` has something to do. A leader's election deadline is not one (it only
   * bounds a leader that never got a lease): counted in, a stale one asked for a step every
   * millisecond for as long as the node led.
   */
  private nextDeadline(nowMs: number): number {
    let next = this.nextPingMs
    if (this.role === "leader")
      next = Math.min(
        next,
        this.leaseUntilMs === -neverMs ? this.electionAtMs + this.config.leaseMs : this.leaseUntilMs,
      )
    else if (this.isVoter(this.config.self)) next = Math.min(next, this.electionAtMs)
    if (!this.fenced) next = Math.min(next, this.lastMajorityMs + this.config.leaseMs + 1)
    return Math.max(next, nowMs + 1)
  }

  private send(to: string, message: Message): void {
    this.outputs.push({ _tag: "Send", to, message })
  }

  private broadcast(message: Message): void {
    this.outputs.push({ _tag: "Broadcast", message })
  }
}
