/**
 * One ACP node, composed once: the CDB, the election (quorum, leases, fencing), the alarms the
 * primary raises, the health score, the services' states and the services themselves (the
 * hypervisor now), behind one `handle(input, nowMs, wallMs) → Step` and one next deadline — the
 * way quinn-proto's `Endpoint` owns its `Connection`s. The real node (`adapters/node/node.ts`)
 * and the simulator (`sim/`) are two drivers of this one object: what the simulator proves is
 * what runs.
 *
 * Time: `nowMs` is the node's monotonic clock — every lease, quorum window, fence deadline,
 * back-off and timeout runs on it; `wallMs` is the wall clock, which only the hybrid logical
 * clock reads (the versions of new writes). Both only ever come in as arguments.
 *
 * Durability: a step's `commit` (the CDB's persists and the election's vote, one transaction)
 * must be durable before anything in its `outputs` is carried out. If the store refuses it, the
 * driver carries out nothing of `outputs` and hands the core `CommitRefused` with what is
 * durable: the core goes back to it, and the writes of the refused step are answered as refused
 * (a service's are held and written again). A service's `effects` (driver calls) do not reveal
 * anything not durable and are carried out either way.
 */
import type { Change } from "../cdb/codec.ts"
import type { DurableImage, Persist } from "../cdb/durable.ts"
import {
  CdbNode,
  type Output as CdbOutput,
  type Member,
  type MemberState,
  type WriteOp,
} from "../cdb/node.ts"
import type { Membership } from "../decision/log.ts"
import type { DecidedState } from "../decision/state.ts"
import type { NodeCapacity } from "../hypervisor/scheduler.ts"
import { encodeValue } from "../hypervisor/values.ts"
import {
  type AlarmRecord,
  alarmId,
  type Condition,
  encodeAlarm,
  evaluateAlarms,
  nodeConditions,
  nodeUnreachableRule,
  openAlarms,
  storedAlarm,
} from "../monitor/alarms.ts"
import { type DurableVote, ElectionNode, type Output as ElectionOutput } from "../monitor/election.ts"
import { type Corrupted, computeHealth, type Health } from "../monitor/health.ts"
import {
  deviceConditions,
  deviceFailingRule,
  poolFullConditions,
  poolFullRule,
  poolInactiveConditions,
  poolInactiveRule,
} from "../storage/alarms.ts"
import { isDecisionMessage, NodeDecisions } from "./decisions.ts"
import {
  ConditionBook,
  capacitiesIn,
  corruptionConditions,
  describeStoreError,
  type ServiceReport,
  serviceConditions,
  serviceFailing,
  serviceFailingPoints,
  serviceFailingRule,
  servicesIn,
  storeConditions,
  storeCorruptedRule,
  storeFailingRule,
  storeStatsEveryMs,
} from "./health.ts"
import { type Basis, PendingWrites, type ServiceWrite } from "./pending.ts"
import type {
  Authority,
  ServiceContext,
  ServiceCore,
  ServiceName,
  ServicePorts,
  ServiceStep,
  StoreView,
} from "./service.ts"
import type {
  DurableDecisions,
  Input,
  NodeCoreConfig,
  Output,
  ServiceEffect,
  ServiceStatus,
  Step,
  StoreFailure,
  WriteSource,
} from "./steps.ts"

export {
  serviceFailing,
  serviceFailingPoints,
  serviceFailingRule,
  storeCorruptedRule,
  storeFailingRule,
  storeStatsEveryMs,
} from "./health.ts"
export {
  type Commit,
  type DecisionPersist,
  type DurableDecisions,
  defaultNodeTimings,
  type Input,
  type NodeCoreConfig,
  type NodeTimings,
  type Output,
  type ServiceEffect,
  type ServiceStatus,
  type Step,
  type StoreFailure,
  type WriteSource,
} from "./steps.ts"

interface RunningService {
  readonly core: ServiceCore<ServiceName>
  readonly run: number
  readonly pending: PendingWrites
  deadlineMs: number
  /** When to read the store again (a change it reads came in), or Infinity. */
  viewAtMs: number
  primaryAtMs: number
  /** Whether its last step saw the decision log caught up (`Authority.decisionsCaughtUp`). */
  steppedCaughtUp: boolean
  /** Whether its last primary round came while this primary's decision log was not (and did nothing). */
  roundMissed: boolean
}

const electionFacts: ReadonlySet<string> = new Set([
  "BecamePrimary",
  "SteppedDown",
  "LeaseRenewed",
  "Fence",
  "Unfence",
])

const never = Number.POSITIVE_INFINITY

/**
 * Whether a node's store is recent: it knows of no gap, and it has received a digest from a
 * majority (itself included) since `sinceMs`, so it has applied every change those nodes had
 * when they sent it (`Authority.caughtUp`: the API says whether a read is in sync). HA once
 * waited on it too (seeds 1105 and 5138); placements now come from the decision log, which says
 * itself how far it is applied.
 */
const storeInSync = (input: {
  readonly self: string
  readonly members: ReadonlyArray<string>
  readonly sinceMs: number
  readonly gaps: number
  readonly digestHeardMs: (node: string) => number
}): boolean =>
  input.gaps === 0 &&
  input.members.filter((member) => member === input.self || input.digestHeardMs(member) >= input.sinceMs)
    .length >=
    Math.floor(input.members.length / 2) + 1

/** What one write batch of the step was, to answer it once the step's fate is known. */
interface StepWrite {
  readonly ticket: number | undefined
  readonly source: WriteSource
  readonly service?: ServiceName
  readonly serviceWrites?: ReadonlyArray<ServiceWrite>
}

