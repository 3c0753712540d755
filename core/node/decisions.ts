/**
 * The node's part of the decision log (`core/decision/log.ts`): the log itself, told by the
 * election whom to follow and when to lead, its messages on the monitor's channel, its entries
 * and snapshots into the step's commit (durable before any of the step's outputs go out, as the
 * vote), a heartbeat while it leads, and each decision it applies as an output. Kept out of
 * `node.ts` so the composition stays readable; `NodeCore` owns one.
 */
import { DecisionLog, type Membership } from "../decision/log.ts"
import {
  changeMembership,
  type DecidedState,
  type DecisionAnswer,
  type DecisionCommand,
  decidedSnapshotText,
  decisionMachine,
  type MembershipChange,
} from "../decision/state.ts"
import type { DecisionMessage } from "../monitor/wire.ts"
import type { DecisionPersist, DurableDecisions, Output } from "./steps.ts"

export interface NodeDecisionsConfig {
  readonly self: string
  /** The voters at the start (the election's), every other member a learner. */
  readonly voters: ReadonlyArray<string>
  readonly members: ReadonlyArray<string>
  readonly heartbeatMs: number
  /** Applied entries kept before a snapshot replaces them. */
  readonly compactAfter: number
}

const never = Number.POSITIVE_INFINITY
/**
 * Bytes of entries in one `Append` at most: with the message around them, well inside a
 * datagram of the smallest MTU a cluster runs (1,280 bytes of payload and more).
 */
export const maxAppendBytes = 900
/**
 * Appends to one follower unanswered at most: a busy primary sends what it appends as it
 * appends it, not a datagram's worth per round trip (bench/decisions.ts).
 */
const maxInflight = 8
const decisionTags: ReadonlySet<string> = new Set(["Append", "AppendReply", "Snapshot", "SnapshotReply"])

export const isDecisionMessage = (message: { readonly _tag: string }): message is DecisionMessage =>
  decisionTags.has(message._tag)

export class NodeDecisions {
  private readonly config: NodeDecisionsConfig
  private log: DecisionLog<DecisionCommand, DecidedState, DecisionAnswer>
  private persists: Array<DecisionPersist> = []
  private tickAtMs = never
  private followed: { term: number; leader: string | null } = { term: 0, leader: null }
  /**
   * The highest index said applied, and of that what the driver carried out (the step's commit
   * went through): a log rebuilt after a refused commit applies again from its snapshot, and says
   * so only past what was carried out.
   */
  private said = 0
  private carried = 0

  constructor(config: NodeDecisionsConfig, durable: DurableDecisions | undefined) {
    this.config = config
    this.log = this.fresh(durable)
  }

  private fresh(durable: DurableDecisions | undefined) {
    const initial: Membership = {
      voters: this.config.voters,
      learners: this.config.members.filter((member) => !this.config.voters.includes(member)),
    }
    return new DecisionLog(
      {
        self: this.config.self,
        initial,
        compactAfter: this.config.compactAfter,
        maxBatch: 64,
        maxAppendBytes,
        maxInflight,
        snapshotText: decidedSnapshotText,
      },
      decisionMachine,
      durable,
    )
  }

  position(): { readonly term: number; readonly index: number } {
    return this.log.position()
  }

  /** The election made this node primary of `term`. */
  lead(term: number, nowMs: number, emit: (output: Output) => void): void {
    this.followed = { term, leader: this.config.self }
    this.carry(this.log.handle({ _tag: "Lead", term }), emit)
    this.tickAtMs = nowMs + this.config.heartbeatMs
  }

  /** The election's primary stepped down (its lease ended): the log stops leading, in the same term. */
  stepDown(term: number, emit: (output: Output) => void): void {
    this.followed = { term, leader: null }
    this.tickAtMs = never
    this.carry(this.log.handle({ _tag: "Follow", term, leader: null }), emit)
  }

  /** What the election knows now: a later term, or another primary, is followed (leading is `lead`'s). */
  follow(term: number, leader: string | null, emit: (output: Output) => void): void {
    if (leader === this.config.self) return
    if (term < this.followed.term || (term === this.followed.term && leader === this.followed.leader)) return
    if (term === this.followed.term && leader === null) return
    this.followed = { term, leader }
    if (leader !== this.config.self) this.tickAtMs = never
    this.carry(this.log.handle({ _tag: "Follow", term, leader }), emit)
  }

  /** The log's commit index (a primary's pings carry it). */
  commitIndex(): number {
    return this.log.commitIndexNow()
  }

