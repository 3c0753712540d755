/**
 * `acp model`: the object model and lifecycle tables, read straight from `core/`.
 */
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { allowedEvents } from "../../../core/lifecycle/machine.ts"
import { kinds, objectKinds } from "../../../core/model/kinds.ts"
import { renderTable } from "../render.ts"

const json = Flag.Boolean("json").pipe(
  Flag.withDescription("Print one JSON document instead of a table"),
  Flag.withDefault(false),
)

const kindsCommand = Command.make("kinds", { json }, ({ json }) =>
  Effect.gen(function* () {
    const rows = objectKinds.map((name) => ({
      kind: name,
      lifecycle: kinds[name].lifecycle === undefined ? "-" : kinds[name].lifecycle.states.join(" "),
      description: kinds[name].description,
    }))
    if (json) return yield* Console.log(JSON.stringify(rows, null, 2))
    yield* Console.log(
      renderTable(
        ["KIND", "DESCRIPTION", "LIFECYCLE STATES"],
        rows.map((r) => [r.kind, r.description, r.lifecycle]),
      ),
    )
  }),
).pipe(Command.withDescription("List every object kind the CDB holds"))

const withLifecycle = objectKinds.filter((name) => kinds[name].lifecycle !== undefined)

const lifecycleCommand = Command.make(
  "lifecycle",
  {
    kind: Argument.Literals("kind", withLifecycle).pipe(Argument.withDescription("The object kind")),
    json,
  },
  ({ kind, json }) =>
    Effect.gen(function* () {
      const lifecycle = kinds[kind].lifecycle!
      const rows = lifecycle.states.flatMap((state) =>
        allowedEvents(lifecycle, state).map((event) => ({
          state,
          event,
          next: lifecycle.table[state]![event]!,
        })),
      )
      if (json) {
        return yield* Console.log(
          JSON.stringify(
            { kind, initial: lifecycle.initial, terminal: lifecycle.terminal, transitions: rows },
            null,
            2,
          ),
        )
      }
      yield* Console.log(
        `${kind}: starts ${lifecycle.initial}; terminal: ${lifecycle.terminal.join(", ") || "none"}`,
      )
      yield* Console.log(
        renderTable(
          ["STATE", "EVENT", "NEXT"],
          rows.map((r) => [r.state, r.event, r.next]),
        ),
      )
    }),
).pipe(Command.withDescription("Print the lifecycle table of a kind: state, event, next state"))

export const modelCommand = Command.make("model").pipe(
  Command.withDescription("Show the object model: kinds and their lifecycle tables"),
  Command.withSubcommands([kindsCommand, lifecycleCommand]),
)