/** A membership's identity: who votes, who follows, where the joined ones are. */
const membershipKey = (membership: Membership): string =>
  JSON.stringify([[...membership.voters].sort(), [...membership.learners].sort(), membership.addresses ?? {}])

export class NodeCore {
  readonly config: NodeCoreConfig
  private cdb: CdbNode
  private readonly election: ElectionNode
  private readonly decisions: NodeDecisions
  private readonly emit = (output: Output): void => {
    this.outputs.push(output)
  }
  /** What is decided as services last saw it: any other (an entry applied, a snapshot installed, a log rebuilt) is a change they read. */
  private decidedSeen: DecidedState | undefined
  /** The tickets of services' proposals, below zero (a client's are above). */
  private serviceTicket = 0
  private readonly memberView = new Map<string, { state: MemberState; sinceMs: number }>()
  private readonly startedMs: number
  private storeFailure: { readonly sinceMs: number; readonly error: StoreFailure } | undefined
  private probeAtMs = 0
  private storeStatsAtMs = 0
  private alarmsAtMs = 0
  private requestId = 0
  private cdbAtMs = 0
  private electionAtMs = 0
  private readonly services = new Map<ServiceName, RunningService>()
  private readonly serviceStates = new Map<string, ServiceStatus>()
  private serviceRuns = 0
  /** The primary's own observation of each service's and store's condition, by subject (`n1.hypervisor`, `n1.store`). */
  private readonly conditions = new ConditionBook()
  /** Service writes held while no run of the service takes them (its meta, say): retried on deadlines. */
  private readonly nodeWrites: PendingWrites
  readonly counters = { droppedWhileStoreFails: 0, commitsRefused: 0 }
  /**
   * Its store lost values of its own stream at start (`storeCorrupted.lost`) and no peer's
   * snapshot has given them back durably yet: the CDB core asks for one, again after a rebuild.
   */
  private ownLost: boolean
  private memberIds: ReadonlySet<string>
  private memberList: ReadonlyArray<string>
  /** The members (the decision log's voters and learners) as the CDB knows them. */
  private cdbMembers: ReadonlyArray<Member>
  /** Who votes: the decision log's latest membership (the config's until it has one). */
  private voters: ReadonlyArray<string>
  /** That membership as this node last took it in (`adoptMembership`). */
  private membershipKey = ""
  private membershipSeen: Membership | undefined

  // The step being built.
  private persists: Array<Persist> = []
  private vote: DurableVote | undefined
  private outputs: Array<Output> = []
  private effects: Array<ServiceEffect> = []
  private stepWrites: Array<StepWrite> = []
  private nowMs = 0
  private wallMs = 0

  constructor(
    config: NodeCoreConfig,
    durable: { image: DurableImage; vote: DurableVote; decisions?: DurableDecisions },
    nowMs: number,
    wallMs = nowMs,
  ) {
    this.config = config
    this.nowMs = nowMs
    this.wallMs = wallMs
    this.startedMs = nowMs
    this.memberList = config.cdb.members.map((member) => member.id)
    this.memberIds = new Set(this.memberList)
    this.cdbMembers = config.cdb.members
    this.voters = config.election.voters
    this.cdb = this.cdbFrom(durable.image)
    this.ownLost = (config.storeCorrupted?.lost ?? 0) > 0
    if (this.ownLost) this.cdb.askPeersForOwn(nowMs)
    this.decisions = new NodeDecisions(
      {
        self: config.self,
        voters: config.election.voters,
        members: this.memberList,
        heartbeatMs: config.election.heartbeatMs,
        compactAfter: 1024,
      },
      durable.decisions,
    )
    // Leader completeness: a voter refuses a candidate whose decision log is behind its own.
    this.election = new ElectionNode(
      {
        ...config.election,
        epoch: config.incarnation,
        logPosition: () => this.decisions.position(),
        logCommit: () => this.decisions.commitIndex(),
      },
      nowMs,
      durable.vote,
    )
    this.resetMemberView()
    this.nodeWrites = new PendingWrites(config.timings.serviceRetryMs)
    this.membershipKey = membershipKey({
      voters: config.election.voters,
      learners: this.memberList.filter((member) => !config.election.voters.includes(member)),
    })
    this.adoptMembership()
  }

  /**
   * The decision log's membership changed (a change appended or rolled back, a snapshot, a log
   * read from disk): the election counts its voters, the CDB and the member views know its
   * members, and the driver is told where the new ones are. A primary removed from the voters
   * steps down once the change is committed (Raft's rule: until then it leads the change).
   */
  private adoptMembership(): void {
    const membership = this.decisions.membership()
    // The log hands out the same object until its membership changes: compared by identity
    // first, the key (a string) only for a new one.
    const key = membership === this.membershipSeen ? this.membershipKey : membershipKey(membership)
    this.membershipSeen = membership
    if (key !== this.membershipKey) {
      this.membershipKey = key
      this.voters = membership.voters
      this.election.setVoters(membership.voters)
      const ids = [...new Set([this.config.self, ...membership.voters, ...membership.learners])]
      const configured = new Map(this.config.cdb.members.map((member) => [member.id, member]))
      const domain = configured.get(this.config.self)?.domain ?? "default"
      this.cdbMembers = ids.map((id) => {
        const address = membership.addresses?.[id]
        return (
          configured.get(id) ?? {
            id,
            domain: address?.domain ?? domain,
            relay: address?.relay ?? false,
          }
        )
      })
      this.memberList = ids
      this.memberIds = new Set(ids)
      this.absorbCdb(
        this.cdb.handle({ _tag: "MembersChanged", members: this.cdbMembers }, this.nowMs, this.wallMs),
      )
      for (const id of ids)
        if (id !== this.config.self && !this.memberView.has(id))
          this.memberView.set(id, { state: "alive", sinceMs: this.nowMs })
      for (const id of [...this.memberView.keys()]) if (!this.memberIds.has(id)) this.memberView.delete(id)
      if (this.voters.includes(this.config.self) && this.storeFailure === undefined) this.election.resume()
      this.outputs.push({ _tag: "MembersChanged", membership })
    }
    if (
      this.election.currentRole === "leader" &&
      !this.voters.includes(this.config.self) &&
      this.decisions.membershipCommitted()
    )
      this.absorbElection(this.election.withdraw(this.nowMs, "removed from the voters"))
  }

