/**
 * `acp`: the one command for operators. Each group lives in `commands/`; this file only
 * assembles them and runs the result on Node.
 */
import { isMainThread } from "node:worker_threads"
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import packageJson from "../../package.json" with { type: "json" }
import { benchCommand } from "./commands/bench.ts"
import { clusterCommand } from "./commands/cluster.ts"
import { keyCommand } from "./commands/key.ts"
import { modelCommand } from "./commands/model.ts"
import { alarmCommand, healthCommand, monitorCommand } from "./commands/monitor.ts"
import { nodeCommand } from "./commands/node.ts"
import { objectCommand } from "./commands/object.ts"
import { setupCommand } from "./commands/setup.ts"
import { simCommand } from "./commands/sim.ts"
import { storageCommand } from "./commands/storage.ts"
import { systemCommand, taskCommand } from "./commands/system.ts"
import { vortexCommand } from "./commands/vortex.ts"

export const acp = Command.make("acp").pipe(
  Command.withDescription("ACP: run virtual machines on a cluster of Linux hosts, and simulate it"),
  Command.withSubcommands([
    setupCommand,
    benchCommand,
    clusterCommand,
    nodeCommand,
    systemCommand,
    storageCommand,
    taskCommand,
    objectCommand,
    monitorCommand,
    alarmCommand,
    keyCommand,
    healthCommand,
    simCommand,
    modelCommand,
    vortexCommand,
  ]),
)

// A sweep worker thread loads this same file (the bundle is one file) and must not start the CLI.
if (isMainThread) {
  acp.pipe(
    Command.run({ version: packageJson.version }),
    // An operator error is one line on stderr and exit code 1, never a stack trace.
    Effect.catchTag("CliError", (error) =>
      Effect.sync(() => {
        process.stderr.write(`acp: ${error.message}
`)
        process.exitCode = 1
      }),
    ),
    Effect.provide(NodeServices.layer),
    NodeRuntime.runMain,
  )
}
