/**
 * One node's CDB: its local object store and its sync with every other node, as a sans-I/O
 * state machine. The driver (the simulator, or the real node's loop) calls `handle(input, now)`
 * and carries out the outputs it returns, in order: `Persist` before anything after it, then
 * acknowledgements, then datagrams. `now` is always a parameter; timers are data, and the next
 * deadline is always in the outputs. A spurious deadline is harmless.
 *
 * Sync: every node numbers the changes it writes (its stream). Receivers apply each origin's
 * stream strictly in order, buffer what arrives early, and ask a holder to repair gaps (NACK).
 * Periodic digests say how far each node has applied every stream, which finds gaps nobody
 * noticed (after a partition heals, each side asks only for what it lacks) and drives failure
 * detection. A node asked for changes it no longer retains sends a snapshot instead. Relays
 * forward between L2 domains, each datagram only the first time it brings something new.
 */
import { fnv1a32 } from "../hash.ts"
import {
  type Body,
  type Change,
  changeLength,
  type DatagramRejected,
  decode,
  encode,
  headerLength,
  type SnapshotEntry,
  type StatsValue,
  sectionHeaderLength,
  snapshotEntryLength,
  utf8Length,
  varintLength,
  vectorEntryLength,
} from "./codec.ts"
import {
  changeToEntry,
  type DurableImage,
  entryKey,
  type MetaSlot,
  mergeEntry,
  mergeMeta,
  metaKey,
  metaSlotOf,
  type Persist,
  type SpecEntry,
  snapshotToEntry,
} from "./durable.ts"
import { type Clock, observe, tick } from "./hlc.ts"

export interface Member {
  readonly id: string
  /** The L2 domain (multicast group) the node is in. */
  readonly domain: string
  /** A relay carries changes between its domain and the other domains' relays. */
  readonly relay: boolean
}

export interface CdbConfig {
  readonly self: string
  /** A number shared by every node of one cluster; datagrams of another cluster are rejected. */
  readonly cluster: number
  readonly mtu: number
  readonly members: ReadonlyArray<Member>
  readonly heartbeatMs: number
  readonly suspectAfterMs: number
  readonly deadAfterMs: number
  /** How long a gap may stand before the first NACK (reordering usually fills it sooner). */
  readonly nackDelayMs: number
  readonly nackIntervalMs: number
  /** Changes of each origin kept to answer repairs; an older request gets a snapshot. */
  readonly retainChanges: number
  readonly maxPendingPerOrigin: number
  readonly maxRepairChanges: number
  readonly snapshotIntervalMs: number
  /**
   * Snapshot chunks sent per deadline at most (the driver's tick), so a snapshot of a large
   * store goes out at a bounded rate instead of one burst that overflows the receiver's socket
   * buffer — after which it could never complete, and every retry made things worse.
   */
  readonly snapshotChunksPerTick: number
  /** How soon the next chunks go out while a snapshot is being sent. */
  readonly snapshotPaceMs: number
  /**
   * Flow control: how far this node's stream may run ahead of the slowest live member (as its
   * digests say) before writes are refused as "busy". Without it a writer faster than its
   * receivers left them further behind than the retained log, and only snapshots of the whole
   * store could catch them up — the sync benchmark with three writers lost 88% of its updates.
   * Meta is exempt (it is small, and fencing depends on it).
   */
  readonly maxUnconfirmedChanges: number
}

export const defaultCdbConfig = {
  cluster: 1,
  mtu: 1400,
  heartbeatMs: 200,
  suspectAfterMs: 1000,
  deadAfterMs: 3000,
  nackDelayMs: 5,
  nackIntervalMs: 60,
  retainChanges: 4096,
  maxPendingPerOrigin: 8192,
  maxRepairChanges: 512,
  snapshotIntervalMs: 500,
  snapshotChunksPerTick: 64,
  snapshotPaceMs: 5,
  maxUnconfirmedChanges: 3072,
} as const

export type MemberState = "alive" | "suspect" | "dead"

export interface WriteOp {
  readonly requestId: number
  readonly op: "put" | "delete" | "meta"
  readonly kind: string
  readonly id: string
  readonly value: Uint8Array | null
  /**
   * Not held back by flow control (as meta is not): the node's own few writes (its services',
   * its alarms) that the cluster's work depends on. Flow control is for clients' writes.
   */
  readonly unthrottled?: boolean
}

export type Input =
  | { readonly _tag: "Write"; readonly writes: ReadonlyArray<WriteOp> }
  | { readonly _tag: "SetStats"; readonly values: ReadonlyArray<StatsValue> }
  | {
      readonly _tag: "DatagramReceived"
      readonly bytes: Uint8Array
      /** "domain" for the node's multicast group or a unicast; "relay" for an L3 relay link, from `from`. */
      readonly via: "domain" | "relay"
      readonly from?: string
    }
  | { readonly _tag: "DeadlineReached" }
  | { readonly _tag: "MembersChanged"; readonly members: ReadonlyArray<Member> }

export type WriteRejectReason = "too-large" | "bad-name" | "bad-value" | "busy"

export type Output =
  | Persist
  | { readonly _tag: "Acknowledged"; readonly requestIds: ReadonlyArray<number> }
  | {
      readonly _tag: "WriteRejected"
      readonly requestId: number
      readonly reason: WriteRejectReason
      readonly detail: string
    }
  | { readonly _tag: "Multicast"; readonly bytes: Uint8Array }
  | { readonly _tag: "Unicast"; readonly to: string; readonly bytes: Uint8Array }
  | { readonly _tag: "Relay"; readonly to: string; readonly bytes: Uint8Array }
  | { readonly _tag: "Applied"; readonly changes: ReadonlyArray<Change> }
  | {
      readonly _tag: "SnapshotInstalled"
      readonly from: string
      readonly vector: ReadonlyArray<readonly [string, number]>
    }
  | { readonly _tag: "Rejected"; readonly rejection: DatagramRejected }
  | { readonly _tag: "MemberChanged"; readonly node: string; readonly state: MemberState }
  | { readonly _tag: "ArmDeadline"; readonly atMs: number }

export type { MetaSlot }

const noIds: ReadonlySet<string> = new Set()

interface StatsSlot {
  readonly value: Uint8Array
  readonly counter: number
}

