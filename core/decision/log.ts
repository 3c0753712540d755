/**
 * The decision log: what may happen once is decided by a majority of the voters, as Raft decides
 * it, on the election that exists (`core/monitor/election.ts` chooses the primary and its term;
 * this log does not elect). Sans-I/O, like every core: inputs in, outputs out, no clock.
 *
 * - The primary appends; an entry is committed once a majority of the voters hold it durably
 *   (an `Append` is answered only in the step whose `Persist` the driver commits first), and
 *   every member applies committed entries in index order, exactly once.
 * - Raft's log rules: every entry has the term it was appended in; an `Append` names the entry
 *   before its own (`prevIndex`, `prevTerm`) and a follower takes it only if it holds that entry
 *   (log matching), dropping any suffix that conflicts; the primary commits only entries of its
 *   own term by counting (older ones commit with them), and starts every term with a no-op, so
 *   it serves decisions only once everything before it is committed (`ready`).
 * - Leader completeness is the election's part: a voter refuses a candidate whose log is behind
 *   its own (`position`, sent with every vote request).
 * - Bounded: once more than `compactAfter` entries are applied, the decided state is kept as a
 *   snapshot and the entries before it dropped; a follower further behind than the log gets the
 *   snapshot instead of the entries, in chunks that each fit a datagram (`Snapshot`, answered by
 *   `SnapshotReply` with how much has arrived), as Raft's InstallSnapshot sends it.
 * - Membership: the latest configuration entry in the log (committed or not) says who votes and
 *   who only follows (learners). The primary takes one change at a time: a new one only once the
 *   previous is committed (Raft's single-server change, so old and new majorities intersect).
 */

import { chunkOf, jsonSnapshotText } from "./chunks.ts"

export interface Membership {
  readonly voters: ReadonlyArray<string>
  readonly learners: ReadonlyArray<string>
  /**
   * Where the members that joined through the log are reached (the first members are in every
   * node's config): each membership entry carries them whole, so the latest one says it all.
   */
  readonly addresses?: Readonly<Record<string, MemberAddress>>
}

export interface MemberAddress {
  readonly address: string
  /** Its unicast port. */
  readonly port: number
  readonly domain: string
  readonly relay: boolean
  readonly agentPort?: number
  readonly relayPort?: number
}

export type EntryBody<C> =
  | { readonly _tag: "Noop" }
  /** `origin` and `ticket`: who proposed it, and its number there (to answer that caller once applied). */
  | { readonly _tag: "Command"; readonly command: C; readonly origin: string; readonly ticket: number }
  /** `origin` and `ticket` as a command's, for a change proposed through `ChangeMembership`. */
  | {
      readonly _tag: "Membership"
      readonly membership: Membership
      readonly origin?: string
      readonly ticket?: number
    }

export interface Entry<C> {
  readonly index: number
  readonly term: number
  readonly body: EntryBody<C>
}

/** The decided state at an index, with the membership in force there. */
export interface Snapshot<S> {
  readonly index: number
  readonly term: number
  readonly state: S
  readonly membership: Membership
}

/** The state machine the log drives: pure; `apply` returns the next state and the command's answer. */
export interface StateMachine<C, S, A> {
  readonly initial: S
  readonly apply: (state: S, command: C, index: number) => { readonly state: S; readonly answer: A }
}

export type Message<C> =
  | {
      readonly _tag: "Append"
      readonly term: number
      readonly from: string
      readonly prevIndex: number
      readonly prevTerm: number
      readonly entries: ReadonlyArray<Entry<C>>
      readonly commit: number
    }
  | {
      readonly _tag: "AppendReply"
      readonly term: number
      readonly from: string
      readonly success: boolean
      /** On success the last index the follower now holds; on failure where the primary should try next. */
      readonly index: number
    }
  | {
      /**
       * A chunk of the snapshot at `index` (of `snapshotTerm`), as text (`LogConfig.snapshotText`):
       * `data` from `offset` of `total` characters. Chunks go one at a time, each once the last is
       * answered: a decided state of any size reaches a follower in datagrams of one MTU.
       */
      readonly _tag: "Snapshot"
      readonly term: number
      readonly from: string
      readonly index: number
      readonly snapshotTerm: number
      readonly offset: number
      readonly total: number
      readonly data: string
    }
  | {
      /** How much of the snapshot at `index` a follower holds (`offset` characters): the next chunk from there. */
      readonly _tag: "SnapshotReply"
      readonly term: number
      readonly from: string
      readonly index: number
      readonly offset: number
    }

