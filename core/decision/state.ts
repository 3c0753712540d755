/**
 * The decided state: what the decision log's committed entries have granted, each grant with
 * its fencing token (an epoch that only grows, as Chubby's sequencers and ZooKeeper's zxids do).
 * A node acts on a grant only with the current epoch for it; a holder of an older epoch stops.
 *
 * - placements: which node runs a system, and the epoch of that placement;
 * - pools: exclusive grants of values from a named pool — IP addresses of a subnet, VLAN ids or
 *   VNIs of a range, devices of a host — each value held by one holder at a time.
 *
 * Pure: `applyDecision` is the state machine the log drives, the same on every member.
 */
import { Result, Schema } from "effect"
import type { Membership, Snapshot } from "./log.ts"

const Name = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(255))
const Index = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

export const DecisionCommand = Schema.Union([
  /**
   * Run `system` on `node` (a new placement: its epoch is one more than any before). With
   * `expect`, only if the system's placement still has that epoch (0: it has none) — a
   * compare-and-set, so that a decision made on what a proposer saw is refused once that changed
   * (a second proposal of the same move, or one from a primary that had not seen the last).
   */
  Schema.TaggedStruct("Place", { system: Name, node: Name, expect: Schema.optionalKey(Index) }),
  /** No node runs `system` any more (deleted, or stopped for good); with `expect`, as `Place`'s. */
  Schema.TaggedStruct("Unplace", { system: Name, expect: Schema.optionalKey(Index) }),
  /** Grant `value` of `pool` (or, without a value, the lowest free one of `range`) to `holder`. */
  Schema.TaggedStruct("Grant", {
    pool: Name,
    holder: Name,
    value: Schema.optionalKey(Schema.Int),
    range: Schema.optionalKey(Schema.Struct({ from: Schema.Int, to: Schema.Int })),
  }),
  /** Give back `value` of `pool`, if `holder` holds it. */
  Schema.TaggedStruct("Release", { pool: Name, holder: Name, value: Schema.Int }),
])
export type DecisionCommand = typeof DecisionCommand.Type

const Port = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1), Schema.isLessThanOrEqualTo(65_535))

/** Where a member that joined through the log is reached. */
export const MemberAddressSchema = Schema.Struct({
  address: Name,
  port: Port,
  domain: Name,
  relay: Schema.Boolean,
  agentPort: Schema.optionalKey(Port),
  relayPort: Schema.optionalKey(Port),
})

/** Who votes and who only follows, as a log entry and a snapshot hold it. */
export const MembershipSchema = Schema.Struct({
  voters: Schema.Array(Name),
  learners: Schema.Array(Name),
  addresses: Schema.optionalKey(Schema.Record(Schema.String, MemberAddressSchema)),
})

/**
 * A change of who is a member, one at a time (Raft's single-server change): a new member joins
 * as a learner (it follows the log, votes in nothing), a learner becomes a voter, a member goes.
 */
export const MembershipChange = Schema.Union([
  Schema.TaggedStruct("AddLearner", { node: Name, address: MemberAddressSchema }),
  Schema.TaggedStruct("Promote", { node: Name }),
  Schema.TaggedStruct("Remove", { node: Name }),
])
export type MembershipChange = typeof MembershipChange.Type

/** The membership after `change`, or why the change cannot be made to `current`. */
export const changeMembership = (
  current: Membership,
  change: MembershipChange,
): { readonly membership: Membership } | { readonly refused: string } => {
  const member = current.voters.includes(change.node) || current.learners.includes(change.node)
  const addresses = current.addresses ?? {}
  switch (change._tag) {
    case "AddLearner":
      if (member) return { refused: `${change.node} is already a member` }
      return {
        membership: {
          voters: current.voters,
          learners: [...current.learners, change.node],
          addresses: { ...addresses, [change.node]: change.address },
        },
      }
    case "Promote":
      if (!current.learners.includes(change.node))
        return {
          refused: current.voters.includes(change.node)
            ? `${change.node} already votes`
            : `${change.node} is no member: add it as a learner first`,
        }
      return {
        membership: {
          ...current,
          voters: [...current.voters, change.node],
          learners: current.learners.filter((node) => node !== change.node),
        },
      }
    case "Remove": {
      if (!member) return { refused: `${change.node} is no member` }
      if (current.voters.length === 1 && current.voters[0] === change.node)
        return { refused: `${change.node} is the last voter` }
      const { [change.node]: _gone, ...rest } = addresses
      return {
        membership: {
          voters: current.voters.filter((node) => node !== change.node),
          learners: current.learners.filter((node) => node !== change.node),
          ...(Object.keys(rest).length === 0 ? {} : { addresses: rest }),
        },
      }
    }
  }
}

/** A decision-log entry with this state machine's commands (the wire and the API). */
export const DecisionEntry = Schema.Struct({
  index: Index,
  term: Index,
  body: Schema.Union([
    Schema.TaggedStruct("Noop", {}),
    Schema.TaggedStruct("Command", { command: DecisionCommand, origin: Name, ticket: Schema.Int }),
    Schema.TaggedStruct("Membership", {
      membership: MembershipSchema,
      origin: Schema.optionalKey(Name),
      ticket: Schema.optionalKey(Schema.Int),
    }),
  ]),
})

/** `DecidedState` as a schema (JSON turns the pools' numeric keys into strings). */
export const DecidedStateSchema = Schema.Struct({
  placements: Schema.Record(Schema.String, Schema.Struct({ node: Name, epoch: Index })),
  pools: Schema.Record(
    Schema.String,
    Schema.Record(Schema.String, Schema.Struct({ holder: Name, epoch: Index })),
  ),
  epoch: Index,
})