interface Gap {
  upTo: number
  holder: string
  detectedMs: number
  lastNackMs: number
}

/** The tail of one origin's stream: changes `start .. start + changes.length - 1`. */
interface RetainedLog {
  start: number
  changes: Array<Change>
}

interface SnapshotInProgress {
  readonly id: number
  /** The sender's incarnation: a restarted sender numbers its snapshots from 1 again. */
  readonly incarnation: number
  readonly chunks: Array<Body & { type: "snapshot" }>
  received: number
  /** When the last chunk arrived: a snapshot still arriving is kept, however long it takes. */
  lastChunkMs: number
}

export interface Counters {
  datagramsSent: number
  datagramsReceived: number
  rejected: number
  duplicates: number
  changesApplied: number
  nacksSent: number
  repairsSent: number
  snapshotsSent: number
  /** Of those, snapshots sent again as they were (the receiver keeps what it has of one). */
  snapshotsResent: number
  snapshotsInstalled: number
  pendingDropped: number
}

const neverMs = Number.MAX_SAFE_INTEGER
/** For how many snapshot intervals a snapshot built for a receiver is sent again, rather than a new one. */
const snapshotKeptIntervals = 10

/** Order-independent fingerprint of a set of (key, version) pairs: XOR of 32-bit hashes. */
const hashString = fnv1a32
const hashNumber = (hash: number, value: number): number => {
  let h = hash ^ (value & 0xffff)
  h = Math.imul(h, 0x01000193)
  h ^= Math.floor(value / 65536) & 0xffffffff
  return Math.imul(h, 0x01000193) >>> 0
}
const entryHash = (
  key: string,
  entry: { ms: number; counter: number; origin: string; seq: number; tomb: boolean },
) =>
  hashNumber(
    hashNumber(hashNumber(hashString(hashString(0x811c9dc5, key), entry.origin), entry.ms), entry.counter),
    entry.seq,
  ) ^ (entry.tomb ? 0x5bd1e995 : 0)

/** The membership as the node uses it on every send, indexed once per change instead of searched per datagram. */
interface Membership {
  readonly byId: ReadonlyMap<string, Member>
  readonly domain: string
  readonly selfRelay: boolean
  /** The relays of the other domains. */
  readonly peerRelays: ReadonlyArray<string>
  /** Each domain's relay (the first listed, if a domain lists several). */
  readonly relayOf: ReadonlyMap<string, string>
}

const indexMembers = (members: ReadonlyArray<Member>, self: string, fallbackDomain: string): Membership => {
  const byId = new Map(members.map((member) => [member.id, member] as const))
  const domain = byId.get(self)?.domain ?? fallbackDomain
  const relayOf = new Map<string, string>()
  for (const member of members)
    if (member.relay && !relayOf.has(member.domain)) relayOf.set(member.domain, member.id)
  return {
    byId,
    domain,
    selfRelay: byId.get(self)?.relay === true,
    peerRelays: members
      .filter((member) => member.relay && member.domain !== domain)
      .map((member) => member.id),
    relayOf,
  }
}

export class CdbNode {
  readonly config: CdbConfig
  readonly incarnation: number
  readonly counters: Counters = {
    datagramsSent: 0,
    datagramsReceived: 0,
    rejected: 0,
    duplicates: 0,
    changesApplied: 0,
    nacksSent: 0,
    repairsSent: 0,
    snapshotsSent: 0,
    snapshotsResent: 0,
    snapshotsInstalled: 0,
    pendingDropped: 0,
  }

  private readonly clock: Clock = { ms: 0, counter: 0 }
  private ownSeq = 0
  private readonly entries = new Map<string, SpecEntry>()
  /** The same entries by kind, then id: services read one kind often (systems, tasks, alarms). */
  private readonly byKind = new Map<string, Map<string, SpecEntry>>()
  private readonly meta = new Map<string, MetaSlot>()
  /** The meta slots by object (kind and id), and the ids with meta by kind: reads without a scan. */
  private readonly metaByObject = new Map<string, Map<string, MetaSlot>>()
  private readonly metaIds = new Map<string, Set<string>>()
  private readonly stats = new Map<string, StatsSlot>()
  private readonly contiguous = new Map<string, number>()
  private readonly pending = new Map<string, Map<number, Change>>()
  private readonly logs = new Map<string, RetainedLog>()
  private readonly gaps = new Map<string, Gap>()
  /** When (local ms) a digest from each node last arrived. */
  private readonly digestHeardMs = new Map<string, number>()
  /** How far each member has applied this node's stream, as its last digest said. */
  private readonly confirmed = new Map<string, number>()
  private readonly lastHeard = new Map<string, number>()
  private readonly memberStates = new Map<string, MemberState>()
  private readonly statsSeen = new Map<string, number>()
  private readonly forwarded = new Map<string, number>()
  private readonly snapshotsIn = new Map<string, SnapshotInProgress>()
  private readonly snapshotSentMs = new Map<string, number>()
  /** The last snapshot built for each receiver, sent again while it is recent (`sendSnapshot`). */
  private readonly snapshotsKept = new Map<
    string,
    { readonly builtMs: number; readonly bodies: Array<Body> }
  >()
  /** Snapshots being sent, per receiver: the chunks still to go out. */
  private readonly snapshotsOut = new Map<
    string,
    { readonly kind: "Unicast" | "Relay"; readonly to: string; readonly bodies: Array<Body>; next: number }
  >()
  private membership: Membership
  private outbox: Array<Change> = []
  private statsOutbox = new Map<string, StatsValue>()
  private statsCounter = 0
  private digestSeq = 0
  private snapshotCounter = 0
  /**
   * Set while this node's own stream lacks values its store lost (a checksum failure its own log
   * could not restore): its peers hold them, so it asks one of them for a snapshot every snapshot
   * interval, each time the next alive peer, until one is installed.
   */
  private ownAsk: { nextMs: number; turn: number } | undefined
  private nextHeartbeatMs: number
  private specFingerprint = 0
  private metaFingerprint = 0

  // Per-step accumulators, drained into outputs at the end of `handle`.
  private outputs: Array<Output> = []
  private persisted: Array<Change> = []
  private applied: Array<Change> = []

