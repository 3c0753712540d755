/**
 * How the CLI finds and calls a node: the local cluster's state file (written by `acp cluster
 * up`) names each node's API port; `--node` picks one. Every failure is a `CliError` that says
 * what went wrong in words an operator can act on.
 */
import { existsSync, readFileSync } from "node:fs"
import { request as httpsRequest } from "node:https"
import { dirname, join, resolve } from "node:path"
import { Effect, Schema } from "effect"
import { unknownNodeMessage } from "../../core/model/validate.ts"

export class CliError extends Schema.TaggedError<CliError>()("CliError", { message: Schema.String }) {}

export interface ClusterNode {
  readonly id: string
  /** Set when the node is reached through its agent rather than on this machine. */
  readonly remote?: Remote
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

/**
 * The local cluster the CLI talks to: `$ACP_HOME`, else the nearest `.acp` in this directory or
 * one above it (as git finds `.git`), else `./.acp` (where `acp cluster up` makes one).
 */
export const defaultClusterDir = () => nearestClusterDir() ?? resolve(".acp")

export const nearestClusterDir = (): string | undefined => {
  const home = process.env.ACP_HOME
  if (home !== undefined && home !== "") return resolve(home)
  for (let dir = resolve("."); ; dir = dirname(dir)) {
    if (existsSync(join(dir, ".acp"))) return join(dir, ".acp")
    if (dirname(dir) === dir) return undefined
  }
}
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
          message: unknownNodeMessage(
            id ?? "",
            state.nodes.map((n) => n.id),
          ),
        }),
      )
    : Effect.succeed(node)
}

export interface ApiResponse {
  readonly status: number
  readonly body: unknown
}

/** One request to a node's local API; a refused connection is "the node is down", not a stack trace. */
const callLocal = (
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

/** A remote node reached through its agent: TLS with a client certificate, and an API key. */
export interface Remote {
  readonly url: URL
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer
  readonly apiKey: string
}

/**
 * The remote named by `ACP_REMOTE` (https://host:port of a node's agent), with the certificate,
 * its key, the CA and the API key from `ACP_CERT`, `ACP_CERT_KEY`, `ACP_CA`, `ACP_KEY`, or by
 * default those `acp cluster up` wrote in the cluster directory.
 */
export const remoteFromEnvironment = (dir: string) =>
  Effect.gen(function* () {
    const target = process.env.ACP_REMOTE
    if (target === undefined || target === "") return undefined
    const url = yield* Effect.try({
      try: () => new URL(target),
      catch: () =>
        new CliError({ message: `ACP_REMOTE=${target} is not a URL such as https://198.18.0.11:7601` }),
    })
    const read = (variable: string, fallback: string) =>
      Effect.try({
        try: () => readFileSync(process.env[variable] ?? fallback),
        catch: (error) => new CliError({ message: `${variable}: ${(error as Error).message}` }),
      })
    const cert = yield* read("ACP_CERT", join(dir, "pki", "admin.crt"))
    const key = yield* read("ACP_CERT_KEY", join(dir, "pki", "admin.key"))
    const ca = yield* read("ACP_CA", join(dir, "pki", "ca.crt"))
    const apiKey =
      process.env.ACP_KEY ?? (yield* read("ACP_KEY_FILE", join(dir, "admin.key"))).toString("utf8").trim()
    return { url, cert, key, ca, apiKey } satisfies Remote
  })

/** One request through a remote node's agent. */
const callRemote = (remote: Remote, method: string, path: string, body?: unknown) =>
  Effect.callback<ApiResponse, CliError>((resume) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const outgoing = httpsRequest(
      {
        host: remote.url.hostname,
        port: remote.url.port,
        method,
        path,
        cert: remote.cert,
        key: remote.key,
        ca: remote.ca,
        minVersion: "TLSv1.3",
        timeout: 5_000,
        headers: {
          authorization: `Bearer ${remote.apiKey}`,
          ...(payload === undefined ? {} : { "content-type": "application/json" }),
        },
      },
      (response) => {
        let text = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          text += chunk
        })
        response.on("end", () => {
          let parsed: unknown = text
          try {
            parsed = text === "" ? null : JSON.parse(text)
          } catch {}
          resume(Effect.succeed({ status: response.statusCode ?? 0, body: parsed }))
        })
      },
    )
    outgoing.on("error", (error) =>
      resume(Effect.fail(new CliError({ message: `agent ${remote.url.host}: ${error.message}` }))),
    )
    outgoing.end(payload)
  })

/** One request to a node: through its agent if it is remote, else to its local API. */
export const call = (
  node: { readonly id: string; readonly apiPort: number; readonly remote?: Remote | undefined },
  method: string,
  path: string,
  body?: unknown,
) =>
  node.remote !== undefined
    ? callRemote(node.remote, method, path, body)
    : callLocal(node, method, path, body)