  get self(): string {
    return this.config.self
  }

  // ---- stepping ----------------------------------------------------------------------------

  handle(input: Input, nowMs: number, wallMs = nowMs): Step {
    return this.handleAll([input], nowMs, wallMs)
  }

  /** Several inputs as one step: one commit for all of them (the datagrams that queued up, say). */
  handleAll(inputs: ReadonlyArray<Input>, nowMs: number, wallMs = nowMs): Step {
    this.begin(nowMs, wallMs)
    for (const input of inputs) {
      this.apply(input)
      this.adoptMembership()
      // What is decided is part of what services read (the hypervisor's placements); it changes
      // by entries applied, and without any, by a snapshot installed or a log rebuilt from disk
      // (found by the simulator's view checker, seed 6000000).
      const decided = this.decisions.decided()
      if (decided !== this.decidedSeen) {
        this.decidedSeen = decided
        this.changed(undefined)
      }
      this.wakeOnCaughtUp()
    }
    return this.finish()
  }

  private begin(nowMs: number, wallMs: number): void {
    this.nowMs = Math.max(this.nowMs, nowMs)
    this.wallMs = wallMs
  }

  private apply(input: Input): void {
    switch (input._tag) {
      case "Datagram": {
        // While its store refuses commits the core takes one datagram per probe interval (each
        // costs a refused commit and a reload); the rest is dropped and repaired later, like any loss.
        if (this.storeFailure !== undefined && this.nowMs < this.probeAtMs) {
          this.counters.droppedWhileStoreFails++
          return
        }
        const datagram = {
          _tag: "DatagramReceived" as const,
          bytes: input.bytes,
          via: input.via,
          ...(input.from === undefined ? {} : { from: input.from }),
        }
        this.absorbCdb(this.cdb.handle(datagram, this.nowMs, this.wallMs))
        // A probe is a datagram that leaves something to commit: only a commit tells the node
        // its store works again. One that persists nothing (a heartbeat) lets the next one through
        // too (seed 1003: a relay, its disk free again, kept dropping all but two datagrams a
        // second, and the ones it took persisted nothing). (A write of its own, the vote again,
        // would not do: a full disk still takes a small transaction, and the node believed it
        // recovered while every real write failed.)
        if (this.storeFailure !== undefined && this.persists.length > 0)
          this.probeAtMs = this.nowMs + this.config.timings.storeProbeMs
        return
      }
      case "MonitorMessage":
        if (isDecisionMessage(input.message)) this.decisions.receive(input.message, this.emit)
        else
          this.absorbElection(
            this.election.handle({ _tag: "MessageReceived", message: input.message }, this.nowMs),
          )
        return
      case "Write":
        this.write(input.writes, { ticket: input.ticket, source: "client" })
        return
      case "Propose":
        this.decisions.propose(input.command, input.ticket, this.emit)
        return
      case "ChangeMembership":
        this.decisions.changeMembership(input.change, input.ticket, this.emit)
        return
      case "SetStats":
        this.absorbCdb(this.cdb.handle({ _tag: "SetStats", values: input.values }, this.nowMs, this.wallMs))
        return
      case "DeadlineReached":
        this.deadline()
        return
      case "CommitRefused":
        this.commitRefused(input.error, input.durable)
        return
      case "ServiceState":
        this.serviceState(input)
        return
      case "ServiceInput": {
        const service = this.services.get(input.service)
        if (service === undefined || service.run !== input.run) return
        this.stepService(input.service, service, input.input)
        return
      }
    }
  }

  private finish(): Step {
    const decisions = this.decisions.takePersists()
    const step: Step = {
      commit:
        this.persists.length === 0 && this.vote === undefined && decisions.length === 0
          ? undefined
          : {
              persists: this.persists,
              ...(this.vote === undefined ? {} : { vote: this.vote }),
              ...(decisions.length === 0 ? {} : { decisions }),
            },
      outputs: this.outputs,
      effects: this.effects,
      deadlineMs: this.nextDeadline(),
    }
    this.persists = []
    this.vote = undefined
    this.outputs = []
    this.effects = []
    if (step.commit === undefined) this.decisions.confirm()
    // What a refused commit needs to know of its step (only a step with a commit can be refused).
    this.lastStepWrites = step.commit === undefined ? [] : this.stepWrites
    this.lastStepVoted = step.commit?.vote !== undefined
    this.lastStepFacts =
      step.commit === undefined ? [] : step.outputs.filter((output) => electionFacts.has(output._tag))
    this.stepWrites = []
    return step
  }

