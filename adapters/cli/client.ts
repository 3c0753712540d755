/**
 * How the CLI finds and calls a node: the local cluster's state file (written by `acp cluster
 * up`) names each node's API port; `--node` picks one. Every failure is a `CliError` that says
 * what went wrong in words an operator can act on.
 */
import { existsSync, readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Schema } from "effect"
import { HttpClient, HttpClientError, HttpClientRequest } from "effect/http"
import { HttpApiClient } from "effect/http-api"
import { unknownNodeMessage } from "../../core/model/validate.ts"
import { AcpApi } from "../api/definition.ts"

export class CliError extends Schema.TaggedError<CliError>()("CliError", { message: Schema.String }) {}

export interface ClusterNode {
  readonly id: string
  /** Set when the node is reached through its agent rather than on this machine. */
  readonly remote?: Remote
  readonly pid: number
  readonly apiPort: number
  readonly configPath: string
  readonly logPath: string
  /** The API key the CLI presents to this node's local API (the cluster directory's admin key). */
  readonly apiKey?: string | undefined
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
    const state = yield* Effect.try({
      try: () => JSON.parse(readFileSync(path, "utf8")) as ClusterState,
      catch: (error) => new CliError({ message: `${path} is unreadable: ${String(error)}` }),
    })
    // The key is not in cluster.json (which is not 0600): each node gets it from admin.key here.
    const apiKey = localApiKey(dir)
    return { ...state, nodes: state.nodes.map((node) => ({ ...node, apiKey })) }
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

/** A node's API as a typed client, generated from the API's definition (`HttpApiClient`). */
export type AcpClient = HttpApiClient.ForApi<typeof AcpApi>

/** The API's own message for a refusal; for a transport failure, what an operator can act on. */
const describeFailure = (node: { readonly id: string; readonly apiPort: number }, error: unknown): string => {
  if (error instanceof HttpClientError.HttpClientError) {
    const cause = (error.reason as { cause?: { code?: string } }).cause?.code
    if (cause === "ECONNREFUSED")
      return `node ${node.id} (127.0.0.1:${node.apiPort}) refused the connection: the node is down`
    return `node ${node.id}: ${error.message}`
  }
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string")
    return error.message
  return String(error)
}

/**
 * Runs `use` with a typed client for `node`: its local API on 127.0.0.1, or through its agent
 * (TLS 1.3 with the admin client certificate, and the API key) when it is remote. Every failure,
 * the API's typed refusals included, becomes one `CliError` with the API's own message.
 */
export const withClient = <A, E>(
  node: {
    readonly id: string
    readonly apiPort: number
    readonly remote?: Remote | undefined
    readonly apiKey?: string | undefined
    /** Another node to reach through this one (its `/v1/nodes/{node}/…` route), as the same caller. */
    readonly via?: string | undefined
  },
  use: (client: AcpClient) => Effect.Effect<A, E>,
): Effect.Effect<A, CliError> => {
  const remote = node.remote
  const bearer = remote?.apiKey ?? node.apiKey
  const transport =
    remote === undefined
      ? NodeHttpClient.layerNodeHttp
      : NodeHttpClient.layerNodeHttpOptions({
          cert: remote.cert,
          key: remote.key,
          ca: remote.ca,
          minVersion: "TLSv1.3",
        })
  return HttpApiClient.make(AcpApi, {
    baseUrl: `${remote === undefined ? `http://127.0.0.1:${node.apiPort}` : remote.url.origin}${node.via === undefined ? "" : `/v1/nodes/${encodeURIComponent(node.via)}`}`,
    transformClient: (client) =>
      bearer === undefined ? client : HttpClient.mapRequest(client, HttpClientRequest.bearerToken(bearer)),
  }).pipe(
    Effect.flatMap(use),
    Effect.timeoutOrElse({
      duration: "10 seconds",
      orElse: () => Effect.fail(`node ${node.id} did not answer within 10 s`),
    }),
    Effect.mapError((error) => new CliError({ message: describeFailure(node, error) })),
    Effect.provide(transport),
  ) as Effect.Effect<A, CliError>
}

/**
 * The API key for a local cluster's nodes: `$ACP_KEY`, else the admin key `acp cluster up` (or
 * `init`) wrote beside the cluster's CA (mode 0600, readable by its owner only).
 */
export const localApiKey = (dir: string): string | undefined => {
  const fromEnvironment = process.env.ACP_KEY
  if (fromEnvironment !== undefined && fromEnvironment !== "") return fromEnvironment
  const path = join(dir, "admin.key")
  return existsSync(path) ? readFileSync(path, "utf8").trim() : undefined
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
