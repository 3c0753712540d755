import { describe, expect, it } from "vitest"
import type { DecisionAnswer, DecisionCommand } from "../../../core/decision/state.ts"
import { allocationModel, allocationModelWithOthers } from "../../../core/oracle/decisions.ts"
import { checkLinearizable, type Operation } from "../../../core/oracle/linearizability.ts"

const grant = (holder: string): DecisionCommand => ({
  _tag: "Grant",
  pool: "vlan",
  holder,
  range: { from: 100, to: 101 },
})
const granted = (value: number, epoch: number): DecisionAnswer => ({
  _tag: "Granted",
  pool: "vlan",
  value,
  epoch,
})
const release = (holder: string, value: number): DecisionCommand => ({
  _tag: "Release",
  pool: "vlan",
  holder,
  value,
})
const released = (value: number): DecisionAnswer => ({ _tag: "Released", pool: "vlan", value })
const op = (
  invokedUs: number,
  returnedUs: number | undefined,
  command: DecisionCommand,
  result?: DecisionAnswer,
): Operation<DecisionCommand, DecisionAnswer> => ({
  invokedUs,
  ...(returnedUs === undefined ? {} : { returnedUs }),
  op: command,
  ...(result === undefined ? {} : { result }),
})

describe("the linearizability check (decision log allocations)", () => {
  it("finds the order of concurrent grants that explains their answers", () => {
    // b's call overlaps a's: b may have taken effect first, and did.
    const verdict = checkLinearizable(allocationModel, [
      op(0, 10, grant("a"), granted(101, 2)),
      op(5, 8, grant("b"), granted(100, 1)),
    ])
    expect(verdict).toEqual({ _tag: "Linearizable", order: [1, 0] })
  })

  it("refuses answers no order explains: b was called after a's answer, yet got the value a holds", () => {
    const verdict = checkLinearizable(allocationModel, [
      op(0, 10, grant("a"), granted(100, 1)),
      op(20, 30, grant("b"), granted(100, 2)),
    ])
    expect(verdict._tag).toBe("NotLinearizable")
    if (verdict._tag === "NotLinearizable") {
      expect(verdict.longest).toEqual([0])
      expect(verdict.next).toEqual([1])
    }
  })

  it("an acknowledged grant that later vanished (the next caller got the same value, no release between) is caught", () => {
    const verdict = checkLinearizable(allocationModel, [
      op(0, 10, grant("a"), granted(100, 1)),
      op(20, 30, grant("b"), granted(100, 1)),
    ])
    expect(verdict._tag).toBe("NotLinearizable")
  })

  it("two moves of one system conditional on the same epoch: one order allows both answered only if one is refused", () => {
    const move = (node: string): DecisionCommand => ({ _tag: "Place", system: "vm1", node, expect: 1 })
    const placedOn = (node: string, epoch: number): DecisionAnswer => ({
      _tag: "Placed",
      system: "vm1",
      node,
      epoch,
    })
    const first = op(0, 5, { _tag: "Place", system: "vm1", node: "n1", expect: 0 }, placedOn("n1", 1))
    // Concurrent, both said placed (a primary and its stale predecessor, each granting a move).
    expect(
      checkLinearizable(allocationModel, [
        first,
        op(10, 20, move("n2"), placedOn("n2", 2)),
        op(12, 22, move("n3"), placedOn("n3", 3)),
      ])._tag,
    ).toBe("NotLinearizable")
    expect(
      checkLinearizable(allocationModel, [
        first,
        op(10, 20, move("n2"), placedOn("n2", 2)),
        op(12, 22, move("n3"), { _tag: "Refused", reason: "vm1 is placed at epoch 2, not 1" }),
      ])._tag,
    ).toBe("Linearizable")
  })

  it("with others' decisions unseen, epochs may jump forward but never back, and a vanished grant is still caught", () => {
    // The primary's own placements came between: epochs 2 and 3 are theirs.
    expect(
      checkLinearizable(allocationModelWithOthers, [
        op(0, 10, grant("a"), granted(100, 1)),
        op(20, 30, grant("b"), granted(101, 4)),
      ])._tag,
    ).toBe("Linearizable")
    expect(
      checkLinearizable(allocationModel, [
        op(0, 10, grant("a"), granted(100, 1)),
        op(20, 30, grant("b"), granted(101, 4)),
      ])._tag,
    ).toBe("NotLinearizable")
    // b was called after a's answer with epoch 4: its epoch cannot be below it.
    expect(
      checkLinearizable(allocationModelWithOthers, [
        op(0, 10, grant("a"), granted(100, 4)),
        op(20, 30, grant("b"), granted(101, 3)),
      ])._tag,
    ).toBe("NotLinearizable")
    expect(
      checkLinearizable(allocationModelWithOthers, [
        op(0, 10, grant("a"), granted(100, 1)),
        op(20, 30, grant("b"), granted(100, 5)),
      ])._tag,
    ).toBe("NotLinearizable")
  })

  it("an operation without an answer may have taken effect, or not", () => {
    const took = checkLinearizable(allocationModel, [
      op(0, undefined, grant("a")),
      op(20, 30, grant("b"), granted(101, 2)),
    ])
    expect(took._tag).toBe("Linearizable")
    const didNot = checkLinearizable(allocationModel, [
      op(0, undefined, grant("a")),
      op(20, 30, grant("b"), granted(100, 1)),
    ])
    expect(didNot._tag).toBe("Linearizable")
    // But not after its effect was seen to be missing and then present: c sees a's grant after b saw it absent.
    const both = checkLinearizable(allocationModel, [
      op(0, undefined, grant("a")),
      op(20, 30, grant("b"), granted(100, 1)),
      op(40, 50, release("a", 100), released(100)),
    ])
    expect(both._tag).toBe("NotLinearizable")
  })

  it("releases only by the holder; refusals compare by kind", () => {
    const verdict = checkLinearizable(allocationModel, [
      op(0, 10, grant("a"), granted(100, 1)),
      op(20, 30, release("b", 100), { _tag: "Refused", reason: "x" }),
      op(40, 50, release("a", 100), released(100)),
      op(60, 70, grant("b"), granted(100, 2)),
    ])
    expect(verdict._tag).toBe("Linearizable")
  })

  it("a long sequential history with many unanswered calls stays within the search bound", () => {
    const history: Array<Operation<DecisionCommand, DecisionAnswer>> = []
    let epoch = 0
    for (let round = 0; round < 300; round++) {
      const at = round * 100
      if (round % 10 === 0) history.push(op(at, undefined, { _tag: "Unplace", system: `s${round}` }))
      history.push(
        op(
          at + 1,
          at + 40,
          { _tag: "Place", system: "s", node: `n${round % 3}` },
          {
            _tag: "Placed",
            system: "s",
            node: `n${round % 3}`,
            epoch: ++epoch,
          },
        ),
      )
    }
    expect(checkLinearizable(allocationModel, history)._tag).toBe("Linearizable")
  })

  it("says Inconclusive, not pass or fail, when the bound is spent", () => {
    const history = Array.from({ length: 12 }, (_, index) => op(0, 100, grant(`h${index}`), granted(100, 1)))
    expect(checkLinearizable(allocationModel, history, 5)._tag).toBe("Inconclusive")
  })
})