  /** The next time this node needs `DeadlineReached` (monotonic ms). */
  nextDeadline(): number {
    let next = Math.min(
      this.cdbAtMs,
      this.electionAtMs,
      this.alarmsAtMs,
      this.storeStatsAtMs,
      this.decisions.nextDeadline(),
      this.nodeWrites.size > 0 ? this.nodeWrites.retryAt : never,
    )
    for (const service of this.services.values()) {
      next = Math.min(next, service.deadlineMs, service.viewAtMs, service.primaryAtMs)
      if (service.pending.size > 0) next = Math.min(next, service.pending.retryAt)
    }
    return next
  }

  private deadline(): void {
    const now = this.nowMs
    if (now >= this.cdbAtMs) this.absorbCdb(this.cdb.handle({ _tag: "DeadlineReached" }, now, this.wallMs))
    if (now >= this.electionAtMs) this.absorbElection(this.election.handle({ _tag: "DeadlineReached" }, now))
    this.decisions.deadline(now, this.emit)
    // On a schedule of their own: the election's deadline moves with every message it takes (its
    // heartbeat work is done there), so alarms tied to it went unevaluated while peers talked.
    if (now >= this.alarmsAtMs) {
      this.alarmsAtMs = now + this.config.election.heartbeatMs
      this.evaluateAlarms()
    }
    if (now >= this.storeStatsAtMs) this.publishStore()
    const held = this.nodeWrites.due(now, this.basis)
    if (held.length > 0) this.write(held, { ticket: undefined, source: "service", held: this.nodeWrites })
    for (const [name, service] of [...this.services]) {
      if (this.services.get(name) !== service) continue
      if (now >= service.viewAtMs) {
        service.viewAtMs = never
        this.stepService(name, service, { _tag: "ViewChanged" })
      } else if (now >= service.deadlineMs || (service.pending.size > 0 && now >= service.pending.retryAt))
        this.stepService(name, service, { _tag: "DeadlineReached" })
      if (service.core.primaryRound !== undefined && now >= service.primaryAtMs) {
        service.primaryAtMs = now + (service.core.primaryEveryMs ?? 250)
        if (this.election.isPrimary(now)) this.primaryRound(name, service)
      }
    }
  }

  // ---- the CDB -----------------------------------------------------------------------------

  private cdbFrom(image: DurableImage): CdbNode {
    const fresh = image.vector.size === 0 && image.entries.size === 0
    return new CdbNode(
      { ...this.config.cdb, members: this.cdbMembers },
      this.nowMs,
      this.config.incarnation,
      fresh ? undefined : image,
      this.wallMs,
    )
  }

  private resetMemberView(): void {
    this.memberView.clear()
    for (const member of this.cdbMembers)
      if (member.id !== this.config.self)
        this.memberView.set(member.id, { state: "alive", sinceMs: this.nowMs })
  }

  /** The CDB core's outputs into the step; returns what its writes became. */
  private absorbCdb(outputs: ReadonlyArray<CdbOutput>): {
    acknowledged: Set<number>
    rejected: Map<number, { reason: string; detail: string }>
    own: Array<Change>
  } {
    const acknowledged = new Set<number>()
    const rejected = new Map<number, { reason: string; detail: string }>()
    const own: Array<Change> = []
    for (const output of outputs) {
      switch (output._tag) {
        case "Persist":
        case "PersistSnapshot":
          this.persists.push(output)
          break
        case "Acknowledged":
          for (const id of output.requestIds) acknowledged.add(id)
          break
        case "WriteRejected":
          rejected.set(output.requestId, output)
          break
        case "Multicast":
          this.outputs.push({ _tag: "Send", to: { _tag: "Domain" }, bytes: output.bytes })
          break
        case "Unicast":
          this.outputs.push({ _tag: "Send", to: { _tag: "Node", node: output.to }, bytes: output.bytes })
          break
        case "Relay":
          this.outputs.push({ _tag: "Send", to: { _tag: "Relay", node: output.to }, bytes: output.bytes })
          break
        case "Applied":
          for (const change of output.changes) if (change.origin === this.config.self) own.push(change)
          this.outputs.push(output)
          this.changed(output.changes)
          break
        case "SnapshotInstalled":
          this.outputs.push(output)
          this.changed(undefined)
          break
        case "Rejected":
          this.outputs.push(output)
          break
        case "MemberChanged":
          this.memberView.set(output.node, { state: output.state, sinceMs: this.nowMs })
          this.outputs.push(output)
          // What a service reads depends on who is alive (a dead node's meta slots no longer
          // count, its claim on a system included): every service reads the store again. A
          // node kept waiting, for good, on the claim of a node that had died since it read it
          // (seed 1000101).
          this.changed(undefined)
          break
        case "ArmDeadline":
          this.cdbAtMs = output.atMs
          break
      }
    }
    return { acknowledged, rejected, own }
  }

  /** Changes came in: every service that reads one of their kinds looks at the store again soon. */
  private changed(changes: ReadonlyArray<Change> | undefined): void {
    for (const service of this.services.values()) {
      if (service.viewAtMs !== never) continue
      if (changes === undefined || changes.some((change) => service.core.reads.has(change.kind)))
        service.viewAtMs = this.nowMs + this.config.timings.viewDelayMs
    }
  }