  /**
   * `nowMs` is the node's monotonic clock (heartbeats, failure detection, repairs); `wallMs` the
   * wall clock, which only the hybrid logical clock reads (versions). The simulator passes one
   * time for both.
   */
  constructor(config: CdbConfig, nowMs: number, incarnation = 0, image?: DurableImage, wallMs = nowMs) {
    this.config = config
    this.incarnation = incarnation
    this.membership = indexMembers(config.members, config.self, "default")
    this.nextHeartbeatMs = nowMs
    for (const member of config.members) {
      if (member.id !== config.self) {
        this.lastHeard.set(member.id, nowMs)
        this.memberStates.set(member.id, "alive")
      }
    }
    if (image !== undefined) this.restore(image)
    this.clock.ms = Math.max(this.clock.ms, wallMs)
  }

  /**
   * A core rebuilt from the durable image in the same incarnation (after a refused commit) goes
   * on numbering its statistics, digests and snapshots after the core it replaces: receivers drop
   * statistics whose number they have seen in this incarnation, relays forward only a digest
   * newer than the last they forwarded, and a receiver would merge a snapshot's chunks with an
   * older one of the same number. Its digests started from 1 again, so the relays of a
   * three-domain cluster stopped passing them on for as long as the node had been up: the other
   * domains' nodes never saw a majority's digests again, and a restarted node's HA systems stayed
   * down for good (seed 1000299).
   */
  continueNumberingFrom(previous: CdbNode): void {
    this.statsCounter = Math.max(this.statsCounter, previous.statsCounter)
    this.digestSeq = Math.max(this.digestSeq, previous.digestSeq)
    this.snapshotCounter = Math.max(this.snapshotCounter, previous.snapshotCounter)
    // Its hybrid clock never goes back: a write redone after the refused commit gets a new
    // version, not the refused one's again (a wall clock stepped back made them equal; found by
    // the simulator's clock steps, seed 1000087).
    observe(this.clock, previous.clock)
    // And what it knew of its members: when it last heard each and what it made of that. A core
    // rebuilt after a refused commit that started over with every member alive called a dead
    // node alive for as long as the disk stayed full (found by acp vortex, seed 2011).
    for (const [node, heardMs] of previous.lastHeard) this.lastHeard.set(node, heardMs)
    for (const [node, state] of previous.memberStates) this.memberStates.set(node, state)
  }

  /**
   * This node's store lost values of its own stream that its own log no longer held: it asks its
   * peers for them (a snapshot) until one answers. A node with no peer waits for one.
   */
  askPeersForOwn(nowMs: number): void {
    this.ownAsk = { nextMs: nowMs, turn: 0 }
  }

  /** Whether it is still waiting for a peer's snapshot to give back its own lost values. */
  get askingForOwn(): boolean {
    return this.ownAsk !== undefined
  }

  // ---- getters -----------------------------------------------------------------------------

  get self(): string {
    return this.config.self
  }

  /** The spec of an object, or undefined if absent or deleted. */
  get(kind: string, id: string): SpecEntry | undefined {
    const entry = this.entries.get(entryKey(kind, id))
    return entry === undefined || entry.value === null ? undefined : entry
  }

  /** The entry of an object as it is stored, a tombstone included. */
  entry(kind: string, id: string): SpecEntry | undefined {
    return this.entries.get(entryKey(kind, id))
  }

  /** Every entry, tombstones included, in key order. */
  allEntries(): ReadonlyArray<[string, SpecEntry]> {
    return [...this.entries].sort((left, right) => (left[0] < right[0] ? -1 : left[0] > right[0] ? 1 : 0))
  }

  /** The live (not deleted) objects of one kind, in id order. */
  entriesOf(kind: string): ReadonlyArray<SpecEntry> {
    const found: Array<SpecEntry> = []
    for (const entry of this.byKind.get(kind)?.values() ?? []) if (entry.value !== null) found.push(entry)
    return found.sort((left, right) => (left.id < right.id ? -1 : left.id > right.id ? 1 : 0))
  }

  private index(entry: SpecEntry): void {
    let ids = this.byKind.get(entry.kind)
    if (ids === undefined) {
      ids = new Map()
      this.byKind.set(entry.kind, ids)
    }
    ids.set(entry.id, entry)
  }

  /** Meta slots of an object, one per node that wrote one, for nodes that are not dead, in node order. */
  metaOf(kind: string, id: string): ReadonlyArray<MetaSlot> {
    const slots: Array<MetaSlot> = []
    for (const slot of this.metaByObject.get(entryKey(kind, id))?.values() ?? [])
      if (this.memberState(slot.node) !== "dead") slots.push(slot)
    return slots.sort((left, right) => (left.node < right.node ? -1 : left.node > right.node ? 1 : 0))
  }

  /** The ids of one kind's objects that hold meta (a service's state, say, with or without a spec), unordered. */
  metaIdsOf(kind: string): ReadonlySet<string> {
    return this.metaIds.get(kind) ?? noIds
  }

  statsOf(kind: string, id: string, node: string): Uint8Array | undefined {
    return this.stats.get(`${entryKey(kind, id)}\u0000${node}`)?.value
  }

  memberState(node: string): MemberState {
    return node === this.config.self ? "alive" : (this.memberStates.get(node) ?? "dead")
  }

  /** How far this node has applied each origin's stream. */
  vector(): ReadonlyArray<readonly [string, number]> {
    return [...this.contiguous].sort((left, right) => (left[0] < right[0] ? -1 : 1))
  }

  appliedUpTo(origin: string): number {
    return this.contiguous.get(origin) ?? 0
  }

  /** How far `member`'s digests have confirmed this node's own stream (flow control), if it sent one. */
  confirmedBy(member: string): number | undefined {
    return this.confirmed.get(member)
  }

  /** A fingerprint of the spec entries and meta slots: equal stores have equal fingerprints. */
  fingerprint(): string {
    const hex = (value: number) => (value >>> 0).toString(16).padStart(8, "0")
    return `${hex(this.specFingerprint)}${hex(this.metaFingerprint)}`
  }

  entryCount(): number {
    return this.entries.size
  }

  /**
   * How far this node knows it is in sync: the origins it knows it lacks changes of, and when a
   * digest from each node last arrived. A node with no known gap has applied everything every
   * digest it received announced.
   */
  /** How many origins have a known gap (what `syncState` counts, without building it). */
  get gapCount(): number {
    return this.gaps.size
  }

