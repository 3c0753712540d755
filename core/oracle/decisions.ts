/**
 * The decision log's allocations as a sequential model for the linearizability check, written
 * here on its own, on purpose not imported from `core/decision/state.ts` (an oracle that shared
 * the code it judges would be blind to a bug in it): one epoch counter for the whole state, which
 * every placement and every grant raises; a grant of a range gives a holder the value it already
 * holds there, else the lowest free one; a value held by another is refused; only its holder
 * releases a value; a conditional placement (`expect`) takes effect only at the epoch it names.
 * Refusals compare by kind only (their reasons are prose).
 */
import type { DecisionAnswer, DecisionCommand } from "../decision/state.ts"
import type { Model } from "./linearizability.ts"

export interface AllocationState {
  readonly epoch: number
  /** `pool value` → holder. */
  readonly held: ReadonlyMap<string, string>
  /** system → `node@epoch`. */
  readonly placed: ReadonlyMap<string, string>
}

const slot = (pool: string, value: number) => `${pool} ${value}`

/** The epoch of a system's placement (0: none). */
const epochOf = (state: AllocationState, system: string): number => {
  const placed = state.placed.get(system)
  return placed === undefined ? 0 : Number(placed.slice(placed.lastIndexOf("@") + 1))
}

const step = (
  state: AllocationState,
  command: DecisionCommand,
): { readonly state: AllocationState; readonly result: DecisionAnswer } => {
  const refused = { state, result: { _tag: "Refused", reason: "" } as const }
  switch (command._tag) {
    case "Place": {
      if (command.expect !== undefined && epochOf(state, command.system) !== command.expect) return refused
      const epoch = state.epoch + 1
      return {
        state: {
          ...state,
          epoch,
          placed: new Map(state.placed).set(command.system, `${command.node}@${epoch}`),
        },
        result: { _tag: "Placed", system: command.system, node: command.node, epoch },
      }
    }
    case "Unplace": {
      if (command.expect !== undefined && epochOf(state, command.system) !== command.expect) return refused
      const placed = new Map(state.placed)
      placed.delete(command.system)
      return { state: { ...state, placed }, result: { _tag: "Unplaced", system: command.system } }
    }
    case "Grant": {
      let value = command.value
      if (value === undefined && command.range !== undefined) {
        const { from, to } = command.range
        for (let candidate = from; candidate <= to && value === undefined; candidate++)
          if (state.held.get(slot(command.pool, candidate)) === command.holder) value = candidate
        for (let candidate = from; candidate <= to && value === undefined; candidate++)
          if (!state.held.has(slot(command.pool, candidate))) value = candidate
      }
      if (value === undefined) return refused
      const holder = state.held.get(slot(command.pool, value))
      if (holder !== undefined && holder !== command.holder) return refused
      const epoch = state.epoch + 1
      return {
        state: { ...state, epoch, held: new Map(state.held).set(slot(command.pool, value), command.holder) },
        result: { _tag: "Granted", pool: command.pool, value, epoch },
      }
    }
    case "Release": {
      const key = slot(command.pool, command.value)
      if (state.held.get(key) !== command.holder) return refused
      const held = new Map(state.held)
      held.delete(key)
      return {
        state: { ...state, held },
        result: { _tag: "Released", pool: command.pool, value: command.value },
      }
    }
  }
}

const sorted = (map: ReadonlyMap<string, string>) =>
  [...map]
    .sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join(",")

export const allocationModel: Model<AllocationState, DecisionCommand, DecisionAnswer> = {
  initial: { epoch: 0, held: new Map(), placed: new Map() },
  step,
  same: (model, observed) =>
    model._tag === "Refused" || observed._tag === "Refused"
      ? model._tag === observed._tag
      : Object.keys(model).length === Object.keys(observed).length &&
        Object.entries(model).every(
          ([field, value]) => (observed as Record<string, unknown>)[field] === value,
        ),
  key: (state) => `${state.epoch};${sorted(state.held)};${sorted(state.placed)}`,
}

/**
 * The same model for a history that holds only the clients' calls, not the primary's own
 * decisions (its HA placements, which a harness of real processes does not see): those raise
 * the one epoch counter too, so an answer's epoch may be above the model's — never at or below
 * the last one in the order — and the model goes on from the epoch answered. Everything else
 * is as strict as `allocationModel`.
 */
export const allocationModelWithOthers: Model<AllocationState, DecisionCommand, DecisionAnswer> = {
  ...allocationModel,
  same: (model, observed) =>
    "epoch" in model && "epoch" in observed
      ? observed.epoch >= model.epoch && allocationModel.same(model, { ...observed, epoch: model.epoch })
      : allocationModel.same(model, observed),
  adopt: (state, observed) => {
    if (!("epoch" in observed) || observed.epoch === state.epoch) return state
    // A placement's epoch is named in the state: it is the epoch answered.
    if (observed._tag !== "Placed") return { ...state, epoch: observed.epoch }
    return {
      ...state,
      epoch: observed.epoch,
      placed: new Map(state.placed).set(observed.system, `${observed.node}@${observed.epoch}`),
    }
  },
}