  private write(
    writes: ReadonlyArray<Omit<WriteOp, "requestId">>,
    context: {
      readonly ticket: number | undefined
      readonly source: WriteSource
      readonly service?: ServiceName
      readonly held?: PendingWrites
    },
  ): void {
    if (writes.length === 0) return
    // The node's own writes (HA moves and releases, alarms, services' state) are not held back by
    // flow control: with a member lagging a window behind, a primary could not release a held
    // HA system for as long as the lag lasted (seed 5000182, a window of 256).
    const unthrottled = context.source !== "client"
    const ops: Array<WriteOp> = writes.map((write) => ({
      ...write,
      requestId: ++this.requestId,
      ...(unthrottled ? { unthrottled } : {}),
    }))
    const result = this.absorbCdb(this.cdb.handle({ _tag: "Write", writes: ops }, this.nowMs, this.wallMs))
    const serviceWrites = context.source === "service" ? (writes as ReadonlyArray<ServiceWrite>) : undefined
    const first = ops.find((op) => result.rejected.has(op.requestId))
    if (first !== undefined || !ops.every((op) => result.acknowledged.has(op.requestId))) {
      const why = first === undefined ? undefined : result.rejected.get(first.requestId)
      this.outputs.push({
        _tag: "WriteRefused",
        ticket: context.ticket,
        source: context.source,
        reason: why?.reason ?? "not-acknowledged",
        detail: why?.detail ?? "the write was not acknowledged",
      })
      if (serviceWrites !== undefined) context.held?.refused(serviceWrites, this.nowMs, this.basis)
      return
    }
    if (serviceWrites !== undefined) context.held?.accepted(serviceWrites)
    this.stepWrites.push({
      ticket: context.ticket,
      source: context.source,
      ...(context.service === undefined ? {} : { service: context.service }),
      ...(serviceWrites === undefined ? {} : { serviceWrites }),
    })
    this.outputs.push({
      _tag: "Written",
      ticket: context.ticket,
      source: context.source,
      writes: ops,
      changes: result.own,
    })
  }

  // ---- the store refusing -------------------------------------------------------------------

  /** What its store held corrupted at start, and of its own lost values whether a peer has given them back. */
  private corrupted(): Corrupted | undefined {
    const held = this.config.storeCorrupted
    if (held === undefined || held.count === 0) return undefined
    if (this.ownLost || held.lost === 0) return held
    return { count: held.count, lost: 0, repaired: held.lost }
  }

  /** This node's store as its statistics say it to the others: failing (and why) or not. */
  private publishStore(): void {
    this.storeStatsAtMs = this.nowMs + storeStatsEveryMs
    const failing = this.storeFailure === undefined ? null : describeStoreError(this.storeFailure.error)
    const corrupted = this.corrupted()
    const value = encodeValue({
      failing,
      ...(corrupted === undefined || corrupted.count === 0 ? {} : { corrupted }),
    })
    this.absorbCdb(
      this.cdb.handle(
        { _tag: "SetStats", values: [{ kind: "node", id: `${this.config.self}.store`, value }] },
        this.nowMs,
        this.wallMs,
      ),
    )
  }

  /**
   * The store refused the last step's commit: nothing of it was carried out. The CDB goes back to
   * what is durable (this node's stream stays continuous: its next change takes the refused one's
   * number), the election to the vote the store holds, and every write of the step is refused.
   */
  private commitRefused(
    error: StoreFailure,
    durable: { image: DurableImage; vote: DurableVote; decisions?: DurableDecisions },
  ): void {
    this.counters.commitsRefused++
    this.decisions.reset(durable.decisions, this.emit)
    if (this.storeFailure === undefined) {
      this.storeFailure = { sinceMs: this.nowMs, error }
      this.probeAtMs = this.nowMs + this.config.timings.storeProbeMs
      this.outputs.push({ _tag: "StoreFailing", error })
    }
    const previous = this.cdb
    this.cdb = this.cdbFrom(durable.image)
    this.cdb.continueNumberingFrom(previous)
    // A snapshot that gave back its own lost values in the refused step is not durable: ask again.
    if (this.ownLost) this.cdb.askPeersForOwn(this.nowMs)
    if (this.storeStatsAtMs > this.nowMs + this.config.timings.storeProbeMs) this.publishStore()
    // The new core's failure detector goes on from the old one's (`continueNumberingFrom`), so
    // the member view stays as it was; the core's timers start over: the next try comes after a
    // short wait, not at once.
    // What the services read is what is durable again: they read it again (they kept a view of
    // the refused step's changes; found by the simulator's view checker).
    this.changed(undefined)
    this.cdbAtMs = this.nowMs + this.config.timings.storeRetryMs
    // What the election did in the refused step still holds (a lease renewed by acknowledgements,
    // a fence), unless its vote is what was refused: then it goes back to the durable vote, a
    // follower (a SteppedDown if it led), and only its step-downs and fences stand.
    for (const fact of this.lastStepFacts)
      if (
        !this.lastStepVoted ||
        fact._tag === "SteppedDown" ||
        fact._tag === "Fence" ||
        fact._tag === "Unfence"
      )
        this.outputs.push(fact)
    if (this.lastStepVoted) this.absorbElection(this.election.revertVote(durable.vote, this.nowMs))
    // A node that can write nothing can do no primary's work (alarms, HA moves) and cast no vote:
    // it steps down if it leads, and runs for nothing until its store takes commits again.
    this.absorbElection(this.election.withdraw(this.nowMs, "its store refuses commits"))
    this.vote = undefined
    this.persists = []
    const detail = describeStoreError(error)
    for (const write of this.lastStepWrites) {
      this.outputs.push({
        _tag: "WriteRefused",
        ticket: write.ticket,
        source: write.source,
        reason: error.reason,
        detail,
      })
      if (write.serviceWrites === undefined) continue
      const service = write.service === undefined ? undefined : this.services.get(write.service)
      ;(service?.pending ?? this.nodeWrites).refused(write.serviceWrites, this.nowMs, this.basis)
    }
    this.lastStepWrites = []
  }