  syncState(): { readonly gaps: number; readonly digestHeardMs: (node: string) => number } {
    return { gaps: this.gaps.size, digestHeardMs: (node) => this.digestHeardMs.get(node) ?? -neverMs }
  }

  /** Origins with a known gap, and how far behind: for `pending()` reports when a run does not converge. */
  gapsReport(): ReadonlyArray<string> {
    return [...this.gaps].map(
      ([origin, gap]) => `${origin}: have ${this.appliedUpTo(origin)}, want ${gap.upTo} from ${gap.holder}`,
    )
  }

  // ---- inputs ------------------------------------------------------------------------------

  /** One input at monotonic time `nowMs`; `wallMs` (the wall clock) only stamps new versions. */
  handle(input: Input, nowMs: number, wallMs = nowMs): ReadonlyArray<Output> {
    switch (input._tag) {
      case "Write":
        this.handleWrites(input.writes, wallMs)
        break
      case "SetStats":
        for (const value of input.values) this.statsOutbox.set(entryKey(value.kind, value.id), value)
        break
      case "DatagramReceived":
        this.handleDatagram(input.bytes, input.via, input.from, nowMs)
        break
      case "DeadlineReached":
        this.handleDeadline(nowMs)
        break
      case "MembersChanged":
        this.membership = indexMembers(input.members, this.config.self, this.membership.domain)
        // A member that is gone is watched no more (its state is no one's concern now).
        for (const node of [...this.memberStates.keys()])
          if (!this.membership.byId.has(node)) {
            this.memberStates.delete(node)
            this.lastHeard.delete(node)
          }
        for (const member of input.members) {
          if (member.id !== this.config.self && !this.lastHeard.has(member.id)) {
            this.lastHeard.set(member.id, nowMs)
            this.memberStates.set(member.id, "alive")
          }
        }
        break
    }
    return this.drain(nowMs)
  }

  /** Own changes the slowest live member has not confirmed yet (members not heard from yet do not count). */
  private unconfirmed(): number {
    let lowest = this.ownSeq
    for (const [member, seq] of this.confirmed)
      if (this.memberState(member) === "alive") lowest = Math.min(lowest, seq)
    return this.ownSeq - lowest
  }

  private handleWrites(writes: ReadonlyArray<WriteOp>, wallMs: number): void {
    const acknowledged: Array<number> = []
    const unconfirmed = this.unconfirmed()
    const busy = unconfirmed >= this.config.maxUnconfirmedChanges
    const room =
      this.config.mtu -
      headerLength(this.config.self, this.incarnation) -
      1 -
      sectionHeaderLength(this.config.self, 1)
    for (const write of writes) {
      if (
        utf8Length(write.kind) === 0 ||
        utf8Length(write.kind) > 255 ||
        utf8Length(write.id) === 0 ||
        utf8Length(write.id) > 255
      ) {
        this.outputs.push({
          _tag: "WriteRejected",
          requestId: write.requestId,
          reason: "bad-name",
          detail: "kind and id must be 1-255 bytes",
        })
        continue
      }
      if (busy && write.op !== "meta" && write.unthrottled !== true) {
        this.outputs.push({
          _tag: "WriteRejected",
          requestId: write.requestId,
          reason: "busy",
          detail: `${unconfirmed} changes of this node are not yet confirmed by every live member (at most ${this.config.maxUnconfirmedChanges}); retry shortly`,
        })
        continue
      }
      if (write.op !== "delete" && write.value === null) {
        this.outputs.push({
          _tag: "WriteRejected",
          requestId: write.requestId,
          reason: "bad-value",
          detail: `${write.op} needs a value`,
        })
        continue
      }
      const version = write.op === "meta" ? { ms: 0, counter: 0 } : tick(this.clock, wallMs, this.config.self)
      const change: Change = {
        origin: this.config.self,
        seq: this.ownSeq + 1,
        op: write.op,
        kind: write.kind,
        id: write.id,
        ms: version.ms,
        counter: version.counter,
        value: write.op === "delete" ? null : write.value,
      }
      const length = changeLength(change)
      if (length > room) {
        this.outputs.push({
          _tag: "WriteRejected",
          requestId: write.requestId,
          reason: "too-large",
          detail: `the change takes ${length} bytes; one datagram holds ${room} at MTU ${this.config.mtu}`,
        })
        continue
      }
      this.ownSeq++
      this.applyInOrder(change)
      this.outbox.push(change)
      acknowledged.push(write.requestId)
    }
    // Persist is drained before the acknowledgement, so an acknowledged write is durable.
    this.flushPersisted()
    if (acknowledged.length > 0) this.outputs.push({ _tag: "Acknowledged", requestIds: acknowledged })
  }

  private handleDatagram(
    bytes: Uint8Array,
    via: "domain" | "relay",
    from: string | undefined,
    nowMs: number,
  ): void {
    const decoded = decode(bytes, this.config.cluster, this.config.mtu)
    if (!decoded.ok) {
      this.counters.rejected++
      this.outputs.push({ _tag: "Rejected", rejection: decoded.rejected })
      return
    }
    const datagram = decoded.datagram
    if (datagram.sender === this.config.self) return
    this.counters.datagramsReceived++
    this.heard(datagram.sender, nowMs)
    if (via === "relay" && from !== undefined) this.heard(from, nowMs)
    const body = datagram.body
    switch (body.type) {
      case "changes": {
        let fresh = false
        for (const section of body.sections) {
          for (const change of section.changes) {
            if (this.receiveChange(change, datagram.sender, nowMs)) fresh = true
          }
        }
        if (fresh) this.forward(bytes, via, from)
        break
      }
      case "digest": {
        this.digestHeardMs.set(datagram.sender, nowMs)
        // Keyed by incarnation too: a restarted node counts its digests from 1 again, and relays
        // must not drop them as old (they did, for as long as it had been up before: its
        // domain's other side declared it dead meanwhile; found with the hypervisor in the sim).
        const key = `d\u0000${datagram.sender}\u0000${datagram.incarnation}\u0000${body.part}`
        if ((this.forwarded.get(key) ?? -1) < body.digestSeq) {
          this.forwarded.set(key, body.digestSeq)
          this.forward(bytes, via, from)
        }
        for (const [origin, seq] of body.vector) {
          if (origin !== this.config.self) this.noteGap(origin, seq, datagram.sender, nowMs)
          else this.confirmed.set(datagram.sender, Math.max(this.confirmed.get(datagram.sender) ?? 0, seq))
        }
        break
      }
      case "nack":
        if (body.target === this.config.self) this.answerNack(body.ranges, datagram.sender, via, from, nowMs)
        break
      case "stats": {
        const key = `s\u0000${datagram.sender}\u0000${datagram.incarnation}`
        if ((this.statsSeen.get(key) ?? -1) >= body.counter) break
        this.statsSeen.set(key, body.counter)
        for (const value of body.values) {
          this.stats.set(`${entryKey(value.kind, value.id)}\u0000${datagram.sender}`, {
            value: value.value,
            counter: body.counter,
          })
        }
        this.forward(bytes, via, from)
        break
      }
      case "snapshot":
        this.receiveSnapshotChunk(datagram.sender, datagram.incarnation, body, nowMs)
        break
    }
  }