  /** What the applied decisions have granted (placements and pools, with their epochs). */
  decided(): DecidedState {
    return this.log.decided()
  }

  /**
   * Whether this node may act on what it has applied: as leader, once an entry of its own term
   * is committed (it then knows every earlier one committed) and all of it applied; as follower,
   * once it has applied as far as `commitToApply`, the commit index the primary's pings that give
   * it authority carried.
   */
  caughtUp(leading: boolean, commitToApply: number): boolean {
    const applied = this.log.appliedIndex()
    return leading ? this.log.ready() && applied >= this.log.commitIndexNow() : applied >= commitToApply
  }

  /**
   * A decision, proposed here: taken only while this node leads and is ready. A client's ticket
   * is positive; a service's proposals (the HA round's) are numbered below zero.
   */
  propose(command: DecisionCommand, ticket: number, emit: (output: Output) => void): void {
    this.carry(this.log.handle({ _tag: "Propose", command, ticket }), emit)
  }

  /**
   * A change of membership, proposed here: taken only while this node leads and is ready, and
   * no other change is still uncommitted; answered by `MembershipDecided` once committed.
   */
  changeMembership(change: MembershipChange, ticket: number, emit: (output: Output) => void): void {
    const next = changeMembership(this.log.membership(), change)
    if ("refused" in next) {
      emit({ _tag: "DecisionRefused", ticket, reason: `invalid: ${next.refused}` })
      return
    }
    this.carry(this.log.handle({ _tag: "ChangeMembership", membership: next.membership, ticket }), emit)
  }

  /** Who votes and who follows: the latest membership in the log, committed or not. */
  membership(): Membership {
    return this.log.membership()
  }

  /** Whether that membership is committed. */
  membershipCommitted(): boolean {
    return this.log.membershipCommitted()
  }

  receive(message: DecisionMessage, emit: (output: Output) => void): void {
    this.carry(this.log.handle({ _tag: "Message", message }), emit)
  }

  nextDeadline(): number {
    return this.tickAtMs
  }

  deadline(nowMs: number, emit: (output: Output) => void): void {
    if (nowMs < this.tickAtMs) return
    this.tickAtMs = nowMs + this.config.heartbeatMs
    this.carry(this.log.handle({ _tag: "Tick" }), emit)
  }

  /** What this step asks to make durable (taken once, into the step's commit). */
  takePersists(): ReadonlyArray<DecisionPersist> {
    const persists = this.persists
    this.persists = []
    return persists
  }

  /** The step's outputs were carried out (its commit went through, or it had none). */
  confirm(): void {
    this.carried = this.said
  }

  /** The store refused the step: back to what is durable, following the term again. */
  reset(durable: DurableDecisions | undefined, emit: (output: Output) => void): void {
    this.persists = []
    this.said = this.carried
    this.log = this.fresh(durable)
    const followed = this.followed
    this.followed = { term: 0, leader: null }
    this.follow(followed.term, followed.leader === this.config.self ? null : followed.leader, emit)
    this.tickAtMs = never
  }

  view() {
    const membership = this.log.membership()
    return {
      term: this.log.termNow(),
      leader: this.log.leaderNow(),
      ready: this.log.ready(),
      commit: this.log.commitIndexNow(),
      applied: this.log.appliedIndex(),
      last: this.log.position().index,
      snapshot: this.log.snapshotNow().index,
      voters: membership.voters,
      learners: membership.learners,
      decided: this.log.decided(),
      recent: this.log.held().slice(-20),
    }
  }

  private carry(
    outputs: ReturnType<DecisionLog<DecisionCommand, DecidedState, DecisionAnswer>["handle"]>,
    emit: (output: Output) => void,
  ): void {
    for (const output of outputs)
      switch (output._tag) {
        case "Send":
          emit({ _tag: "SendMessage", to: output.to, message: output.message })
          break
        case "PersistEntries":
        case "PersistSnapshot":
          this.persists.push(output)
          break
        case "Applied":
          if (output.index <= this.said) break
          this.said = output.index
          emit({
            _tag: "DecisionApplied",
            index: output.index,
            command: output.command,
            answer: output.answer,
            ...(output.ticket === undefined ? {} : { ticket: output.ticket }),
          })
          break
        case "Refused":
          emit({ _tag: "DecisionRefused", ticket: output.ticket, reason: output.reason })
          break
        case "MembershipChanged":
          break
        case "MembershipApplied":
          if (output.index <= this.said) break
          emit({ _tag: "MembershipDecided", ticket: output.ticket, membership: output.membership })
          break
      }
  }
}
