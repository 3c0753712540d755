/**
 * Which node a command talks to, and how: the flags every command shares (`--dir`, `--node`,
 * `--json`), the node they pick (the local cluster's, or the remote agent named by
 * `ACP_REMOTE`), and the typed API client for it.
 */
import { Effect, Option } from "effect"
import { Flag } from "effect/cli"
import {
  type AcpClient,
  type CliError,
  type ClusterNode,
  defaultClusterDir,
  pickNode,
  readState,
  remoteFromEnvironment,
  withClient,
} from "./client.ts"

export const dirFlag = Flag.String("dir").pipe(
  Flag.withDescription(
    "Where the local cluster keeps its state (default: $ACP_HOME, or the nearest .acp upwards)",
  ),
  Flag.optional,
)
export const nodeFlag = Flag.String("node").pipe(
  Flag.withDescription("Which node to ask (default: the first)"),
  Flag.optional,
)
export const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDescription("Print JSON instead of a table"),
  Flag.withDefault(false),
)

export const dirOf = (dir: Option.Option<string>) => Option.getOrElse(dir, defaultClusterDir)

/** Runs `body` against the node a command names: the remote agent, or one of the local cluster's. */
export const withNode = <A>(
  dir: Option.Option<string>,
  id: Option.Option<string>,
  body: (node: ClusterNode) => Effect.Effect<A, CliError>,
) =>
  Effect.gen(function* () {
    const remote = yield* remoteFromEnvironment(dirOf(dir))
    if (remote !== undefined)
      return yield* body({ id: remote.url.host, pid: 0, apiPort: 0, configPath: "", logPath: "", remote })
    const state = yield* readState(dirOf(dir))
    return yield* body(yield* pickNode(state, Option.getOrUndefined(id)))
  })

/** Runs `use` with the typed client of the node a command names (see `withNode`). */
export const withApi = <A, E>(
  dir: Option.Option<string>,
  id: Option.Option<string>,
  use: (client: AcpClient, node: ClusterNode) => Effect.Effect<A, E>,
) => withNode(dir, id, (node) => withClient(node, (client) => use(client, node)))