  private handleDeadline(nowMs: number): void {
    if (nowMs >= this.nextHeartbeatMs) {
      this.sendDigest()
      this.detectFailures(nowMs)
      this.nextHeartbeatMs = nowMs + this.config.heartbeatMs
      for (const [sender, snapshot] of this.snapshotsIn) {
        if (nowMs - snapshot.lastChunkMs > this.config.snapshotIntervalMs * 4) this.snapshotsIn.delete(sender)
      }
      for (const [key, kept] of this.snapshotsKept)
        if (nowMs - kept.builtMs >= this.config.snapshotIntervalMs * snapshotKeptIntervals)
          this.snapshotsKept.delete(key)
      this.askForOwn(nowMs)
    }
    this.pumpSnapshots(nowMs)
  }

  /** Sends the next chunks of every snapshot in progress. */
  private pumpSnapshots(nowMs: number): void {
    for (const [key, out] of this.snapshotsOut) {
      const end = Math.min(out.bodies.length, out.next + this.config.snapshotChunksPerTick)
      for (; out.next < end; out.next++) this.send(out.kind, out.to, out.bodies[out.next]!)
      if (out.next >= out.bodies.length) {
        this.snapshotsOut.delete(key)
        // The next snapshot to this receiver, if it still needs one, only an interval after this one ended.
        this.snapshotSentMs.set(key, nowMs)
      }
    }
  }

  // ---- the stream: apply in order, buffer early changes, find gaps --------------------------

  /** Returns true when the change was new to this node. */
  private receiveChange(change: Change, holder: string, nowMs: number): boolean {
    const have = this.contiguous.get(change.origin) ?? 0
    if (change.origin === this.config.self || change.seq <= have) {
      this.counters.duplicates++
      return false
    }
    if (change.seq === have + 1) {
      this.applyInOrder(change)
      this.drainPending(change.origin)
      const gap = this.gaps.get(change.origin)
      if (gap !== undefined && (this.contiguous.get(change.origin) ?? 0) >= gap.upTo)
        this.gaps.delete(change.origin)
      return true
    }
    let buffer = this.pending.get(change.origin)
    if (buffer === undefined) {
      buffer = new Map()
      this.pending.set(change.origin, buffer)
    }
    if (buffer.has(change.seq)) {
      this.counters.duplicates++
      return false
    }
    if (buffer.size >= this.config.maxPendingPerOrigin) {
      this.counters.pendingDropped++
    } else {
      buffer.set(change.seq, change)
    }
    this.noteGap(change.origin, change.seq - 1, holder, nowMs)
    return true
  }

  private drainPending(origin: string): void {
    const buffer = this.pending.get(origin)
    if (buffer === undefined) return
    let next = (this.contiguous.get(origin) ?? 0) + 1
    let change = buffer.get(next)
    while (change !== undefined) {
      buffer.delete(next)
      this.applyInOrder(change)
      next++
      change = buffer.get(next)
    }
    if (buffer.size === 0) this.pending.delete(origin)
  }

  private applyInOrder(change: Change): void {
    const expected = (this.contiguous.get(change.origin) ?? 0) + 1
    if (change.seq !== expected)
      throw new Error(
        `cdb ${this.config.self}: applying ${change.origin}#${change.seq}, expected #${expected}`,
      )
    this.contiguous.set(change.origin, change.seq)
    if (change.op === "meta") {
      this.setMeta(metaSlotOf(change))
    } else {
      observe(this.clock, change)
      this.mergeSpec(changeToEntry(change))
    }
    this.retain(change)
    this.persisted.push(change)
    this.applied.push(change)
    this.counters.changesApplied++
  }

  private mergeSpec(entry: SpecEntry): void {
    const key = entryKey(entry.kind, entry.id)
    const previous = this.entries.get(key)
    if (!mergeEntry(this.entries, entry)) return
    this.index(this.entries.get(key)!)
    if (previous !== undefined) this.specFingerprint ^= this.entryHash(key, previous)
    this.specFingerprint ^= this.entryHash(key, entry)
  }

  private entryHash(key: string, entry: SpecEntry): number {
    return entryHash(key, { ...entry.version, seq: entry.seq, tomb: entry.value === null })
  }

  private setMeta(slot: MetaSlot): void {
    const merged = mergeMeta(this.meta, slot)
    if (!merged.replaced) return
    const object = entryKey(slot.kind, slot.id)
    let slots = this.metaByObject.get(object)
    if (slots === undefined) {
      slots = new Map()
      this.metaByObject.set(object, slots)
    }
    slots.set(slot.node, slot)
    let ids = this.metaIds.get(slot.kind)
    if (ids === undefined) {
      ids = new Set()
      this.metaIds.set(slot.kind, ids)
    }
    ids.add(slot.id)
    if (merged.previous !== undefined) this.metaFingerprint ^= this.metaHash(merged.previous)
    this.metaFingerprint ^= this.metaHash(slot)
  }

  private metaHash(slot: MetaSlot): number {
    return entryHash(metaKey(slot.kind, slot.id, slot.node), {
      ms: 0,
      counter: 0,
      origin: slot.node,
      seq: slot.seq,
      tomb: false,
    })
  }