  /** The writes of the step last finished: refused with it if its commit is. */
  private lastStepWrites: Array<StepWrite> = []
  /** Whether the step last finished cast a vote, and what its election did (kept if its commit is refused). */
  private lastStepVoted = false
  private lastStepFacts: ReadonlyArray<Output> = []

  /**
   * The driver says the last step's commit is durable (or there was none). A driver must call
   * this, or `CommitRefused`, before the next step.
   */
  committed(): ReadonlyArray<Output> {
    this.decisions.confirm()
    this.lastStepWrites = []
    if (this.ownLost && !this.cdb.askingForOwn) this.ownLost = false
    if (this.storeFailure === undefined) return []
    const failingForMs = this.nowMs - this.storeFailure.sinceMs
    this.storeFailure = undefined
    this.election.resume()
    // Said at once (its next periodic statistics would say it within storeStatsEveryMs too).
    const outputs = this.outputs
    this.outputs = []
    this.publishStore()
    const said = this.outputs.filter((output) => output._tag === "Send")
    this.outputs = outputs
    return [{ _tag: "StoreRecovered", failingForMs }, ...said]
  }

  // ---- the election, alarms ------------------------------------------------------------------

  private absorbElection(outputs: ReadonlyArray<ElectionOutput>): void {
    for (const output of outputs) {
      switch (output._tag) {
        case "Send":
          this.outputs.push({ _tag: "SendMessage", to: output.to, message: output.message })
          break
        case "Broadcast":
          this.outputs.push({ _tag: "SendMessage", to: "all", message: output.message })
          break
        case "PersistVote":
          this.vote = { term: output.term, votedFor: output.votedFor }
          break
        case "ArmDeadline":
          this.electionAtMs = output.atMs
          break
        case "BecamePrimary":
          this.outputs.push(output)
          this.decisions.lead(output.term, this.nowMs, this.emit)
          break
        case "SteppedDown":
          this.outputs.push(output)
          this.decisions.stepDown(output.term, this.emit)
          break
        default:
          this.outputs.push(output)
      }
    }
    // The log follows whatever term and primary the election knows now.
    this.decisions.follow(this.election.currentTerm, this.election.knownLeader, this.emit)
  }

  /** The primary (only) turns what it knows of members and services into alarms, written to the CDB. */
  private evaluateAlarms(): void {
    const now = this.nowMs
    if (!this.election.isPrimary(now)) return
    const context = { nowMs: now, term: this.election.currentTerm, self: this.config.self }
    const existing = (id: string) => storedAlarm(this.cdb.get("alarm", id)?.value)
    const changes = [
      ...evaluateAlarms(
        nodeUnreachableRule,
        nodeConditions(this.config.self, this.startedMs, this.memberView),
        existing,
        {
          ...context,
          subjectKind: "node",
        },
      ),
      ...evaluateAlarms(serviceFailingRule, this.serviceConditionsNow(), existing, {
        ...context,
        subjectKind: "service",
      }),
      ...evaluateAlarms(
        storeFailingRule,
        storeConditions(
          this.cdb,
          this.memberList,
          this.config.self,
          this.storeFailure?.error,
          (node) => this.memberState(node),
          this.conditions,
          now,
        ),
        existing,
        {
          ...context,
          subjectKind: "store",
        },
      ),
      ...evaluateAlarms(
        storeCorruptedRule,
        corruptionConditions(
          this.cdb,
          this.memberList,
          this.config.self,
          this.corrupted(),
          (node) => this.memberState(node),
          this.conditions,
          now,
        ),
        existing,
        { ...context, subjectKind: "store" },
      ),
      ...evaluateAlarms(
        poolFullRule,
        poolFullConditions(
          this.cdb,
          (pool) => (existing(alarmId(poolFullRule.name, pool))?.state ?? "cleared") !== "cleared",
          (node) => this.memberState(node),
          this.conditions,
          now,
        ),
        existing,
        { ...context, subjectKind: "storage-pool" },
      ),
      ...evaluateAlarms(
        deviceFailingRule,
        deviceConditions(this.cdb, (node) => this.memberState(node), this.conditions, now),
        existing,
        { ...context, subjectKind: "storage-device" },
      ),
      ...evaluateAlarms(
        poolInactiveRule,
        poolInactiveConditions(this.cdb, (node) => this.memberState(node), this.conditions, now),
        existing,
        { ...context, subjectKind: "storage-pool" },
      ),
    ]
    if (changes.length === 0) return
    this.outputs.push({ _tag: "Alarms", changes })
    this.write(
      changes.map((change) => ({
        op: "put" as const,
        kind: "alarm",
        id: change.id,
        value: encodeAlarm(change.record),
      })),
      { ticket: undefined, source: "alarm" },
    )
  }

  /** Every service of every member, as its node reports it in the CDB, seen through this node's clock. */
  private serviceConditionsNow(): ReadonlyArray<Condition> {
    if (this.config.ignoreServices === true) return []
    return serviceConditions(
      this.servicesInCluster(),
      (node) => this.memberState(node),
      this.conditions,
      this.nowMs,
    )
  }

  private memberState(node: string): MemberState {
    return node === this.config.self ? "alive" : (this.memberView.get(node)?.state ?? "dead")
  }

