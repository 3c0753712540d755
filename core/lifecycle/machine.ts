/**
 * Lifecycles as tables, in the manner of h11: `table[state][event] → next state`.
 *
 * A transition either moves the object or returns an `IllegalTransition` that names the
 * object, its state and the event. It never throws and never silently passes: an event the
 * table does not list for the current state is a rejection, and the object is left as it was.
 */

export type Table<S extends string, E extends string> = {
  readonly [state in S]: { readonly [event in E]?: S }
}

export interface Lifecycle<S extends string, E extends string> {
  /** The object kind this lifecycle belongs to, e.g. "system". */
  readonly kind: string
  readonly initial: S
  readonly states: ReadonlyArray<S>
  readonly events: ReadonlyArray<E>
  /** States from which no event leads anywhere; an object there is finished. */
  readonly terminal: ReadonlyArray<S>
  readonly table: Table<S, E>
}

export interface IllegalTransition {
  readonly _tag: "IllegalTransition"
  readonly kind: string
  readonly id: string
  readonly state: string
  readonly event: string
  readonly message: string
}

export type Transition<S extends string> =
  | { readonly _tag: "Moved"; readonly from: S; readonly to: S }
  | { readonly _tag: "Rejected"; readonly rejection: IllegalTransition }

export const defineLifecycle = <const S extends string, const E extends string>(
  lifecycle: Lifecycle<S, E>,
): Lifecycle<S, E> => {
  for (const state of lifecycle.states) {
    const row = lifecycle.table[state]
    for (const event of Object.keys(row) as Array<E>) {
      if (!lifecycle.events.includes(event)) {
        throw new Error(`lifecycle ${lifecycle.kind}: state ${state} lists unknown event ${event}`)
      }
      const next = row[event]
      if (next === undefined || !lifecycle.states.includes(next)) {
        throw new Error(`lifecycle ${lifecycle.kind}: ${state} --${event}--> unknown state ${String(next)}`)
      }
    }
  }
  for (const state of lifecycle.terminal) {
    if (Object.keys(lifecycle.table[state]).length > 0) {
      throw new Error(`lifecycle ${lifecycle.kind}: terminal state ${state} has outgoing events`)
    }
  }
  return lifecycle
}

/** The next state for `event`, or a rejection naming the object, its state and the event. */
export const transition = <S extends string, E extends string>(
  lifecycle: Lifecycle<S, E>,
  id: string,
  state: S,
  event: E,
): Transition<S> => {
  const row = lifecycle.table[state] as { readonly [event: string]: S | undefined } | undefined
  const next = row !== undefined && Object.hasOwn(row, event) ? row[event] : undefined
  if (next !== undefined) return { _tag: "Moved", from: state, to: next }
  return {
    _tag: "Rejected",
    rejection: {
      _tag: "IllegalTransition",
      kind: lifecycle.kind,
      id,
      state,
      event,
      message: `${lifecycle.kind} ${id} is ${state}: event "${event}" is not allowed`,
    },
  }
}

/** The events the table allows in `state`, in the lifecycle's declared order. */
export const allowedEvents = <S extends string, E extends string>(
  lifecycle: Lifecycle<S, E>,
  state: S,
): ReadonlyArray<E> => lifecycle.events.filter((event) => lifecycle.table[state][event] !== undefined)

/** Every state reachable from the initial state, in breadth-first order. */
export const reachableStates = <S extends string, E extends string>(
  lifecycle: Lifecycle<S, E>,
): ReadonlyArray<S> => {
  const seen: Array<S> = [lifecycle.initial]
  for (let index = 0; index < seen.length; index++) {
    const state = seen[index]!
    for (const event of allowedEvents(lifecycle, state)) {
      const next = lifecycle.table[state][event]!
      if (!seen.includes(next)) seen.push(next)
    }
  }
  return seen
}