  private retain(change: Change): void {
    let log = this.logs.get(change.origin)
    if (log === undefined || log.start + log.changes.length !== change.seq) {
      log = { start: change.seq, changes: [] }
      this.logs.set(change.origin, log)
    }
    log.changes.push(change)
    if (log.changes.length > this.config.retainChanges * 2) {
      const drop = log.changes.length - this.config.retainChanges
      log.changes.splice(0, drop)
      log.start += drop
    }
  }

  private noteGap(origin: string, upTo: number, holder: string, nowMs: number): void {
    if (upTo <= (this.contiguous.get(origin) ?? 0)) return
    const gap = this.gaps.get(origin)
    if (gap === undefined) {
      this.gaps.set(origin, { upTo, holder, detectedMs: nowMs, lastNackMs: -neverMs })
    } else if (upTo >= gap.upTo) {
      gap.upTo = upTo
      gap.holder = holder
    }
  }

  // ---- repair ------------------------------------------------------------------------------

  /**
   * Where to send a request meant for `holder`: the holder itself when it shares this node's
   * domain; otherwise this domain's relay, or (for a relay) the relay of the holder's domain.
   */
  private routeTo(holder: string): { readonly target: string; readonly via: "domain" | "relay" } | undefined {
    const { byId, domain, selfRelay, relayOf } = this.membership
    const member = byId.get(holder)
    if (member === undefined || member.domain === domain) return { target: holder, via: "domain" }
    const relay = relayOf.get(selfRelay ? member.domain : domain)
    return relay === undefined ? undefined : { target: relay, via: selfRelay ? "relay" : "domain" }
  }

  private sendNacks(nowMs: number): void {
    const byTarget = new Map<
      string,
      { via: "domain" | "relay"; ranges: Array<{ origin: string; from: number; to: number }> }
    >()
    for (const [origin, gap] of this.gaps) {
      const have = this.contiguous.get(origin) ?? 0
      if (have >= gap.upTo) {
        this.gaps.delete(origin)
        continue
      }
      // A holder declared dead answers nothing: the gap is forgotten, and a live member's next
      // digest notes it again, with that member as its holder, if it holds more. Without this a
      // node kept asking an origin that had died for good for changes a survivor held (found
      // with the fault "stay-down": the survivors never converged).
      if (this.memberState(gap.holder === this.config.self ? origin : gap.holder) === "dead") {
        this.gaps.delete(origin)
        continue
      }
      if (
        nowMs < gap.detectedMs + this.config.nackDelayMs ||
        nowMs < gap.lastNackMs + this.config.nackIntervalMs
      )
        continue
      const route = this.routeTo(gap.holder === this.config.self ? origin : gap.holder)
      if (route === undefined || route.target === this.config.self) continue
      gap.lastNackMs = nowMs
      const from = have + 1
      const to = Math.min(gap.upTo, from + this.config.maxRepairChanges - 1)
      const group = byTarget.get(route.target) ?? { via: route.via, ranges: [] }
      group.ranges.push({ origin, from, to })
      byTarget.set(route.target, group)
    }
    for (const [target, group] of byTarget) {
      for (const ranges of this.chunkRanges(group.ranges, target)) {
        this.counters.nacksSent++
        this.send(group.via === "relay" ? "Relay" : "Unicast", target, { type: "nack", target, ranges })
      }
    }
  }

  /** The next alive peer is asked for a snapshot (a request from the stream's start), for this node's own lost values. */
  private askForOwn(nowMs: number): void {
    const ask = this.ownAsk
    if (ask === undefined || nowMs < ask.nextMs) return
    const peers = [...this.membership.byId.keys()].filter(
      (id) => id !== this.config.self && this.memberState(id) === "alive",
    )
    if (peers.length === 0) return
    const peer = peers[ask.turn % peers.length]!
    ask.turn++
    ask.nextMs = nowMs + this.config.snapshotIntervalMs
    const route = this.routeTo(peer)
    if (route === undefined || route.target === this.config.self) return
    this.counters.nacksSent++
    this.send(route.via === "relay" ? "Relay" : "Unicast", route.target, {
      type: "nack",
      target: route.target,
      ranges: [{ origin: this.config.self, from: 0, to: 0 }],
    })
  }

  private chunkRanges(
    ranges: ReadonlyArray<{ origin: string; from: number; to: number }>,
    target: string,
  ): Array<Array<{ origin: string; from: number; to: number }>> {
    const room =
      this.config.mtu - headerLength(this.config.self, this.incarnation) - (1 + utf8Length(target)) - 3
    const chunks: Array<Array<{ origin: string; from: number; to: number }>> = [[]]
    let used = 0
    for (const range of ranges) {
      const length = 1 + utf8Length(range.origin) + varintLength(range.from) + varintLength(range.to)
      if (used + length > room) {
        chunks.push([])
        used = 0
      }
      chunks[chunks.length - 1]!.push(range)
      used += length
    }
    return chunks
  }

  private answerNack(
    ranges: ReadonlyArray<{ origin: string; from: number; to: number }>,
    requester: string,
    via: "domain" | "relay",
    from: string | undefined,
    nowMs: number,
  ): void {
    const replyKind = via === "relay" ? "Relay" : "Unicast"
    const replyTo = via === "relay" && from !== undefined ? from : requester
    const changes: Array<Change> = []
    let snapshot = false
    for (const range of ranges) {
      if (range.from === 0) {
        snapshot = true
        continue
      }
      const log = this.logs.get(range.origin)
      const have = this.contiguous.get(range.origin) ?? 0
      if (have < range.from) continue
      const end = log === undefined ? 0 : log.start + log.changes.length - 1
      // Before what the log keeps, or past it (a store that lost the end of its own log): a snapshot.
      if (log === undefined || range.from < log.start || range.from > end) {
        snapshot = true
        continue
      }
      const last = Math.min(range.to, have, end)
      for (let seq = range.from; seq <= last && changes.length < this.config.maxRepairChanges; seq++) {
        changes.push(log.changes[seq - log.start]!)
      }
    }
    if (changes.length > 0) {
      this.counters.repairsSent += changes.length
      this.sendChanges(changes, replyKind, replyTo)
    }
    if (snapshot) this.sendSnapshot(replyKind, replyTo, nowMs)
  }

