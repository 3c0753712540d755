/**
 * The decided state: placements and exclusive grants, each with a fencing token that only grows;
 * a value is never held twice; only the current placement's holder may run a system.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  applyDecision,
  changeMembership,
  type DecidedState,
  type DecisionCommand,
  emptyDecided,
  mayRun,
} from "../../../core/decision/state.ts"

const apply = (commands: ReadonlyArray<DecisionCommand>) => {
  let state: DecidedState = emptyDecided
  const answers = []
  for (const command of commands) {
    const result = applyDecision(state, command)
    state = result.state
    answers.push(result.answer)
  }
  return { state, answers }
}

describe("the decided state", () => {
  it("a conditional placement takes effect only at the epoch its proposer saw: the same move twice is one move", () => {
    const { state, answers } = apply([
      { _tag: "Place", system: "web", node: "n1", expect: 0 },
      { _tag: "Place", system: "web", node: "n2", expect: 1 },
      // Proposed again before the first was seen decided, and by a primary that saw epoch 1.
      { _tag: "Place", system: "web", node: "n2", expect: 1 },
      { _tag: "Place", system: "web", node: "n3", expect: 1 },
      { _tag: "Unplace", system: "web", expect: 1 },
      { _tag: "Unplace", system: "web", expect: 2 },
      { _tag: "Place", system: "web", node: "n3", expect: 0 },
    ])
    expect(answers.map((answer) => answer._tag)).toEqual([
      "Placed",
      "Placed",
      "Refused",
      "Refused",
      "Refused",
      "Unplaced",
      "Placed",
    ])
    expect(answers[2]).toEqual({ _tag: "Refused", reason: "web is placed at epoch 2, not 1" })
    // Epochs never repeat, even after the placement was gone.
    expect(state.placements.web).toEqual({ node: "n3", epoch: 3 })
  })

  it("places with growing epochs, and only the current placement may run", () => {
    const { state, answers } = apply([
      { _tag: "Place", system: "web", node: "n1" },
      { _tag: "Place", system: "web", node: "n2" },
    ])
    expect(answers).toEqual([
      { _tag: "Placed", system: "web", node: "n1", epoch: 1 },
      { _tag: "Placed", system: "web", node: "n2", epoch: 2 },
    ])
    expect(mayRun(state, "web", "n2", 2)).toBe(true)
    expect(mayRun(state, "web", "n1", 1)).toBe(false)
    expect(
      mayRun(
        apply([
          { _tag: "Place", system: "web", node: "n1" },
          { _tag: "Unplace", system: "web" },
        ]).state,
        "web",
        "n1",
        1,
      ),
    ).toBe(false)
  })

  it("grants the lowest free value of a range, refuses one held by another, and frees on release", () => {
    const { answers } = apply([
      { _tag: "Grant", pool: "vlan", holder: "p1", range: { from: 100, to: 101 } },
      { _tag: "Grant", pool: "vlan", holder: "p2", range: { from: 100, to: 101 } },
      { _tag: "Grant", pool: "vlan", holder: "p3", range: { from: 100, to: 101 } },
      { _tag: "Grant", pool: "vlan", holder: "p3", value: 100 },
      { _tag: "Release", pool: "vlan", holder: "p3", value: 100 },
      { _tag: "Release", pool: "vlan", holder: "p1", value: 100 },
      { _tag: "Grant", pool: "vlan", holder: "p3", range: { from: 100, to: 101 } },
    ])
    expect(answers.map((answer) => answer._tag)).toEqual([
      "Granted",
      "Granted",
      "Refused",
      "Refused",
      "Refused",
      "Released",
      "Granted",
    ])
    expect(answers[6]).toMatchObject({ value: 100, epoch: 3 })
  })

  it("never holds a value twice and never hands out an epoch twice, whatever the commands", () => {
    const command = fc.oneof(
      fc.record({
        _tag: fc.constant("Place" as const),
        system: fc.constantFrom("a", "b"),
        node: fc.constantFrom("n1", "n2"),
      }),
      fc.record({ _tag: fc.constant("Unplace" as const), system: fc.constantFrom("a", "b") }),
      fc.record({
        _tag: fc.constant("Grant" as const),
        pool: fc.constant("ip"),
        holder: fc.constantFrom("x", "y", "z"),
        range: fc.constant({ from: 1, to: 3 }),
      }),
      fc.record({
        _tag: fc.constant("Release" as const),
        pool: fc.constant("ip"),
        holder: fc.constantFrom("x", "y", "z"),
        value: fc.integer({ min: 1, max: 3 }),
      }),
    )
    fc.assert(
      fc.property(fc.array(command, { maxLength: 60 }), (commands) => {
        const { answers } = apply(commands)
        const epochs = answers.flatMap((answer) => ("epoch" in answer ? [answer.epoch] : []))
        expect(new Set(epochs).size).toBe(epochs.length)
        // Replaying the grants: a value is granted again only after its holder released it.
        const holders = new Map<number, string>()
        for (const [index, answer] of answers.entries()) {
          const asked = commands[index]!
          if (answer._tag === "Granted") {
            expect(holders.get(answer.value) ?? (asked as { holder: string }).holder).toBe(
              (asked as { holder: string }).holder,
            )
            holders.set(answer.value, (asked as { holder: string }).holder)
          }
          if (answer._tag === "Released") holders.delete(answer.value)
        }
      }),
    )
  })
})

describe("a change of membership, one at a time", () => {
  const address = { address: "198.18.0.14", port: 7401, domain: "d1", relay: false }
  const three = { voters: ["n1", "n2", "n3"], learners: [] }

  it("adds a learner with its address, promotes it, and removes a member with its address", () => {
    const added = changeMembership(three, { _tag: "AddLearner", node: "n4", address })
    expect(added).toEqual({
      membership: { voters: ["n1", "n2", "n3"], learners: ["n4"], addresses: { n4: address } },
    })
    const promoted = changeMembership((added as { membership: typeof three }).membership, {
      _tag: "Promote",
      node: "n4",
    })
    expect(promoted).toEqual({
      membership: { voters: ["n1", "n2", "n3", "n4"], learners: [], addresses: { n4: address } },
    })
    const removed = changeMembership((promoted as { membership: typeof three }).membership, {
      _tag: "Remove",
      node: "n4",
    })
    expect(removed).toEqual({ membership: { voters: ["n1", "n2", "n3"], learners: [] } })
  })

  it("refuses what makes no sense, saying why", () => {
    expect(changeMembership(three, { _tag: "AddLearner", node: "n2", address })).toEqual({
      refused: "n2 is already a member",
    })
    expect(changeMembership(three, { _tag: "Promote", node: "n9" })).toEqual({
      refused: "n9 is no member: add it as a learner first",
    })
    expect(changeMembership(three, { _tag: "Promote", node: "n1" })).toEqual({ refused: "n1 already votes" })
    expect(changeMembership(three, { _tag: "Remove", node: "n9" })).toEqual({ refused: "n9 is no member" })
    expect(changeMembership({ voters: ["n1"], learners: [] }, { _tag: "Remove", node: "n1" })).toEqual({
      refused: "n1 is the last voter",
    })
  })
})
