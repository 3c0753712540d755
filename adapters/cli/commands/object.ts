/**
 * `acp object …`: raw CDB access for operators — put, get, list, delete and watch the objects of
 * any kind, through the node's typed API client.
 */
import { Console, Effect, Schedule } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { ObjectView } from "../../api/definition.ts"
import { CliError } from "../client.ts"
import { renderTable } from "../render.ts"
import { dirFlag, jsonFlag, nodeFlag, withApi } from "../target.ts"

const kindArgument = Argument.String("kind").pipe(Argument.withDescription("The object's kind, e.g. project"))
const idArgument = Argument.String("id").pipe(Argument.withDescription("The object's id"))

export const versionOf = (object: ObjectView) =>
  `${object.version.origin}@${object.version.ms}.${object.version.counter}`

const objectPut = Command.make(
  "put",
  {
    kind: kindArgument,
    id: idArgument,
    spec: Flag.String("spec").pipe(Flag.withDescription("The spec as JSON")),
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ kind, id, spec, dir, node }) =>
    Effect.gen(function* () {
      const parsed = yield* Effect.try({
        try: () => JSON.parse(spec) as unknown,
        catch: (error) => new CliError({ message: `--spec is not JSON: ${(error as Error).message}` }),
      })
      yield* withApi(dir, node, (client, target) =>
        client.objects
          .put({ params: { kind, id }, payload: parsed })
          .pipe(
            Effect.flatMap((written) =>
              Console.log(`${kind}/${id} written on ${target.id} (version ${versionOf(written)})`),
            ),
          ),
      )
    }),
).pipe(Command.withDescription("Write an object's spec (validated against its kind) on one node"))

const objectGet = Command.make(
  "get",
  { kind: kindArgument, id: idArgument, dir: dirFlag, node: nodeFlag },
  ({ kind, id, dir, node }) =>
    withApi(dir, node, (client) =>
      client.objects
        .get({ params: { kind, id } })
        .pipe(Effect.flatMap((object) => Console.log(JSON.stringify(object, null, 2)))),
    ),
).pipe(Command.withDescription("Read one object (spec, version, meta) from a node"))

const objectList = Command.make(
  "list",
  { kind: kindArgument, dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ kind, dir, node, json }) =>
    withApi(dir, node, (client) =>
      client.objects.list({ params: { kind } }).pipe(
        Effect.flatMap((objects) =>
          json
            ? Console.log(JSON.stringify(objects))
            : Console.log(
                renderTable(
                  ["KIND", "ID", "WRITTEN BY", "AT (ms)"],
                  objects.map((object) => [
                    object.kind,
                    object.id,
                    object.version.origin,
                    String(object.version.ms),
                  ]),
                ),
              ),
        ),
      ),
    ),
).pipe(Command.withDescription("List the objects of a kind on a node"))

const objectDelete = Command.make(
  "delete",
  { kind: kindArgument, id: idArgument, dir: dirFlag, node: nodeFlag },
  ({ kind, id, dir, node }) =>
    withApi(dir, node, (client, target) =>
      client.objects
        .remove({ params: { kind, id } })
        .pipe(Effect.andThen(Console.log(`${kind}/${id} deleted on ${target.id}`))),
    ),
).pipe(Command.withDescription("Delete an object (a tombstone every node applies)"))

const objectWatch = Command.make(
  "watch",
  {
    kind: kindArgument,
    seconds: Flag.Int("for").pipe(
      Flag.withDescription("Stop after this many seconds (0: until interrupted)"),
      Flag.withDefault(0),
    ),
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ kind, seconds, dir, node }) =>
    Effect.gen(function* () {
      let known = new Map<string, string>()
      let first = true
      const poll = withApi(dir, node, (client) => client.objects.list({ params: { kind } })).pipe(
        Effect.flatMap((objects) =>
          Effect.gen(function* () {
            const now = new Map(objects.map((object) => [object.id, versionOf(object)]))
            for (const [id, version] of now) {
              if (!known.has(id))
                yield* Console.log(`${first ? "exists " : "added  "} ${kind}/${id} ${version}`)
              else if (known.get(id) !== version) yield* Console.log(`changed ${kind}/${id} ${version}`)
            }
            for (const id of known.keys()) if (!now.has(id)) yield* Console.log(`deleted ${kind}/${id}`)
            known = now
            first = false
          }),
        ),
      )
      const every = Schedule.spaced("250 millis")
      yield* seconds > 0
        ? Effect.repeat(poll, { schedule: every, times: seconds * 4 })
        : Effect.repeat(poll, every)
    }),
).pipe(Command.withDescription("Print objects of a kind as they are added, changed and deleted"))

export const objectCommand = Command.make("object").pipe(
  Command.withDescription("Raw CDB access for operators: put, get, list, delete, watch"),
  Command.withSubcommands([objectPut, objectGet, objectList, objectDelete, objectWatch]),
)