  private sendSnapshot(kind: "Unicast" | "Relay", to: string, nowMs: number): void {
    const key = `s\u0000${to}`
    if (this.snapshotsOut.has(key)) return
    if (nowMs < (this.snapshotSentMs.get(key) ?? -neverMs) + this.config.snapshotIntervalMs) return
    this.snapshotSentMs.set(key, nowMs)
    this.counters.snapshotsSent++
    // Asked again soon after: the same snapshot again, so the receiver, which keeps the chunks
    // it has of it, fills in what it lacks. A new one each time (a new id) made it start over:
    // at 5% loss a snapshot of 500 chunks never arrived whole (P = 0.95^500), and a node that
    // needed one never caught up (found by counting HA liveness under loss, seed 3000056).
    const kept = this.snapshotsKept.get(key)
    if (kept !== undefined && nowMs - kept.builtMs < this.config.snapshotIntervalMs * snapshotKeptIntervals) {
      this.counters.snapshotsResent++
      this.snapshotsOut.set(key, { kind, to, bodies: kept.bodies, next: 0 })
      this.pumpSnapshots(nowMs)
      return
    }
    const entries: Array<SnapshotEntry> = []
    for (const entry of this.entries.values()) {
      entries.push({
        tag: "spec",
        kind: entry.kind,
        id: entry.id,
        origin: entry.version.origin,
        seq: entry.seq,
        ms: entry.version.ms,
        counter: entry.version.counter,
        value: entry.value,
      })
    }
    for (const slot of this.meta.values()) {
      entries.push({
        tag: "meta",
        kind: slot.kind,
        id: slot.id,
        origin: slot.node,
        seq: slot.seq,
        ms: 0,
        counter: 0,
        value: slot.value,
      })
    }
    const vector = [...this.contiguous]
    const room = this.config.mtu - headerLength(this.config.self, this.incarnation) - 3 * 4 - 2 * 3
    type Chunk = { vector: Array<readonly [string, number]>; entries: Array<SnapshotEntry> }
    const chunks: Array<Chunk> = [{ vector: [], entries: [] }]
    let used = 0
    const place = (length: number): Chunk => {
      if (used + length > room) {
        chunks.push({ vector: [], entries: [] })
        used = 0
      }
      used += length
      return chunks[chunks.length - 1]!
    }
    for (const [origin, seq] of vector) place(vectorEntryLength(origin, seq)).vector.push([origin, seq])
    for (const entry of entries) place(snapshotEntryLength(entry)).entries.push(entry)
    const snapshotId = ++this.snapshotCounter
    const bodies: Array<Body> = chunks.map((chunk, index) => ({
      type: "snapshot",
      snapshotId,
      chunk: index,
      chunks: chunks.length,
      vector: chunk.vector,
      entries: chunk.entries,
    }))
    this.snapshotsOut.set(key, { kind, to, bodies, next: 0 })
    this.snapshotsKept.set(key, { builtMs: nowMs, bodies })
    this.pumpSnapshots(nowMs)
  }

  private receiveSnapshotChunk(
    sender: string,
    incarnation: number,
    body: Body & { type: "snapshot" },
    nowMs: number,
  ): void {
    let progress = this.snapshotsIn.get(sender)
    if (
      progress === undefined ||
      progress.id !== body.snapshotId ||
      progress.incarnation !== incarnation ||
      progress.chunks.length !== body.chunks
    ) {
      progress = {
        id: body.snapshotId,
        incarnation,
        chunks: new Array(body.chunks),
        received: 0,
        lastChunkMs: nowMs,
      }
      this.snapshotsIn.set(sender, progress)
    }
    progress.lastChunkMs = nowMs
    if (progress.chunks[body.chunk] !== undefined) return
    progress.chunks[body.chunk] = body
    progress.received++
    if (progress.received < body.chunks) return
    this.snapshotsIn.delete(sender)
    const vector = progress.chunks.flatMap((chunk) => chunk.vector)
    const entries = progress.chunks.flatMap((chunk) => chunk.entries)
    this.installSnapshot(sender, vector, entries)
  }

  private installSnapshot(
    sender: string,
    vector: ReadonlyArray<readonly [string, number]>,
    entries: ReadonlyArray<SnapshotEntry>,
  ): void {
    const advanced = vector.filter(
      ([origin, seq]) => origin !== this.config.self && seq > (this.contiguous.get(origin) ?? 0),
    )
    if (advanced.length === 0 && this.ownAsk === undefined && entries.every((entry) => entry.tag === "spec"))
      return
    // Any peer's snapshot holds the latest of every key it knows, this node's own keys included.
    this.ownAsk = undefined
    for (const entry of entries) {
      if (entry.tag === "spec") {
        observe(this.clock, entry)
        this.mergeSpec(snapshotToEntry(entry))
      } else {
        this.setMeta(metaSlotOf(entry))
      }
    }
    for (const [origin, seq] of advanced) {
      this.contiguous.set(origin, seq)
      this.logs.set(origin, { start: seq + 1, changes: [] })
      const buffer = this.pending.get(origin)
      if (buffer !== undefined) for (const stale of [...buffer.keys()]) if (stale <= seq) buffer.delete(stale)
    }
    this.counters.snapshotsInstalled++
    this.flushPersisted()
    this.outputs.push({ _tag: "PersistSnapshot", entries, vector: advanced })
    this.outputs.push({ _tag: "SnapshotInstalled", from: sender, vector: advanced })
    for (const [origin] of advanced) this.drainPending(origin)
  }

  // ---- membership and failure detection ----------------------------------------------------

  /** A member was heard (a sender that is no member, one removed say, is watched by no one). */
  private heard(node: string, nowMs: number): void {
    if (!this.membership.byId.has(node)) return
    this.lastHeard.set(node, nowMs)
    if (this.memberStates.has(node) && this.memberStates.get(node) !== "alive") {
      this.memberStates.set(node, "alive")
      this.outputs.push({ _tag: "MemberChanged", node, state: "alive" })
    }
  }

  private detectFailures(nowMs: number): void {
    for (const [node, last] of this.lastHeard) {
      const silentMs = nowMs - last
      const state: MemberState =
        silentMs < this.config.suspectAfterMs
          ? "alive"
          : silentMs < this.config.deadAfterMs
            ? "suspect"
            : "dead"
      if (this.memberStates.get(node) !== state) {
        this.memberStates.set(node, state)
        this.outputs.push({ _tag: "MemberChanged", node, state })
      }
    }
  }

