/**
 * The monitor's messages on the wire: JSON, decoded with a schema, so a malformed message is a
 * typed rejection that changes nothing. They are small and infrequent (a few per heartbeat), so
 * readability wins over bytes here.
 */
import { Result, Schema } from "effect"
import type { Message as DecisionLogMessage } from "../decision/log.ts"
import type { DecisionCommand } from "../decision/state.ts"
import { DecisionEntry } from "../decision/state.ts"
import type { Message as ElectionMessage } from "./election.ts"

/** The decision log's messages, as they ride the monitor's channel. */
export type DecisionMessage = DecisionLogMessage<DecisionCommand>
/** Everything on the monitor's channel: the election's messages and the decision log's. */
export type Message = ElectionMessage | DecisionMessage

const Name = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(255))
const Term = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

const Index = Term

const MessageSchema = Schema.Union([
  Schema.TaggedStruct("Append", {
    term: Term,
    from: Name,
    prevIndex: Index,
    prevTerm: Term,
    entries: Schema.Array(DecisionEntry),
    commit: Index,
  }),
  Schema.TaggedStruct("AppendReply", { term: Term, from: Name, success: Schema.Boolean, index: Index }),
  Schema.TaggedStruct("Snapshot", {
    term: Term,
    from: Name,
    index: Index,
    snapshotTerm: Term,
    offset: Index,
    total: Index,
    data: Schema.String,
  }),
  Schema.TaggedStruct("SnapshotReply", { term: Term, from: Name, index: Index, offset: Index }),
  Schema.TaggedStruct("Ping", {
    from: Name,
    term: Term,
    leader: Schema.Boolean,
    leased: Schema.Boolean,
    seq: Term,
    epoch: Term,
    hears: Schema.Array(Schema.Tuple([Name, Term])),
    commit: Schema.optionalKey(Term),
  }),
  Schema.TaggedStruct("PingAck", { from: Name, term: Term, seq: Term }),
  Schema.TaggedStruct("PreVote", {
    from: Name,
    term: Term,
    lastTerm: Schema.optionalKey(Term),
    lastIndex: Schema.optionalKey(Term),
  }),
  Schema.TaggedStruct("PreVoteReply", {
    from: Name,
    term: Term,
    granted: Schema.Boolean,
    voterTerm: Schema.optionalKey(Term),
  }),
  Schema.TaggedStruct("Vote", {
    from: Name,
    term: Term,
    lastTerm: Schema.optionalKey(Term),
    lastIndex: Schema.optionalKey(Term),
  }),
  Schema.TaggedStruct("VoteReply", { from: Name, term: Term, granted: Schema.Boolean }),
])

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

export const encodeMessage = (message: Message): Uint8Array => encoder.encode(JSON.stringify(message))

export interface MessageRejected {
  readonly _tag: "MessageRejected"
  readonly detail: string
}

export const decodeMessage = (bytes: Uint8Array): Result.Result<Message, MessageRejected> => {
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(bytes))
  } catch (error) {
    return Result.fail({ _tag: "MessageRejected", detail: `not JSON: ${String(error)}` })
  }
  const decoded = Schema.decodeUnknownResult(MessageSchema)(json, { onExcessProperty: "error" })
  return Result.isSuccess(decoded)
    ? Result.succeed(decoded.success as Message)
    : Result.fail({ _tag: "MessageRejected", detail: String(decoded.failure.message ?? decoded.failure) })
}
