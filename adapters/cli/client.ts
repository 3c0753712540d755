/**
 * How the CLI finds and calls a node: the local cluster's state file (written by `acp cluster
 * up`) names each node's API port; `--node` picks one. Every failure is a `CliError` that says
 * what went wrong in words an operator can act on.
 */
import { existsSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Effect, Schema } from "effect"

export class CliError extends Schema.TaggedError<CliError>()("CliError", { message: Schema.String }) {}

export interface ClusterNode {
  readonly id: string
  readonly pid: number
  readonly apiPort: number
  readonly configPath: string
  readonly logPath: string
}

export interface ClusterState {
  readonly dir: string
  readonly cluster: number
  readonly nodes: ReadonlyArray<ClusterNode>
}

export const defaultClusterDir = () => resolve(process.env.ACP_HOME ?? ".acp")
export const statePath = (dir: string) => join(dir, "cluster.json")

export const readState = (dir: string) =>
  Effect.gen(function* () {
    const path = statePath(dir)
    if (!existsSync(path))
      return yield* new CliError({ message: `no local cluster in ${dir}: start one with \`acp cluster up\`` })
    return yield* Effect.try({
      try: () => JSON.parse(readFileSync(path, "utf8")) as ClusterState,
      catch: (error) => new CliError({ message: `${path} is unreadable: ${String(error)}` }),
    })
  })

export const pickNode = (state: ClusterState, id: string | undefined) => {
  const node = id === undefined ? state.nodes[0] : state.nodes.find((candidate) => candidate.id === id)
  return node === undefined
    ? Effect.fail(
        new CliError({
          message: `no node "${id}" in this cluster; nodes: ${state.nodes.map((n) => n.id).join(", ")}`,
        }),
      )
    : Effect.succeed(node)
}

export interface ApiResponse {
  readonly status: number
  readonly body: unknown
}

/** One request to a node's local API; a refused connection is "the node is down", not a stack trace. */
export const call = (
  node: { readonly id: string; readonly apiPort: number },
  method: string,
  path: string,
  body?: unknown,
) =>
  Effect.tryPromise({
    try: async (): Promise<ApiResponse> => {
      const response = await fetch(`http://127.0.0.1:${node.apiPort}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(5_000),
      })
      const text = await response.text()
      let parsed: unknown = text
      try {
        parsed = text === "" ? null : JSON.parse(text)
      } catch {
        // Plain text (metrics) stays text.
      }
      return { status: response.status, body: parsed }
    },
    catch: (error) => {
      const cause = (error as { cause?: { code?: string } }).cause?.code
      const why = cause === "ECONNREFUSED" ? "refused the connection: the node is down" : String(error)
      return new CliError({ message: `node ${node.id} (127.0.0.1:${node.apiPort}) ${why}` })
    },
  })

/** The API's error body, as one line. */
export const describeError = (response: ApiResponse): string => {
  const body = response.body as {
    message?: string
    _tag?: string
    issues?: ReadonlyArray<{ path: string; message: string }>
  } | null
  if (body !== null && typeof body === "object" && typeof body.message === "string") return body.message
  return `HTTP ${response.status}: ${JSON.stringify(response.body)}`
}