  // ---- services ------------------------------------------------------------------------------

  private serviceState(input: Extract<Input, { _tag: "ServiceState" }>): void {
    const previous = this.serviceStates.get(input.name)
    this.serviceStates.set(input.name, {
      name: input.name,
      state: input.state,
      restarts: input.restarts,
      ...(input.lastError === undefined ? {} : { lastError: input.lastError }),
      sinceMs: previous?.state === input.state ? previous.sinceMs : this.nowMs,
    })
    const meta = {
      state: input.state,
      restarts: input.restarts,
      ...(input.lastError === undefined ? {} : { reason: input.lastError }),
    }
    const write: ServiceWrite = {
      op: "meta",
      kind: "service",
      id: `${this.config.self}.${input.name}`,
      value: encodeValue(meta),
    }
    this.write([write], { ticket: undefined, source: "service", held: this.nodeWrites })
    const name = input.name as ServiceName
    const factory = this.config.services[name]
    if (factory === undefined) return
    const running = this.services.get(name)
    if (input.state === "running" && running === undefined) {
      const core = factory(this.config.self, this.nowMs) as ServiceCore<ServiceName>
      const service: RunningService = {
        core,
        run: ++this.serviceRuns,
        pending: new PendingWrites(this.config.timings.serviceRetryMs),
        deadlineMs: never,
        viewAtMs: never,
        steppedCaughtUp: false,
        roundMissed: false,
        // A service without a primary round asks for none (a deadline at its start, never moved, woke the node at every step).
        primaryAtMs: core.primaryRound === undefined ? never : this.nowMs,
      }
      this.services.set(name, service)
      this.stepService(name, service, { _tag: "ViewChanged" })
    } else if (input.state !== "running" && running !== undefined) {
      // Its run is over: answers for it are dropped, its held writes with it (the next run writes anew).
      this.services.delete(name)
    }
  }

  /**
   * The input that brings the decision log up to date (an Append, mostly; on a new primary the
   * commit of its first entry) wakes, within its step, every service whose last step saw it not
   * caught up, and runs the primary round a primary skipped for it: a service that may act only
   * on what is decided up to date (the hypervisor starts an HA system only then; the primary
   * moves and releases them only then) gets its chance in the very step it is. When this waited
   * on the store's sync instead (no gap, digests from a majority), a view read 10 ms later, or
   * the next round 250 ms later, missed the moments of sync under steady reordering: an HA system
   * of a restarted node stayed down for 35 s (seed 1000083). The simulator checks, after every
   * step, that no service is left waiting (`servicesNotWoken`).
   */
  private wakeOnCaughtUp(): void {
    for (const due of this.dueOnCaughtUp()) {
      if (this.services.get(due.name) !== due.service) continue
      if (due.view) {
        due.service.viewAtMs = never
        this.stepService(due.name, due.service, { _tag: "ViewChanged" })
      }
      if (due.round) this.primaryRound(due.name, due.service)
    }
  }

  /** The services waiting for the decision log to be caught up (or a ready primary's) although it is now. */
  private dueOnCaughtUp(): ReadonlyArray<{
    readonly name: ServiceName
    readonly service: RunningService
    readonly view: boolean
    readonly round: boolean
  }> {
    // After every step: the cheap tests first, the authority only when a service waits for it.
    let authority: Authority | undefined
    const due = []
    for (const [name, service] of this.services) {
      if (service.steppedCaughtUp && !service.roundMissed) continue
      authority ??= this.authority()
      const view = !service.steppedCaughtUp && authority.decisionsCaughtUp
      const round = service.roundMissed && authority.isPrimary && authority.decisionsCaughtUp
      if (view || round) due.push({ name, service, view, round })
    }
    return due
  }

  /**
   * The services a step left waiting for a caught-up store although the store is caught up:
   * none, if every step wakes them (`wakeOnCaughtUp`). The simulator checks it after every step.
   */
  servicesNotWoken(): ReadonlyArray<ServiceName> {
    return this.dueOnCaughtUp().map((due) => due.name)
  }

  private primaryRound(name: ServiceName, service: RunningService): void {
    const round = service.core.primaryRound
    if (round === undefined) return
    const context = this.context()
    service.roundMissed = !context.authority.decisionsCaughtUp
    this.serviceStepped(name, service, round(context), "round")
  }

  private stepService(
    name: ServiceName,
    service: RunningService,
    input: Parameters<ServiceCore<ServiceName>["step"]>[0],
  ): void {
    const context = this.context()
    service.steppedCaughtUp = context.authority.decisionsCaughtUp
    this.serviceStepped(name, service, service.core.step(input, context))
  }

  private serviceStepped(
    name: ServiceName,
    service: RunningService,
    step: ServiceStep<ServicePorts[ServiceName]["effect"]>,
    kind: "step" | "round" = "step",
  ): void {
    if (kind === "step") service.deadlineMs = step.deadlineMs
    for (const event of step.events) this.outputs.push({ _tag: "ServiceEvent", service: name, event })
    // (`name` and `effect` belong together: the step is this service's.)
    for (const effect of step.effects)
      this.effects.push({ service: name, run: service.run, effect } as ServiceEffect)
    for (const command of step.proposals ?? []) {
      const ticket = --this.serviceTicket
      this.outputs.push({ _tag: "DecisionProposed", ticket, command })
      this.decisions.propose(command, ticket, this.emit)
    }
    // What it held goes first: a newer write of the same object in this step must win over it
    // (a retried "crashed" meta written after the new "held" one hid the hold; seed 256).
    const retry = service.pending.due(this.nowMs, this.basis)
    this.write([...retry, ...step.writes], {
      ticket: undefined,
      source: "service",
      service: name,
      held: service.pending,
    })
  }

