/**
 * A linearizability check of a history seen from the clients' side (Wing and Gong's search, with
 * Lowe's memo of the states already tried, as Knossos and Porcupine do): is there one order of
 * the operations, each taking effect at one instant between its call and its answer, in which a
 * sequential model gives every answer the clients got? An operation without an answer (its
 * client gave up, its node crashed) may take effect at any time after its call, or never.
 *
 * Pure and generic: the model is a value (`Model`); the simulator's decision checker and the
 * fault harness give it the decision log's allocations (`core/oracle/decisions.ts`). The search
 * is bounded (`maxSteps`): a history too tangled to decide within it is `Inconclusive`, never a
 * pass or a violation.
 */

export interface Model<S, Op, Res> {
  readonly initial: S
  /** The model's state after `op`, and the answer it gives. */
  readonly step: (state: S, op: Op) => { readonly state: S; readonly result: Res }
  /** Whether the answer a client got is the model's. */
  readonly same: (model: Res, observed: Res) => boolean
  /** A state as a string: two states with one key are one (the memo). */
  readonly key: (state: S) => string
}

export interface Operation<Op, Res> {
  readonly invokedUs: number
  /** When its answer came; absent if it never came (it may have taken effect, or not). */
  readonly returnedUs?: number
  readonly op: Op
  /** The answer the client got (absent with `returnedUs`). */
  readonly result?: Res
}

export type Verdict =
  | { readonly _tag: "Linearizable"; readonly order: ReadonlyArray<number> }
  | {
      readonly _tag: "NotLinearizable"
      /** The longest order found that explains the answers so far, as indexes into the history. */
      readonly longest: ReadonlyArray<number>
      /** The operations that could have come next there, none of which fits. */
      readonly next: ReadonlyArray<number>
    }
  | { readonly _tag: "Inconclusive"; readonly steps: number }

export const checkLinearizable = <S, Op, Res>(
  model: Model<S, Op, Res>,
  history: ReadonlyArray<Operation<Op, Res>>,
  maxSteps = 1_000_000,
): Verdict => {
  const count = history.length
  const returned = history.map((operation) => operation.returnedUs ?? Number.POSITIVE_INFINITY)
  const answered = history.filter((operation) => operation.returnedUs !== undefined).length
  const tried = new Set<string>()
  const order: Array<number> = []
  let longest: Array<number> = []
  let longestNext: Array<number> = []
  let steps = 0
  let linearized = 0n
  let answeredDone = 0

  /** The operations that may take effect next: called before every open operation's answer. */
  const candidates = (): Array<number> => {
    let firstAnswer = Number.POSITIVE_INFINITY
    for (let index = 0; index < count; index++)
      if ((linearized & (1n << BigInt(index))) === 0n && returned[index]! < firstAnswer)
        firstAnswer = returned[index]!
    const next: Array<number> = []
    for (let index = 0; index < count; index++)
      if ((linearized & (1n << BigInt(index))) === 0n && history[index]!.invokedUs <= firstAnswer)
        next.push(index)
    return next
  }

  const search = (state: S): boolean | undefined => {
    if (answeredDone === answered) return true
    if (++steps > maxSteps) return undefined
    const next = candidates()
    for (const index of next) {
      const operation = history[index]!
      const { state: after, result } = model.step(state, operation.op)
      if (operation.result !== undefined && !model.same(result, operation.result)) continue
      const bit = 1n << BigInt(index)
      const memo = `${(linearized | bit).toString(36)}|${model.key(after)}`
      if (tried.has(memo)) continue
      tried.add(memo)
      linearized |= bit
      order.push(index)
      if (operation.returnedUs !== undefined) answeredDone++
      if (order.length > longest.length) longest = [...order]
      const found = search(after)
      if (found !== false) return found
      if (operation.returnedUs !== undefined) answeredDone--
      order.pop()
      linearized &= ~bit
    }
    if (order.length === longest.length && order.every((index, at) => longest[at] === index))
      longestNext = next
    return false
  }

  const found = search(model.initial)
  if (found === undefined) return { _tag: "Inconclusive", steps }
  return found
    ? { _tag: "Linearizable", order: [...order] }
    : { _tag: "NotLinearizable", longest, next: longestNext }
}
