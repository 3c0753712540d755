import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { allowedEvents, type Lifecycle, reachableStates, transition } from "../../core/lifecycle/machine.ts"
import { lifecycles, systemLifecycle, taskLifecycle } from "../../core/lifecycle/tables.ts"

type AnyLifecycle = Lifecycle<string, string>
const all = lifecycles as ReadonlyArray<AnyLifecycle>

/** Any event name, known to the lifecycle or not: illegal and unknown events must both be rejected. */
const eventOf = (lifecycle: AnyLifecycle) =>
  fc.oneof(fc.constantFrom(...lifecycle.events), fc.string({ maxLength: 12 }))

describe("lifecycle", () => {
  describe("transition", () => {
    for (const lifecycle of all) {
      it(`${lifecycle.kind}: random event sequences never reach a state outside the table`, () => {
        fc.assert(
          fc.property(fc.array(eventOf(lifecycle), { maxLength: 60 }), (events) => {
            let state = lifecycle.initial
            for (const event of events) {
              const result = transition(lifecycle, "x", state, event)
              if (result._tag === "Moved") {
                expect(lifecycle.table[state]![event]).toBe(result.to)
                state = result.to
              }
              expect(lifecycle.states).toContain(state)
            }
          }),
          { numRuns: 300 },
        )
      })

      it(`${lifecycle.kind}: every rejection leaves the object unchanged and names object, state and event`, () => {
        fc.assert(
          fc.property(fc.constantFrom(...lifecycle.states), eventOf(lifecycle), (state, event) => {
            const object = Object.freeze({ id: "obj-1", state })
            const result = transition(lifecycle, object.id, object.state, event)
            const allowed = allowedEvents(lifecycle, state).includes(event)
            expect(result._tag).toBe(allowed ? "Moved" : "Rejected")
            if (result._tag === "Rejected") {
              expect(object).toEqual({ id: "obj-1", state })
              expect(result.rejection).toMatchObject({ kind: lifecycle.kind, id: "obj-1", state, event })
              expect(result.rejection.message).toContain(state)
              expect(result.rejection.message).toContain(event)
            }
          }),
          { numRuns: 300 },
        )
      })
    }

    it("rejects an event inherited from Object.prototype instead of following it", () => {
      const result = transition(taskLifecycle, "t1", "queued", "constructor" as never)
      expect(result._tag).toBe("Rejected")
    })

    it("moves a running system to paused on pause, and rejects start while running", () => {
      expect(transition(systemLifecycle, "vm1", "running", "pause")).toEqual({
        _tag: "Moved",
        from: "running",
        to: "paused",
      })
      const rejected = transition(systemLifecycle, "vm1", "running", "start")
      expect(rejected).toMatchObject({
        _tag: "Rejected",
        rejection: { message: 'system vm1 is running: event "start" is not allowed' },
      })
    })
  })

  describe("reachableStates", () => {
    for (const lifecycle of all) {
      it(`${lifecycle.kind}: every state is reachable from the initial state`, () => {
        expect([...reachableStates(lifecycle)].sort()).toEqual([...lifecycle.states].sort())
      })

      it(`${lifecycle.kind}: terminal states allow no event and every other state allows one`, () => {
        for (const state of lifecycle.states) {
          const isTerminal = lifecycle.terminal.includes(state)
          expect(allowedEvents(lifecycle, state).length === 0).toBe(isTerminal)
        }
      })
    }
  })
})