export type Input<C> =
  | { readonly _tag: "Message"; readonly message: Message<C> }
  /** The election made this node primary of `term`. */
  | { readonly _tag: "Lead"; readonly term: number }
  /** The election knows `term` (and, if any, its primary); this node follows. */
  | { readonly _tag: "Follow"; readonly term: number; readonly leader: string | null }
  | { readonly _tag: "Propose"; readonly command: C; readonly ticket: number }
  | { readonly _tag: "ChangeMembership"; readonly membership: Membership; readonly ticket: number }
  /** Time to send what followers lack again (the driver's heartbeat). */
  | { readonly _tag: "Tick" }

export type Output<C, S, A> =
  | { readonly _tag: "Send"; readonly to: string; readonly message: Message<C> }
  /** Made durable before anything else of the step is sent: entries from `from` on replace what was there. */
  | { readonly _tag: "PersistEntries"; readonly from: number; readonly entries: ReadonlyArray<Entry<C>> }
  /** Made durable: the snapshot, and every entry up to its index dropped. */
  | { readonly _tag: "PersistSnapshot"; readonly snapshot: Snapshot<S> }
  | {
      readonly _tag: "Applied"
      readonly index: number
      readonly command: C
      readonly answer: A
      readonly ticket?: number
    }
  | {
      readonly _tag: "Refused"
      readonly ticket: number
      readonly reason: "not-primary" | "change-in-progress"
    }
  | { readonly _tag: "MembershipChanged"; readonly membership: Membership }
  /** A membership change proposed here (`ticket`) is committed: the membership in force from `index`. */
  | {
      readonly _tag: "MembershipApplied"
      readonly index: number
      readonly membership: Membership
      readonly ticket: number
    }

export interface LogConfig {
  readonly self: string
  /** The membership a cluster starts with (before any configuration entry). */
  readonly initial: Membership
  /** Applied entries kept before a snapshot replaces them. */
  readonly compactAfter: number
  /** Entries sent in one `Append` at most. */
  readonly maxBatch: number
  /**
   * And bytes of entries (as JSON) in one `Append` at most — at least one entry goes, whatever
   * its size: an `Append` must fit a datagram. (`bench/decisions.ts` found it: 64 entries of
   * ~150 bytes made a 9 KB `Append` that every follower dropped as oversized, and the log never
   * committed again.) Absent: no limit.
   */
  readonly maxAppendBytes?: number
  /** Appends sent to a follower before the first is answered, at most (absent: 1). */
  readonly maxInflight?: number
  /**
   * A snapshot as text and back (`decode` answers undefined for text that is no snapshot): what
   * its chunks carry. Absent: JSON.
   */
  readonly snapshotText?: {
    readonly encode: (snapshot: Snapshot<unknown>) => string
    readonly decode: (text: string) => Snapshot<unknown> | undefined
  }
}

/** What a member keeps on disk: its snapshot and the entries after it. */
export interface DurableLog<C, S> {
  readonly snapshot: Snapshot<S> | undefined
  readonly entries: ReadonlyArray<Entry<C>>
}

