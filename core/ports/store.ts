/**
 * The durable store port: where a node keeps what must survive a crash — the CDB's durable
 * image (spec entries, meta, stream positions, its own stream's tail) and the election's vote.
 * `persist` writes a batch in one transaction and returns only once it is durable: the driver
 * acknowledges a write after it.
 */
import { Context, type Effect, Schema } from "effect"
import type { DurableImage, Persist } from "../cdb/durable.ts"
import type { DurableLog, LogPersist } from "../decision/log.ts"
import type { DecidedState, DecisionCommand } from "../decision/state.ts"
import type { DurableVote } from "../monitor/election.ts"

export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  /** `disk-full` and `io-error` are the storage's own refusals (ENOSPC, EIO); `write-failed` any other. */
  reason: Schema.Literals(["open-failed", "corrupt", "write-failed", "disk-full", "io-error"]),
  detail: Schema.String,
}) {
  /** What a log line or an exit shows of it (a bare `StoreError:` said nothing). */
  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

/** A stored value that failed its checksum, and what became of it. */
export interface CorruptedValue {
  readonly kind: string
  readonly id: string
  readonly origin: string
  readonly seq: number
  /**
   * "asked-again": left out, its origin's stream rewound so peers send it again; "restored": from
   * this node's own log; "lost": one of its own that its own log no longer held — the node asks a
   * peer for a snapshot, which gives it back (`CdbNode.askPeersForOwn`).
   */
  readonly outcome: "asked-again" | "restored" | "lost"
}

export class DurableStore extends Context.Service<
  DurableStore,
  {
    /**
     * What is durable. A stored value whose checksum does not match is left out and named in
     * `corrupted` (the image then asks peers for it again, where it can), never served.
     */
    readonly load: Effect.Effect<
      {
        readonly image: DurableImage
        readonly vote: DurableVote
        readonly incarnation: number
        readonly corrupted: ReadonlyArray<CorruptedValue>
        /** The decision log: its snapshot and the entries after it. */
        readonly decisions: DurableLog<DecisionCommand, DecidedState>
      },
      StoreError
    >
    readonly persist: (persists: ReadonlyArray<Persist>) => Effect.Effect<void, StoreError>
    /** A node step's commit: its persists and its vote, in one transaction (all of it durable, or none). */
    readonly commit: (commit: {
      readonly persists: ReadonlyArray<Persist>
      readonly vote?: DurableVote
      readonly decisions?: ReadonlyArray<LogPersist<DecisionCommand, DecidedState>>
    }) => Effect.Effect<void, StoreError>
    readonly persistVote: (vote: DurableVote) => Effect.Effect<void, StoreError>
    /**
     * Counts a restart, and says what this run starts from: the new incarnation (it tells peers
     * this node started afresh) and the lead its seal clock last had over its wall clock (µs),
     * so it takes nothing sealed before its start in the cluster's time.
     */
    readonly recordStart: Effect.Effect<
      { readonly incarnation: number; readonly sealLeadUs: number },
      StoreError
    >
    /** Keeps the seal clock's lead (it only grows: a lower one is ignored). */
    readonly persistSealLead: (leadUs: number) => Effect.Effect<void, StoreError>
  }
>()("acp/core/ports/DurableStore") {}
