/**
 * What goes into one node's composition and what comes out of one of its steps: the inputs its
 * drivers hand it, the outputs and effects they carry out, the commit that comes first.
 */
import type { Change, StatsValue } from "../cdb/codec.ts"
import type { DurableImage, Persist } from "../cdb/durable.ts"
import type { CdbConfig, Output as CdbOutput, WriteOp } from "../cdb/node.ts"
import type { DurableLog, LogPersist, Membership } from "../decision/log.ts"
import type { DecidedState, DecisionAnswer, DecisionCommand, MembershipChange } from "../decision/state.ts"
import type { ServiceState } from "../lifecycle/tables.ts"
import type { AlarmChange } from "../monitor/alarms.ts"
import type { DurableVote, ElectionConfig, Output as ElectionOutput } from "../monitor/election.ts"
import type { Message } from "../monitor/wire.ts"
import type { Destination } from "../ports/transport.ts"
import type { ServiceEvent, ServiceFactories, ServiceName, ServicePorts } from "./service.ts"

export interface NodeTimings {
  /** While the store refuses commits, how often the core takes a received datagram (a probe). */
  readonly storeProbeMs: number
  /** After a refused commit, how long before the CDB core's next deadline (its next try). */
  readonly storeRetryMs: number
  /** How long a service waits before writing again what its node refused. */
  readonly serviceRetryMs: number
  /** How long after a change a service reads the store again (changes that come together, read once). */
  readonly viewDelayMs: number
}

export const defaultNodeTimings: NodeTimings = {
  storeProbeMs: 500,
  storeRetryMs: 50,
  serviceRetryMs: 500,
  viewDelayMs: 10,
}

export interface NodeCoreConfig {
  readonly self: string
  /** With `self` and every member filled in. */
  readonly cdb: CdbConfig
  readonly election: ElectionConfig
  readonly incarnation: number
  readonly timings: NodeTimings
  readonly services: ServiceFactories
  /**
   * Values the store held with a wrong checksum at start (never served), for health; `lost`: its
   * own values that its own log no longer held, which it asks its peers for.
   */
  readonly storeCorrupted?: { readonly count: number; readonly lost: number }
  /**
   * A planted bug for the simulator (never set by a real node): the services' states count
   * neither in health nor in alarms, as before the node knew of them.
   */
  readonly ignoreServices?: boolean
}

export interface StoreFailure {
  readonly reason: string
  readonly detail: string
}

export type Input =
  | {
      readonly _tag: "Datagram"
      readonly bytes: Uint8Array
      readonly via: "domain" | "relay"
      readonly from?: string
    }
  | { readonly _tag: "MonitorMessage"; readonly message: Message }
  /** A client's writes; answered by `Written` or `WriteRefused` with the same ticket. */
  | {
      readonly _tag: "Write"
      readonly ticket: number
      readonly writes: ReadonlyArray<Omit<WriteOp, "requestId">>
    }
  | { readonly _tag: "SetStats"; readonly values: ReadonlyArray<StatsValue> }
  /** A decision for the log, on the primary; answered by `DecisionApplied` (with the ticket) or `DecisionRefused`. */
  | { readonly _tag: "Propose"; readonly command: DecisionCommand; readonly ticket: number }
  /** A change of membership, on the primary; answered by `MembershipDecided` (its ticket) or `DecisionRefused`. */
  | { readonly _tag: "ChangeMembership"; readonly change: MembershipChange; readonly ticket: number }
  | { readonly _tag: "DeadlineReached" }
  | {
      readonly _tag: "CommitRefused"
      readonly error: StoreFailure
      readonly durable: {
        readonly image: DurableImage
        readonly vote: DurableVote
        readonly decisions?: DurableDecisions
      }
    }
  /** The supervisor's word on one of this node's services (the framework's report). */
  | {
      readonly _tag: "ServiceState"
      readonly name: string
      readonly state: ServiceState
      readonly restarts: number
      readonly lastError?: string
    }
  | {
      [Name in ServiceName]: {
        readonly _tag: "ServiceInput"
        readonly service: Name
        /** The run of the service the effect was for: an answer for an earlier run is dropped. */
        readonly run: number
        readonly input: ServicePorts[Name]["input"]
      }
    }[ServiceName]