  private context(): ServiceContext {
    return {
      self: this.config.self,
      nowMs: this.nowMs,
      store: this.storeView,
      authority: this.authority(),
      decided: this.decisions.decided(),
      nodes: () => this.capacities(),
    }
  }

  /** The version a held put is based on: the object's as the store holds it now. */
  private readonly basis: Basis = (write) => {
    const version = this.cdb.get(write.kind, write.id)?.version
    return version === undefined ? "" : `${version.ms}.${version.counter}.${version.origin}`
  }

  private readonly storeView: StoreView = {
    get: (kind, id) => this.cdb.get(kind, id),
    list: (kind) => this.cdb.entriesOf(kind),
    metaOf: (kind, id) => this.cdb.metaOf(kind, id),
    statsOf: (kind, id, node) => this.cdb.statsOf(kind, id, node),
    deleted: (kind, id) => this.cdb.entry(kind, id)?.value === null,
  }

  // ---- what the node knows (for the drivers, the API and the checkers) -----------------------

  /** The store as services and the API read it. */
  get store(): StoreView {
    return this.storeView
  }

  /** The CDB core itself, for what only a driver or a checker asks (fingerprints, vectors, counters). */
  get cdbCore(): CdbNode {
    return this.cdb
  }

  get electionCore(): ElectionNode {
    return this.election
  }

  /** Whether the service is due to read the store again (a change it reads, or a member's, came in). */
  /** The decision log as this node holds it: term, commit index, voters and learners, the last entries, what is decided. */
  decisionView(): ReturnType<NodeDecisions["view"]> {
    return this.decisions.view()
  }

  /** What the decision log has granted, as this node has applied it. */
  decided(): DecidedState {
    return this.decisions.decided()
  }

  readPending(name: ServiceName): boolean {
    const service = this.services.get(name)
    return service !== undefined && service.viewAtMs !== never
  }

  /** The service's current run number, if it runs (its effects carry it, its answers must too). */
  serviceRun(name: ServiceName): number | undefined {
    return this.services.get(name)?.run
  }

  members(): ReadonlyArray<{ readonly id: string; readonly state: MemberState; readonly sinceMs: number }> {
    return [
      { id: this.config.self, state: "alive", sinceMs: this.startedMs },
      ...[...this.memberView].map(([id, view]) => ({ id, ...view })),
    ]
  }

  authority(nowMs = this.nowMs): Authority {
    const sync = this.cdb.syncState()
    const voters = this.voters
    return {
      leaderContactMs: this.election.leaderContact(nowMs),
      fenced: this.election.isFenced(),
      isPrimary: this.election.isPrimary(nowMs),
      primarySinceMs: this.election.primarySince,
      quorumWindowMs: this.election.config.quorumWindowMs,
      lastHeardMs: (node) => this.election.lastHeard(node),
      caughtUp: storeInSync({
        self: this.config.self,
        members: voters,
        sinceMs: nowMs - this.config.cdb.heartbeatMs * 3,
        ...sync,
      }),
      decisionsCaughtUp: this.decisions.caughtUp(
        this.election.isPrimary(nowMs),
        this.election.commitToApply(),
      ),
    }
  }

  primary(nowMs = this.nowMs): string | null {
    return this.election.isPrimary(nowMs) ? this.config.self : this.election.knownLeader
  }

  /** Every member's services as their nodes report them in the CDB, by node and name. */
  servicesInCluster(): ReadonlyArray<ServiceReport> {
    return servicesIn(this.cdb, this.memberIds, this.config.self, this.serviceStates.keys())
  }

  /** This node's services, as its supervisor last reported them. */
  ownServices(): ReadonlyArray<ServiceStatus> {
    return [...this.serviceStates.values()]
  }

  openAlarms(): Array<AlarmRecord & { readonly id: string }> {
    return openAlarms(this.cdb.entriesOf("alarm"))
  }

  health(nowMs = this.nowMs): Health {
    const members = this.members()
    const alarms = this.openAlarms()
    return computeHealth({
      nowMs,
      members,
      voters: this.voters.length,
      votersSeen: this.voters.filter((id) => this.memberState(id) === "alive").length,
      primary: this.primary(nowMs),
      openAlarms: alarms.map((alarm) => ({ id: alarm.id, severity: alarm.severity })),
      fenced: this.election.isFenced(),
      services: (this.config.ignoreServices === true ? [] : this.servicesInCluster())
        .filter((service) => serviceFailing(service) && this.memberState(service.node) === "alive")
        .map((service) => ({
          node: service.node,
          name: service.name,
          state: service.state,
          ...(service.lastError === undefined ? {} : { reason: service.lastError }),
          points: serviceFailingPoints,
        })),
      ...(this.corrupted() === undefined ? {} : { storeCorrupted: this.corrupted()! }),
      ...(this.storeFailure === undefined
        ? {}
        : {
            storeFailing: {
              sinceMs: this.storeFailure.sinceMs,
              detail: describeStoreError(this.storeFailure.error),
            },
          }),
    })
  }

  /** The nodes as the scheduler sees them: membership from the monitor, capacity from each node's stats. */
  capacities(): ReadonlyArray<NodeCapacity> {
    return capacitiesIn(this.cdb, this.members(), this.config.self, this.election.isFenced())
  }
}
