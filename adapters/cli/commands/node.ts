/**
 * `acp node run --config <file>`: runs one node in the foreground (what `acp cluster up`
 * spawns per node): SQLite, UDP, the driver loop, and the local API. Logs are JSON lines.
 */
import { rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Console, Effect, Layer, Logger } from "effect"
import { Command, Flag } from "effect/cli"
import { startAgent } from "../../agent/agent.ts"
import { layerApiServer, Node } from "../../api/server.ts"
import { type ConfigError, loadConfig } from "../../node/config.ts"
import { startNode } from "../../node/node.ts"
import { layerSqlite } from "../../store/sqlite.ts"
import { envelopeOverhead } from "../../transport/envelope.ts"
import { layerUdp } from "../../transport/udp.ts"

export const runNode = (configPath: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const config = yield* loadConfig(configPath)
      // The pid file lets `acp cluster down` find this process however it was started.
      const pidFile = join(config.dataDir, "node.pid")
      yield* Effect.acquireRelease(
        Effect.sync(() => writeFileSync(pidFile, `${process.pid}\n`)),
        () => Effect.sync(() => rmSync(pidFile, { force: true })),
      )
      const infrastructure = Layer.mergeAll(
        layerSqlite({
          path: join(config.dataDir, "node.db"),
          self: config.id,
          retainChanges: 4096,
          synchronous: config.synchronous,
        }),
        layerUdp({
          self: config.id,
          address: config.address,
          port: config.port,
          group: config.group,
          groupPort: config.groupPort,
          domain: config.domain,
          peers: config.members,
          key: Buffer.from(config.keyHex, "hex"),
          maxPayloadBytes: config.mtu,
          queueCapacity: 65_536,
        }),
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const { running } = yield* startNode(config)
          if (config.agent !== null) {
            yield* startAgent(running, { address: config.address, apiPort: config.apiPort, ...config.agent })
            yield* Effect.logInfo("agent listening", { address: config.address, port: config.agent.port })
          }
          yield* Layer.launch(
            layerApiServer(config.apiPort).pipe(Layer.provide(Layer.succeed(Node, running))),
          )
        }),
      ).pipe(Effect.provide(infrastructure))
    }),
  )

export const nodeCommand = Command.make("node").pipe(
  Command.withDescription("Run or inspect one ACP node"),
  Command.withSubcommands([
    Command.make(
      "run",
      {
        config: Flag.String("config").pipe(
          Flag.withDescription("The node's JSON config file (written by `acp cluster up`)"),
        ),
      },
      ({ config }) =>
        runNode(config).pipe(
          Effect.provide(Logger.layer([Logger.consoleJson])),
          Effect.catchTag("ConfigError", (error: ConfigError) =>
            Console.error(`acp node run: ${error.message}`).pipe(
              Effect.andThen(Effect.sync(() => (process.exitCode = 2))),
            ),
          ),
        ),
    ).pipe(
      Command.withDescription(
        `Run a node in the foreground (datagrams carry ${envelopeOverhead} bytes of authentication)`,
      ),
    ),
  ]),
)