  // ---- sending -----------------------------------------------------------------------------

  private send(kind: "Multicast" | "Unicast" | "Relay", to: string, body: Body): void {
    const bytes = encode({
      cluster: this.config.cluster,
      sender: this.config.self,
      incarnation: this.incarnation,
      body,
    })
    this.counters.datagramsSent++
    if (kind === "Multicast") this.outputs.push({ _tag: "Multicast", bytes })
    else this.outputs.push({ _tag: kind, to, bytes })
  }

  /** Multicasts into this domain and, from a relay, to every other domain's relay. */
  private broadcast(body: Body): void {
    this.send("Multicast", "", body)
    if (this.membership.selfRelay)
      for (const relay of this.membership.peerRelays) this.send("Relay", relay, body)
  }

  /** A relay passes on what was new to it: into its domain if it came over a relay link, and to the other relays. */
  private forward(bytes: Uint8Array, via: "domain" | "relay", from: string | undefined): void {
    if (!this.membership.selfRelay) return
    if (via === "relay") {
      this.counters.datagramsSent++
      this.outputs.push({ _tag: "Multicast", bytes })
    }
    for (const relay of this.membership.peerRelays) {
      if (relay === from) continue
      this.counters.datagramsSent++
      this.outputs.push({ _tag: "Relay", to: relay, bytes })
    }
  }

  /** Packs changes, grouped by origin in stream order, into datagrams no larger than the MTU. */
  private sendChanges(
    changes: ReadonlyArray<Change>,
    kind: "Multicast" | "Unicast" | "Relay",
    to: string,
  ): void {
    const room = this.config.mtu - headerLength(this.config.self, this.incarnation) - 1
    let sections: Array<{ origin: string; changes: Array<Change> }> = []
    let used = 0
    const flush = () => {
      if (sections.length === 0) return
      const body: Body = { type: "changes", sections }
      if (kind === "Multicast") this.broadcast(body)
      else this.send(kind, to, body)
      sections = []
      used = 0
    }
    for (const change of changes) {
      const length = changeLength(change)
      let section = sections[sections.length - 1]
      const sectionCost =
        section !== undefined && section.origin === change.origin
          ? 0
          : sectionHeaderLength(change.origin, 0xffff)
      if (used + sectionCost + length > room || (sectionCost > 0 && sections.length === 255)) {
        flush()
        section = undefined
      }
      if (section === undefined || section.origin !== change.origin) {
        section = { origin: change.origin, changes: [] }
        sections.push(section)
        used += sectionHeaderLength(change.origin, 0xffff)
      }
      section.changes.push(change)
      used += length
    }
    flush()
  }

  private sendDigest(): void {
    this.digestSeq++
    const room = this.config.mtu - headerLength(this.config.self, this.incarnation) - 3 * 3
    const parts: Array<Array<readonly [string, number]>> = [[]]
    let used = 0
    for (const [origin, seq] of [...this.contiguous, [this.config.self, this.ownSeq] as const]) {
      const length = vectorEntryLength(origin, seq)
      if (used + length > room) {
        parts.push([])
        used = 0
      }
      parts[parts.length - 1]!.push([origin, seq])
      used += length
    }
    for (const [part, vector] of parts.entries()) {
      this.broadcast({ type: "digest", digestSeq: this.digestSeq, part, vector })
    }
  }

  private flushPersisted(): void {
    if (this.persisted.length === 0) return
    this.outputs.push({ _tag: "Persist", changes: this.persisted })
    this.persisted = []
  }

  /** End of every step: persist, report, send what is queued, NACK what is missing, arm the next deadline. */
  private drain(nowMs: number): ReadonlyArray<Output> {
    this.flushPersisted()
    if (this.applied.length > 0) {
      this.outputs.push({ _tag: "Applied", changes: this.applied })
      this.applied = []
    }
    if (this.outbox.length > 0) {
      const outbox = this.outbox
      this.outbox = []
      this.sendChanges(outbox, "Multicast", "")
    }
    if (this.statsOutbox.size > 0) this.sendStats()
    this.sendNacks(nowMs)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  private sendStats(): void {
    const room = this.config.mtu - headerLength(this.config.self, this.incarnation) - 2 * 3
    let values: Array<StatsValue> = []
    let used = 0
    const flush = () => {
      if (values.length === 0) return
      this.broadcast({ type: "stats", counter: ++this.statsCounter, values })
      values = []
      used = 0
    }
    for (const value of this.statsOutbox.values()) {
      const length =
        2 +
        utf8Length(value.kind) +
        utf8Length(value.id) +
        varintLength(value.value.length) +
        value.value.length
      if (length > room) continue
      if (used + length > room) flush()
      values.push(value)
      used += length
      this.stats.set(`${entryKey(value.kind, value.id)}\u0000${this.config.self}`, {
        value: value.value,
        counter: this.statsCounter,
      })
    }
    flush()
    this.statsOutbox.clear()
  }

  private nextDeadline(nowMs: number): number {
    let next = this.nextHeartbeatMs
    if (this.snapshotsOut.size > 0) next = Math.min(next, nowMs + this.config.snapshotPaceMs)
    for (const gap of this.gaps.values()) {
      next = Math.min(
        next,
        Math.max(gap.detectedMs + this.config.nackDelayMs, gap.lastNackMs + this.config.nackIntervalMs),
      )
    }
    return Math.max(next, nowMs)
  }

  // ---- restart -----------------------------------------------------------------------------

  private restore(image: DurableImage): void {
    for (const [key, entry] of image.entries) {
      this.entries.set(key, entry)
      this.index(entry)
      this.specFingerprint ^= this.entryHash(key, entry)
      observe(this.clock, entry.version)
    }
    for (const [origin, seq] of image.vector) this.contiguous.set(origin, seq)
    this.ownSeq = image.vector.get(this.config.self) ?? 0
    const own = image.ownLog.filter((change) => change.seq <= this.ownSeq)
    const first = own[0]
    if (first !== undefined) this.logs.set(this.config.self, { start: first.seq, changes: own.slice() })
    for (const slot of image.meta.values()) this.setMeta(slot)
    this.contiguous.delete(this.config.self)
    this.contiguous.set(this.config.self, this.ownSeq)
  }
}