interface Progress {
  next: number
  match: number
  /**
   * Appends (or a snapshot chunk) on their way and not yet answered: at most `maxInflight`, each
   * with entries the last did not carry (`next` moves on as they are sent); what is appended
   * while the window is full waits for an answer, or for the heartbeat, and then goes together.
   * Sending the whole unanswered window again with every proposal had each follower write every
   * entry once per proposal after it (bench/decisions.ts: 51 decisions/s with 256 in flight);
   * one Append at a time of at most a datagram's entries held a busy primary to a few entries
   * per round trip.
   */
  inflight: number
  /**
   * Where the follower's log ends is not known (after a rejection, at the heartbeat): one Append
   * at a time until one succeeds, as etcd's probe state. Pipelining into a gap had every Append
   * after it rejected, and each rejection start the window over again.
   */
  probing: boolean
  /** Of the snapshot being sent: its index, and how much of its text the follower holds. */
  snapshotSent?: { index: number; offset: number }
}

/** A snapshot arriving in chunks: which one (index, term, from which primary's term), and its text so far. */
interface Arriving {
  readonly index: number
  readonly snapshotTerm: number
  readonly term: number
  readonly total: number
  text: string
}

export class DecisionLog<C, S, A> {
  readonly config: LogConfig
  private readonly machine: StateMachine<C, S, A>
  private term = 0
  private role: "leader" | "follower" = "follower"
  private leader: string | null = null
  private snapshot: Snapshot<S>
  private entries: Array<Entry<C>>
  private commitIndex: number
  private applied: number
  private state: S
  /** The index of this primary's no-op: it serves once that is committed. */
  private readyAt = Number.MAX_SAFE_INTEGER
  private readonly progress = new Map<string, Progress>()
  private outputs: Array<Output<C, S, A>> = []

  constructor(config: LogConfig, machine: StateMachine<C, S, A>, durable?: DurableLog<C, S>) {
    this.config = config
    this.machine = machine
    this.snapshot = durable?.snapshot ?? {
      index: 0,
      term: 0,
      state: machine.initial,
      membership: config.initial,
    }
    this.entries = [...(durable?.entries ?? [])].filter((entry) => entry.index > this.snapshot.index)
    // What is committed is not durable here (Raft keeps it volatile): the snapshot is, and the
    // primary says the rest again.
    this.commitIndex = this.snapshot.index
    this.applied = this.snapshot.index
    this.state = this.snapshot.state
  }

  // ---- what others may ask ---------------------------------------------------------------------

  /** The last entry's term and index: what a candidate's log must not be behind (leader completeness). */
  position(): { readonly term: number; readonly index: number } {
    const last = this.entries.at(-1)
    return last === undefined
      ? { term: this.snapshot.term, index: this.snapshot.index }
      : { term: last.term, index: last.index }
  }

  /** Whether a candidate's log (`term`, `index` of its last entry) is at least as up to date as this one. */
  upToDate(term: number, index: number): boolean {
    const own = this.position()
    return term > own.term || (term === own.term && index >= own.index)
  }

  /** The membership in force: the latest configuration in the log, committed or not. */
  membership(): Membership {
    const entry = this.lastMembershipEntry()
    return entry?.body._tag === "Membership" ? entry.body.membership : this.snapshot.membership
  }

  /** Whether the membership in force is committed (no change is under way). */
  membershipCommitted(): boolean {
    const entry = this.lastMembershipEntry()
    return entry === undefined || entry.index <= this.commitIndex
  }

  /**
   * The last membership entry held, found by scanning only what was appended since the last
   * look: the log asks for its membership at every step and every proposal, and a scan of the
   * whole log (up to `compactAfter` entries) each time was most of a busy primary's work.
   * Entries are only appended, truncated and compacted; a look that finds the entries it last
   * saw unchanged (the same array, its last entry still in place) scans the rest only.
   */
  private lastMembershipEntry(): Entry<C> | undefined {
    const entries = this.entries
    const seen = this.membershipScan
    const unchanged =
      seen !== undefined &&
      seen.entries === entries &&
      seen.length <= entries.length &&
      (seen.length === 0 || entries[seen.length - 1] === seen.last)
    let found = unchanged ? seen.found : undefined
    for (let position = unchanged ? seen.length : 0; position < entries.length; position++)
      if (entries[position]!.body._tag === "Membership") found = entries[position]
    this.membershipScan = { entries, length: entries.length, last: entries.at(-1), found }
    return found
  }

