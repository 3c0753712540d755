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
  /**
   * What an answer says of the state beyond the model, where the history holds only some of the
   * callers (a counter that others' operations also raise): the state after an answered operation.
   */
  readonly adopt?: (state: S, observed: Res) => S
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

/**
 * A verdict of no legal order in words: how far the longest order got, its last steps, and the
 * operations none of which fits next (`show` names an operation by its index in the history).
 */
export const explainNoOrder = (
  verdict: Extract<Verdict, { readonly _tag: "NotLinearizable" }>,
  count: number,
  show: (index: number) => string,
): string =>
  `no legal order: after ${verdict.longest.length} of ${count} (the last: ${verdict.longest.slice(-3).map(show).join("; ") || "none"}), none of ${verdict.next.map(show).join("; ")} fits`

/** A 32-bit mix of an integer (splitmix32's finaliser): the memo's hash of each operation. */
const mix = (value: number): number => {
  let x = (value + 0x9e3779b9) | 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

/**
 * The search. Two prunings keep it near linear on the histories clusters make (mostly one call
 * at a time, some never answered): an operation without an answer whose effect leaves the
 * model's state as it was is never placed (leaving it out explains the same answers); and the
 * memo keys a set of placed operations by two 32-bit hashes (Zobrist's), not by the set — a
 * collision, about one in 10^13 for a million states, could only hide an order, never invent one.
 */
export const checkLinearizable = <S, Op, Res>(
  model: Model<S, Op, Res>,
  history: ReadonlyArray<Operation<Op, Res>>,
  maxSteps = 1_000_000,
): Verdict => {
  const count = history.length
  const byInvoke = (indexes: Array<number>) =>
    indexes.sort((left, right) => history[left]!.invokedUs - history[right]!.invokedUs || left - right)
  const all = Array.from({ length: count }, (_, index) => index)
  /** Answered operations in order of their calls, and in order of their answers; the unanswered ones. */
  const answered = byInvoke(all.filter((index) => history[index]!.returnedUs !== undefined))
  const byAnswer = [...answered].sort(
    (left, right) => history[left]!.returnedUs! - history[right]!.returnedUs! || left - right,
  )
  const answerRank = new Map(byAnswer.map((index, rank) => [index, rank]))
  const callRank = new Map(answered.map((index, rank) => [index, rank]))
  const open = byInvoke(all.filter((index) => history[index]!.returnedUs === undefined))
  const placed = new Uint8Array(count)
  const hashA = all.map((index) => mix(index * 2))
  const hashB = all.map((index) => mix(index * 2 + 1))
  let setA = 0
  let setB = 0
  /** How many of `byAnswer` and of `answered`, from the start, are all placed. */
  let answeredPrefix = 0
  let calledPrefix = 0
  let answeredDone = 0
  const tried = new Set<string>()
  const order: Array<number> = []
  let longest: Array<number> = []
  let longestNext: Array<number> = []
  let steps = 0

  const place = (index: number) => {
    placed[index] = 1
    setA ^= hashA[index]!
    setB ^= hashB[index]!
    order.push(index)
    if (history[index]!.returnedUs === undefined) return
    answeredDone++
    while (answeredPrefix < byAnswer.length && placed[byAnswer[answeredPrefix]!] === 1) answeredPrefix++
    while (calledPrefix < answered.length && placed[answered[calledPrefix]!] === 1) calledPrefix++
  }
  const unplace = (index: number) => {
    placed[index] = 0
    setA ^= hashA[index]!
    setB ^= hashB[index]!
    order.pop()
    if (history[index]!.returnedUs === undefined) return
    answeredDone--
    answeredPrefix = Math.min(answeredPrefix, answerRank.get(index)!)
    calledPrefix = Math.min(calledPrefix, callRank.get(index)!)
  }

  /** The operations that may take effect next: called no later than every open operation's answer. */
  const candidates = (): Array<number> => {
    const firstAnswer =
      answeredPrefix < byAnswer.length
        ? history[byAnswer[answeredPrefix]!]!.returnedUs!
        : Number.POSITIVE_INFINITY
    const next: Array<number> = []
    for (let rank = calledPrefix; rank < answered.length; rank++) {
      const index = answered[rank]!
      if (history[index]!.invokedUs > firstAnswer) break
      if (placed[index] === 0) next.push(index)
    }
    for (const index of open) {
      if (history[index]!.invokedUs > firstAnswer) break
      if (placed[index] === 0) next.push(index)
    }
    return next
  }

  const search = (state: S): boolean | undefined => {
    if (answeredDone === answered.length) return true
    if (++steps > maxSteps) return undefined
    const next = candidates()
    const before = model.key(state)
    for (const index of next) {
      const operation = history[index]!
      const { state: stepped, result } = model.step(state, operation.op)
      if (operation.result !== undefined && !model.same(result, operation.result)) continue
      const after =
        operation.result === undefined || model.adopt === undefined
          ? stepped
          : model.adopt(stepped, operation.result)
      const key = model.key(after)
      if (operation.returnedUs === undefined && key === before) continue
      const memo = `${(setA ^ hashA[index]!).toString(36)}.${(setB ^ hashB[index]!).toString(36)}|${key}`
      if (tried.has(memo)) continue
      tried.add(memo)
      place(index)
      if (order.length > longest.length) longest = [...order]
      const found = search(after)
      if (found !== false) return found
      unplace(index)
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
