/** `acp key create`: an API key for the agent; only its hash goes into the CDB. */
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { newApiKey } from "../../agent/keys.ts"
import { dirFlag, nodeFlag, withApi } from "../target.ts"

export const keyCommand = Command.make("key").pipe(
  Command.withDescription("API keys for the agent"),
  Command.withSubcommands([
    Command.make(
      "create",
      {
        name: Flag.String("name").pipe(Flag.withDescription("Who or what the key is for")),
        role: Flag.Literals("role", ["admin", "operator", "read-only"]).pipe(
          Flag.withDescription("What it may do"),
          Flag.withDefault("read-only"),
        ),
        dir: dirFlag,
        node: nodeFlag,
      },
      ({ name, role, dir, node }) =>
        withApi(dir, node, (client) => {
          const created = newApiKey(name, role)
          return client.objects
            .put({ params: { kind: "api-key", id: created.id }, payload: created.record })
            .pipe(
              Effect.andThen(
                Console.log(`${created.id} (${role}) for ${name}; the key, shown this once:\n${created.key}`),
              ),
            )
        }),
    ).pipe(Command.withDescription("Create an API key; only its hash is stored, the key is printed once")),
  ]),
)