const SnapshotSchema = Schema.Struct({
  index: Index,
  term: Index,
  state: DecidedStateSchema,
  membership: MembershipSchema,
})

/**
 * A snapshot of the decided state as the log's snapshot chunks carry it (JSON), and back: the
 * whole text checked against the schema before a follower installs it (undefined if it is none).
 */
export const decidedSnapshotText = {
  encode: (snapshot: Snapshot<unknown>): string => JSON.stringify(snapshot),
  decode: (text: string): Snapshot<unknown> | undefined => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return undefined
    }
    const decoded = Schema.decodeUnknownResult(SnapshotSchema)(json, { onExcessProperty: "error" })
    return Result.isSuccess(decoded) ? (decoded.success as Snapshot<unknown>) : undefined
  },
}

export interface Placement {
  readonly node: string
  readonly epoch: number
}

export interface Held {
  readonly holder: string
  readonly epoch: number
}

export interface DecidedState {
  readonly placements: Readonly<Record<string, Placement>>
  /** pool → value → its holder. */
  readonly pools: Readonly<Record<string, Readonly<Record<number, Held>>>>
  /** The last epoch handed out: every grant's epoch is above every earlier one's. */
  readonly epoch: number
}

export type DecisionAnswer =
  | { readonly _tag: "Placed"; readonly system: string; readonly node: string; readonly epoch: number }
  | { readonly _tag: "Unplaced"; readonly system: string }
  | { readonly _tag: "Granted"; readonly pool: string; readonly value: number; readonly epoch: number }
  | { readonly _tag: "Released"; readonly pool: string; readonly value: number }
  | { readonly _tag: "Refused"; readonly reason: string }

export const emptyDecided: DecidedState = { placements: {}, pools: {}, epoch: 0 }

/** Why a conditional placement is refused: the system's placement is not at the epoch expected. */
const staleExpectation = (
  state: DecidedState,
  command: { readonly system: string; readonly expect?: number },
): string | undefined => {
  if (command.expect === undefined) return undefined
  const epoch = state.placements[command.system]?.epoch ?? 0
  return epoch === command.expect
    ? undefined
    : `${command.system} is placed at epoch ${epoch}, not ${command.expect}`
}

export const applyDecision = (
  state: DecidedState,
  command: DecisionCommand,
): { readonly state: DecidedState; readonly answer: DecisionAnswer } => {
  switch (command._tag) {
    case "Place": {
      const stale = staleExpectation(state, command)
      if (stale !== undefined) return { state, answer: { _tag: "Refused", reason: stale } }
      const epoch = state.epoch + 1
      return {
        state: {
          ...state,
          epoch,
          placements: { ...state.placements, [command.system]: { node: command.node, epoch } },
        },
        answer: { _tag: "Placed", system: command.system, node: command.node, epoch },
      }
    }
    case "Unplace": {
      const stale = staleExpectation(state, command)
      if (stale !== undefined) return { state, answer: { _tag: "Refused", reason: stale } }
      const { [command.system]: _gone, ...placements } = state.placements
      return { state: { ...state, placements }, answer: { _tag: "Unplaced", system: command.system } }
    }
    case "Grant": {
      const pool = state.pools[command.pool] ?? {}
      let value = command.value
      if (value === undefined) {
        const range = command.range
        if (range === undefined)
          return { state, answer: { _tag: "Refused", reason: "a grant needs a value or a range" } }
        // A holder that already holds a value of the range gets that one again (as a DHCP lease is
        // renewed), with a new epoch; else the lowest free one.
        for (let candidate = range.from; candidate <= range.to && value === undefined; candidate++)
          if (pool[candidate]?.holder === command.holder) value = candidate
        for (let candidate = range.from; candidate <= range.to && value === undefined; candidate++)
          if (pool[candidate] === undefined) value = candidate
        if (value === undefined)
          return {
            state,
            answer: {
              _tag: "Refused",
              reason: `${command.pool}: no free value in ${range.from}..${range.to}`,
            },
          }
      }
      const held = pool[value]
      if (held !== undefined && held.holder !== command.holder)
        return {
          state,
          answer: { _tag: "Refused", reason: `${command.pool} ${value} is held by ${held.holder}` },
        }
      const epoch = state.epoch + 1
      return {
        state: {
          ...state,
          epoch,
          pools: { ...state.pools, [command.pool]: { ...pool, [value]: { holder: command.holder, epoch } } },
        },
        answer: { _tag: "Granted", pool: command.pool, value, epoch },
      }
    }
    case "Release": {
      const pool = state.pools[command.pool] ?? {}
      if (pool[command.value]?.holder !== command.holder)
        return {
          state,
          answer: {
            _tag: "Refused",
            reason: `${command.holder} does not hold ${command.pool} ${command.value}`,
          },
        }
      const { [command.value]: _released, ...rest } = pool
      return {
        state: { ...state, pools: { ...state.pools, [command.pool]: rest } },
        answer: { _tag: "Released", pool: command.pool, value: command.value },
      }
    }
  }
}

/** The state machine for `DecisionLog`. */
export const decisionMachine = {
  initial: emptyDecided,
  apply: (state: DecidedState, command: DecisionCommand) => applyDecision(state, command),
}

/** Whether `node` may run `system` under the fencing token `epoch`: only the current placement's. */
export const mayRun = (state: DecidedState, system: string, node: string, epoch: number): boolean => {
  const placement = state.placements[system]
  return placement !== undefined && placement.node === node && placement.epoch === epoch
}