export type WriteSource = "client" | "alarm" | "service"

export type Output =
  | { readonly _tag: "Send"; readonly to: Destination; readonly bytes: Uint8Array }
  | { readonly _tag: "SendMessage"; readonly to: "all" | string; readonly message: Message }
  /** Writes taken, with the changes they became (a meta write too), in order. */
  | {
      readonly _tag: "Written"
      readonly ticket: number | undefined
      readonly source: WriteSource
      readonly writes: ReadonlyArray<WriteOp>
      readonly changes: ReadonlyArray<Change>
    }
  | {
      readonly _tag: "WriteRefused"
      readonly ticket: number | undefined
      readonly source: WriteSource
      readonly reason: string
      readonly detail: string
    }
  | { readonly _tag: "Applied"; readonly changes: ReadonlyArray<Change> }
  | {
      readonly _tag: "SnapshotInstalled"
      readonly from: string
      readonly vector: ReadonlyArray<readonly [string, number]>
    }
  | Extract<CdbOutput, { readonly _tag: "Rejected" | "MemberChanged" }>
  | Extract<
      ElectionOutput,
      { readonly _tag: "BecamePrimary" | "SteppedDown" | "LeaseRenewed" | "Fence" | "Unfence" }
    >
  | { readonly _tag: "Alarms"; readonly changes: ReadonlyArray<AlarmChange> }
  | { readonly _tag: "ServiceEvent"; readonly service: ServiceName; readonly event: ServiceEvent }
  /** The decision log applied a committed decision (every member, in index order). */
  | {
      readonly _tag: "DecisionApplied"
      readonly index: number
      readonly command: DecisionCommand
      readonly answer: DecisionAnswer
      /** This node proposed it: its ticket. */
      readonly ticket?: number
    }
  | { readonly _tag: "DecisionRefused"; readonly ticket: number; readonly reason: string }
  /** A membership change proposed here is committed. */
  | { readonly _tag: "MembershipDecided"; readonly ticket: number; readonly membership: Membership }
  /**
   * Who the members are changed (the log's latest membership): the driver reaches the new ones
   * where their addresses say (its transport's peers, its forwarding), and the first ones as its
   * config says.
   */
  | { readonly _tag: "MembersChanged"; readonly membership: Membership }
  /** A service proposed a decision (the HA round's, on the primary), under a ticket below zero. */
  | { readonly _tag: "DecisionProposed"; readonly ticket: number; readonly command: DecisionCommand }
  | { readonly _tag: "StoreFailing"; readonly error: StoreFailure }
  | { readonly _tag: "StoreRecovered"; readonly failingForMs: number }

export type ServiceEffect = {
  [Name in ServiceName]: {
    readonly service: Name
    readonly run: number
    readonly effect: ServicePorts[Name]["effect"]
  }
}[ServiceName]

/** What a node keeps of its decision log: its snapshot and the entries after it. */
export type DurableDecisions = DurableLog<DecisionCommand, DecidedState>
export type DecisionPersist = LogPersist<DecisionCommand, DecidedState>

export interface Commit {
  readonly persists: ReadonlyArray<Persist>
  readonly vote?: DurableVote
  /** The decision log's entries and snapshot, in order. */
  readonly decisions?: ReadonlyArray<DecisionPersist>
}

export interface Step {
  /** To make durable before any of `outputs` is carried out. */
  readonly commit: Commit | undefined
  readonly outputs: ReadonlyArray<Output>
  /** Carried out whether or not the commit succeeds. */
  readonly effects: ReadonlyArray<ServiceEffect>
  /** When to hand the core `DeadlineReached` next (monotonic ms). */
  readonly deadlineMs: number
}

export interface ServiceStatus {
  readonly name: string
  readonly state: ServiceState
  readonly restarts: number
  readonly lastError?: string
  readonly sinceMs: number
}