  private membershipScan:
    | {
        readonly entries: ReadonlyArray<Entry<C>>
        readonly length: number
        readonly last: Entry<C> | undefined
        readonly found: Entry<C> | undefined
      }
    | undefined

  /** Whether this node is the primary and everything before its term is committed: it may decide. */
  ready(): boolean {
    return this.role === "leader" && this.commitIndex >= this.readyAt
  }

  decided(): S {
    return this.state
  }

  commitIndexNow(): number {
    return this.commitIndex
  }

  appliedIndex(): number {
    return this.applied
  }

  termNow(): number {
    return this.term
  }

  /** The primary this log follows (itself when it leads), as far as it knows. */
  leaderNow(): string | null {
    return this.leader
  }

  /** The entries held after the snapshot (for checkers and `acp monitor log`). */
  held(): ReadonlyArray<Entry<C>> {
    return this.entries
  }

  snapshotNow(): Snapshot<S> {
    return this.snapshot
  }

  // ---- inputs -----------------------------------------------------------------------------------

  handle(input: Input<C>): ReadonlyArray<Output<C, S, A>> {
    switch (input._tag) {
      case "Lead":
        this.lead(input.term)
        break
      case "Follow":
        this.follow(input.term, input.leader)
        break
      case "Propose":
        this.propose(
          { _tag: "Command", command: input.command, origin: this.config.self, ticket: input.ticket },
          input.ticket,
        )
        break
      case "ChangeMembership":
        this.changeMembership(input.membership, input.ticket)
        break
      case "Tick":
        if (this.role === "leader") for (const peer of this.peers()) this.replicate(peer, true)
        break
      case "Message":
        this.receive(input.message)
        break
    }
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  // ---- roles ------------------------------------------------------------------------------------

  private lead(term: number): void {
    if (term < this.term || (term === this.term && this.role === "leader")) return
    this.term = term
    this.role = "leader"
    this.leader = this.config.self
    this.progress.clear()
    const last = this.position().index
    for (const peer of this.peers())
      this.progress.set(peer, { next: last + 1, match: 0, inflight: 0, probing: true })
    this.readyAt = last + 1
    this.append({ _tag: "Noop" })
    for (const peer of this.peers()) this.replicate(peer)
    this.advanceCommit()
  }

  private follow(term: number, leader: string | null): void {
    if (term < this.term) return
    if (term > this.term || this.role === "leader") {
      this.role = "follower"
      this.progress.clear()
      this.readyAt = Number.MAX_SAFE_INTEGER
    }
    this.term = term
    this.leader = leader
  }

  private peers(): ReadonlyArray<string> {
    const membership = this.membership()
    if (this.peersOf?.membership !== membership)
      this.peersOf = {
        membership,
        peers: [...new Set([...membership.voters, ...membership.learners])].filter(
          (peer) => peer !== this.config.self,
        ),
      }
    return this.peersOf.peers
  }

  private peersOf: { readonly membership: Membership; readonly peers: ReadonlyArray<string> } | undefined

  // ---- the primary ------------------------------------------------------------------------------

  private append(body: EntryBody<C>): Entry<C> {
    const entry: Entry<C> = { index: this.position().index + 1, term: this.term, body }
    this.entries.push(entry)
    this.outputs.push({ _tag: "PersistEntries", from: entry.index, entries: [entry] })
    return entry
  }

  private propose(body: EntryBody<C>, ticket: number): void {
    if (!this.ready()) {
      this.outputs.push({ _tag: "Refused", ticket, reason: "not-primary" })
      return
    }
    this.append(body)
    for (const peer of this.peers()) this.replicate(peer)
    this.advanceCommit()
  }

  private changeMembership(membership: Membership, ticket: number): void {
    if (!this.ready()) {
      this.outputs.push({ _tag: "Refused", ticket, reason: "not-primary" })
      return
    }
    // One change at a time, and only one voter in or out: old and new majorities intersect.
    const pending = !this.membershipCommitted()
    const current = new Set(this.membership().voters)
    const next = new Set(membership.voters)
    const changed =
      [...current].filter((voter) => !next.has(voter)).length +
      [...next].filter((voter) => !current.has(voter)).length
    if (pending || changed > 1 || next.size === 0) {
      this.outputs.push({ _tag: "Refused", ticket, reason: "change-in-progress" })
      return
    }
    const before = this.peers()
    this.append({ _tag: "Membership", membership, origin: this.config.self, ticket })
    this.outputs.push({ _tag: "MembershipChanged", membership })
    const last = this.position().index
    for (const peer of this.peers())
      if (!before.includes(peer))
        this.progress.set(peer, { next: last, match: 0, inflight: 0, probing: true })
    for (const peer of before) if (!this.peers().includes(peer)) this.progress.delete(peer)
    for (const peer of this.peers()) this.replicate(peer)
    this.advanceCommit()
  }

  /**
   * What `peer` lacks: entries from its next index, in Appends while fewer than `maxInflight` are
   * unanswered; or a chunk of the snapshot if the log no longer has them, once nothing is. With
   * `again` (the heartbeat: what is unanswered may have been lost) it starts over from what the
   * follower is known to hold, and sends an Append even with nothing new (it carries the commit).
   */
  private replicate(peer: string, again = false): void {
    const progress = this.progress.get(peer)
    if (progress === undefined) return
    if (again) {
      // What is unanswered may have been lost: from what the follower is known to hold (a probe
      // did not move `next`), one at a time.
      progress.inflight = 0
      if (!progress.probing) {
        progress.next = progress.match + 1
        progress.probing = true
      }
    }
    if (progress.next <= this.snapshot.index) {
      if (progress.inflight === 0) this.sendChunk(peer, progress)
      return
    }
    const last = this.position().index
    if (progress.next > last) {
      // Nothing new: an empty Append at the heartbeat, or to learn where a follower stands.
      if (progress.inflight === 0) this.sendAppend(peer, progress)
      return
    }
    const window = progress.probing ? 1 : (this.config.maxInflight ?? 1)
    while (progress.inflight < window && progress.next <= last) this.sendAppend(peer, progress)
  }

  /** The next chunk of the snapshot, from what the follower holds of it (stop-and-wait: one at a time). */
  private sendChunk(peer: string, progress: Progress): void {
    progress.inflight = 1
    if (progress.snapshotSent?.index !== this.snapshot.index)
      progress.snapshotSent = { index: this.snapshot.index, offset: 0 }
    const text = this.snapshotText()
    const offset = Math.min(progress.snapshotSent.offset, text.length)
    this.outputs.push({
      _tag: "Send",
      to: peer,
      message: {
        _tag: "Snapshot",
        term: this.term,
        from: this.config.self,
        index: this.snapshot.index,
        snapshotTerm: this.snapshot.term,
        offset,
        total: text.length,
        data: chunkOf(text, offset, this.config.maxAppendBytes ?? Number.POSITIVE_INFINITY),
      },
    })
  }

  /** An Append of what follows the follower's next index (as much as the budget allows); pipelined, its next moves past it. */
  private sendAppend(peer: string, progress: Progress): void {
    progress.inflight++
    const prevIndex = progress.next - 1
    const prevTerm = this.termAt(prevIndex)!
    const entries: Array<Entry<C>> = []
    let bytes = 0
    const budget = this.config.maxAppendBytes ?? Number.POSITIVE_INFINITY
    const first = this.entries[0]?.index ?? this.snapshot.index + 1
    for (let position = Math.max(0, progress.next - first); position < this.entries.length; position++) {
      const entry = this.entries[position]!
      if (entries.length >= this.config.maxBatch) break
      bytes += entryBytes(entry)
      if (entries.length > 0 && bytes > budget) break
      entries.push(entry)
    }
    this.outputs.push({
      _tag: "Send",
      to: peer,
      message: {
        _tag: "Append",
        term: this.term,
        from: this.config.self,
        prevIndex,
        prevTerm,
        entries,
        commit: this.commitIndex,
      },
    })
    // Pipelined, the next Append carries what follows; a probe goes again from where it went.
    if (!progress.probing) progress.next = prevIndex + entries.length + 1
  }

  /** The highest index a majority of the voters hold, if it is of this term: committed. */
  private advanceCommit(): void {
    if (this.role !== "leader") return
    const voters = this.membership().voters
    const held = voters
      .map((voter) =>
        voter === this.config.self ? this.position().index : (this.progress.get(voter)?.match ?? 0),
      )
      .sort((left, right) => right - left)
    const majority = Math.floor(voters.length / 2) + 1
    // A primary that no longer votes (removed) still decides until its removal commits.
    const candidate = held[majority - 1] ?? 0
    if (candidate > this.commitIndex && this.termAt(candidate) === this.term) this.commit(candidate)
  }

  /** The snapshot as its chunks carry it, encoded once per snapshot. */
  private snapshotText(): string {
    if (this.encoded?.snapshot !== this.snapshot)
      this.encoded = {
        snapshot: this.snapshot,
        text: this.snapshotCodec().encode(this.snapshot),
      }
    return this.encoded.text
  }

  private encoded: { readonly snapshot: Snapshot<S>; readonly text: string } | undefined

  private snapshotCodec() {
    return this.config.snapshotText ?? jsonSnapshotText
  }
  /** The snapshot arriving here in chunks, if one is. */
  private arriving: Arriving | undefined

  private onSnapshotReply(message: Message<C> & { _tag: "SnapshotReply" }): void {
    if (this.role !== "leader" || message.term !== this.term) return
    const progress = this.progress.get(message.from)
    if (progress === undefined) return
    // The follower holds `offset` of it: the next chunk goes from there — back to where it is, if
    // it lost what it had (restarted mid-way). An answer that says nothing new (a duplicate) or
    // is about a snapshot no longer sent is dropped: answering each with a chunk would keep
    // every duplicate alive; a lost chunk goes again at the heartbeat.
    const sent = progress.snapshotSent
    if (sent === undefined || sent.index !== message.index || sent.offset === message.offset) return
    sent.offset = message.offset
    progress.inflight = 0
    this.replicate(message.from)
  }

  private onReply(message: Message<C> & { _tag: "AppendReply" }): void {
    if (this.role !== "leader" || message.term !== this.term) return
    const progress = this.progress.get(message.from)
    if (progress === undefined) return
    progress.inflight = Math.max(0, progress.inflight - 1)
    if (message.success) {
      progress.probing = false
      progress.match = Math.max(progress.match, message.index)
      progress.next = Math.max(progress.next, message.index + 1)
      this.advanceCommit()
      if (progress.next <= this.position().index) this.replicate(message.from)
      return
    }
    // Whatever else is on its way follows the same gap: the window starts over from the hint.
    progress.inflight = 0
    progress.probing = true
    progress.next = Math.max(progress.match + 1, Math.min(progress.next - 1, message.index))
    this.replicate(message.from)
  }

  // ---- followers --------------------------------------------------------------------------------

  private termAt(index: number): number | undefined {
    if (index === this.snapshot.index) return this.snapshot.term
    if (index < this.snapshot.index) return undefined
    const first = this.entries[0]?.index ?? this.snapshot.index + 1
    return this.entries[index - first]?.term
  }

  private receive(message: Message<C>): void {
    if (message._tag === "AppendReply") {
      this.onReply(message)
      return
    }
    if (message._tag === "SnapshotReply") {
      this.onSnapshotReply(message)
      return
    }
    if (message.term < this.term) {
      this.reply(message.from, false, this.position().index + 1)
      return
    }
    if (message.term > this.term || this.role === "leader") this.follow(message.term, message.from)
    this.leader = message.from
    if (message._tag === "Snapshot") {
      const snapshot = this.snapshotChunk(message)
      if (snapshot === undefined) return
      this.installSnapshot(snapshot)
      // Known to match the primary's log: up to the snapshot, and what this log has committed
      // (every later primary holds it). Not the entries kept past the snapshot: they may be an
      // old term's, and counted as held they made the primary count this member for entries it
      // lacked (found once Appends waited for their answers; the log test's seed 464893).
      this.reply(message.from, true, Math.max(snapshot.index, this.commitIndex))
      return
    }
    const prevTerm = this.termAt(message.prevIndex)
    if (message.prevIndex > this.snapshot.index && prevTerm !== message.prevTerm) {
      // Not the entry the primary means: it should try from where this log ends, or before the conflict.
      const hint =
        prevTerm === undefined
          ? this.position().index + 1
          : (this.entries.find((entry) => entry.term === prevTerm)?.index ?? this.snapshot.index + 1)
      this.reply(message.from, false, hint)
      return
    }
    let replacedFrom: number | undefined
    const appended: Array<Entry<C>> = []
    for (const entry of message.entries) {
      if (entry.index <= this.snapshot.index) continue
      const held = this.termAt(entry.index)
      if (held === entry.term && replacedFrom === undefined) continue
      if (replacedFrom === undefined) {
        replacedFrom = entry.index
        const first = this.entries[0]?.index ?? this.snapshot.index + 1
        this.entries.length = Math.max(0, entry.index - first)
      }
      this.entries.push(entry)
      appended.push(entry)
    }
    if (replacedFrom !== undefined) {
      this.outputs.push({ _tag: "PersistEntries", from: replacedFrom, entries: appended })
      if (appended.some((entry) => entry.body._tag === "Membership"))
        this.outputs.push({ _tag: "MembershipChanged", membership: this.membership() })
    }
    const lastNew = message.prevIndex + message.entries.length
    if (message.commit > this.commitIndex) this.commit(Math.min(message.commit, lastNew))
    this.reply(message.from, true, lastNew)
  }

  /**
   * A chunk of a snapshot: taken if it continues the one arriving (or starts one, at offset 0),
   * and answered with how much has arrived; the snapshot once it is whole. A chunk of another
   * snapshot than the one arriving starts over (the primary compacted again, or a new one leads).
   * A whole text that is no snapshot is dropped, as a datagram that fails to decode.
   */
  private snapshotChunk(message: Message<C> & { _tag: "Snapshot" }): Snapshot<S> | undefined {
    let arriving = this.arriving
    const same =
      arriving !== undefined &&
      arriving.index === message.index &&
      arriving.snapshotTerm === message.snapshotTerm &&
      arriving.term === message.term &&
      arriving.total === message.total
    if (!same && message.offset === 0)
      arriving = this.arriving = {
        index: message.index,
        snapshotTerm: message.snapshotTerm,
        term: message.term,
        total: message.total,
        text: "",
      }
    else if (!same) arriving = undefined
    if (arriving !== undefined && message.offset === arriving.text.length && message.data.length > 0)
      arriving.text += message.data.slice(0, arriving.total - arriving.text.length)
    if (arriving !== undefined && arriving.text.length >= arriving.total) {
      this.arriving = undefined
      const decoded = this.snapshotCodec().decode(arriving.text) as Snapshot<S> | undefined
      if (decoded !== undefined && decoded.index === message.index && decoded.term === message.snapshotTerm)
        return decoded
    }
    this.outputs.push({
      _tag: "Send",
      to: message.from,
      message: {
        _tag: "SnapshotReply",
        term: this.term,
        from: this.config.self,
        index: message.index,
        offset: arriving?.text.length ?? 0,
      },
    })
    return undefined
  }

  private reply(to: string, success: boolean, index: number): void {
    this.outputs.push({
      _tag: "Send",
      to,
      message: { _tag: "AppendReply", term: this.term, from: this.config.self, success, index },
    })
  }

  private installSnapshot(snapshot: Snapshot<S>): void {
    if (snapshot.index <= this.applied) return
    // Entries past the snapshot that agree with it stay; anything else goes.
    const keep =
      this.termAt(snapshot.index) === snapshot.term
        ? this.entries.filter((entry) => entry.index > snapshot.index)
        : []
    this.snapshot = snapshot
    this.entries = keep
    this.state = snapshot.state
    this.applied = snapshot.index
    this.commitIndex = Math.max(this.commitIndex, snapshot.index)
    this.outputs.push({ _tag: "PersistSnapshot", snapshot })
    this.outputs.push({ _tag: "MembershipChanged", membership: this.membership() })
  }

  // ---- applying ---------------------------------------------------------------------------------

  private commit(index: number): void {
    this.commitIndex = Math.max(this.commitIndex, Math.min(index, this.position().index))
    while (this.applied < this.commitIndex) {
      const entry = this.entries[this.applied + 1 - (this.entries[0]?.index ?? this.applied + 1)]!
      this.applied = entry.index
      if (
        entry.body._tag === "Membership" &&
        entry.body.origin === this.config.self &&
        entry.body.ticket !== undefined
      )
        this.outputs.push({
          _tag: "MembershipApplied",
          index: entry.index,
          membership: entry.body.membership,
          ticket: entry.body.ticket,
        })
      if (entry.body._tag !== "Command") continue
      const result = this.machine.apply(this.state, entry.body.command, entry.index)
      this.state = result.state
      this.outputs.push({
        _tag: "Applied",
        index: entry.index,
        command: entry.body.command,
        answer: result.answer,
        ...(entry.body.origin === this.config.self ? { ticket: entry.body.ticket } : {}),
      })
    }
    if (this.applied - this.snapshot.index > this.config.compactAfter) this.compact()
  }

  private compact(): void {
    const membership = this.membershipAt(this.applied)
    const snapshot: Snapshot<S> = {
      index: this.applied,
      term: this.termAt(this.applied)!,
      state: this.state,
      membership,
    }
    this.entries = this.entries.filter((entry) => entry.index > snapshot.index)
    this.snapshot = snapshot
    this.outputs.push({ _tag: "PersistSnapshot", snapshot })
  }

  private membershipAt(index: number): Membership {
    let membership = this.snapshot.membership
    for (const entry of this.entries) {
      if (entry.index > index) break
      if (entry.body._tag === "Membership") membership = entry.body.membership
    }
    return membership
  }
}

/** An entry's size as JSON, counted once per entry (an Append's byte budget counts it at every send). */
const entryBytes = (entry: Entry<unknown>): number => {
  let bytes = entrySizes.get(entry)
  if (bytes === undefined) {
    bytes = JSON.stringify(entry).length
    entrySizes.set(entry, bytes)
  }
  return bytes
}
const entrySizes = new WeakMap<Entry<unknown>, number>()

/** What a step of the log asks to make durable. */
export type LogPersist<C, S> =
  | { readonly _tag: "PersistEntries"; readonly from: number; readonly entries: ReadonlyArray<Entry<C>> }
  | { readonly _tag: "PersistSnapshot"; readonly snapshot: Snapshot<S> }

/** A durable log after `persist`: what a store holds once it has made it durable (the simulator's store, and the oracle for SQLite's). */
export const applyLogPersist = <C, S>(
  durable: DurableLog<C, S>,
  persist: LogPersist<C, S>,
): DurableLog<C, S> =>
  persist._tag === "PersistEntries"
    ? {
        snapshot: durable.snapshot,
        entries: [...durable.entries.filter((entry) => entry.index < persist.from), ...persist.entries],
      }
    : {
        snapshot: persist.snapshot,
        entries: durable.entries.filter((entry) => entry.index > persist.snapshot.index),
      }

export const emptyDurableLog: DurableLog<never, never> = { snapshot: undefined, entries: [] }
