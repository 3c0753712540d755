/**
 * The monitor's messages on the wire: JSON, decoded with a schema, so a malformed message is a
 * typed rejection that changes nothing. They are small and infrequent (a few per heartbeat), so
 * readability wins over bytes here.
 */
import { Result, Schema } from "effect"
import type { Message } from "./election.ts"

const Name = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(255))
const Term = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

const MessageSchema = Schema.Union([
  Schema.TaggedStruct("Ping", {
    from: Name,
    term: Term,
    leader: Schema.Boolean,
    leased: Schema.Boolean,
    seq: Term,
    hears: Schema.Array(Name),
  }),
  Schema.TaggedStruct("PingAck", { from: Name, term: Term, seq: Term }),
  Schema.TaggedStruct("PreVote", {
    from: Name,
    term: Term,
    lastTerm: Schema.optionalKey(Term),
    lastIndex: Schema.optionalKey(Term),
  }),
  Schema.TaggedStruct("PreVoteReply", { from: Name, term: Term, granted: Schema.Boolean }),
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
