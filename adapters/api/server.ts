/**
 * The local API's handlers and its HTTP server on 127.0.0.1. A spec is validated against its
 * kind's schema before it reaches the CDB; a bad request is a 400 that names every bad field,
 * and nothing is written.
 */
import { chmodSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { ByteSize, Effect, Layer, Result, Schema } from "effect"
import {
  HttpIncomingMessage,
  HttpRouter,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
} from "effect/http"
import { HttpApiBuilder, HttpApiMiddleware } from "effect/http-api"
import type { SpecEntry } from "../../core/cdb/durable.ts"
import type { SystemSpecValue } from "../../core/hypervisor/hypervisor.ts"
import { isObjectKind, objectKinds } from "../../core/model/kinds.ts"
import { decodeObjectPart, notFoundMessage } from "../../core/model/validate.ts"
import { acknowledgeAlarm, decodeAlarm, encodeAlarm } from "../../core/monitor/alarms.ts"
import {
  admitDelete,
  admitPool,
  admitShare,
  admitSnapshot,
  admitVolume,
  type StorageReader,
} from "../../core/storage/admission.ts"
import { admitSystemDisks } from "../../core/storage/disks.ts"
import type { DecisionRefusedError, RunningNode } from "../node/node.ts"
import { layerKeyAuthorization, layerSocketAuthorization } from "./authorization.ts"
import {
  AcpApi,
  BadRequest,
  HypervisorUnavailable,
  IllegalTransitionError,
  InternalError,
  InvalidObject,
  NotDecided,
  ObjectNotFound,
  type ObjectView,
  OperationRefused,
  RequestErrors,
  StorageRefused,
  WriteFailed,
} from "./definition.ts"
import { type Forwarding, layerForward } from "./forward.ts"
import { metricsText } from "./metrics.ts"
import { Node } from "./node.ts"
import { StorageHandlers } from "./storage.ts"
import { SystemsHandlers } from "./systems.ts"

export { Node }

const decoder = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

/** CDB values written through the API are JSON; anything else is shown as base64. */
const jsonOrBase64 = (bytes: Uint8Array | null): unknown => {
  if (bytes === null) return null
  try {
    return JSON.parse(decoder.decode(bytes))
  } catch {
    return { base64: Buffer.from(bytes).toString("base64") }
  }
}

const storageReasons = new Set(["disk-full", "io-error", "write-failed"])

/** A refused write as the API reports it: the store's refusals as 507, the CDB's (busy, …) as 422. */
export const writeFailed = (error: { readonly reason: string; readonly message: string }) =>
  storageReasons.has(error.reason)
    ? new StorageRefused({
        reason: error.reason as StorageRefused["reason"],
        message: `${error.message}; nothing was written`,
      })
    : new WriteFailed({ reason: error.reason, message: error.message })

export const view = (node: RunningNode, entry: SpecEntry): ObjectView => ({
  kind: entry.kind,
  id: entry.id,
  spec: jsonOrBase64(entry.value),
  version: entry.version,
  meta: node
    .metaOf(entry.kind, entry.id)
    .map((slot) => ({ node: slot.node, value: jsonOrBase64(slot.value) })),
  stats: node
    .statsOf(entry.kind, entry.id)
    .map((slot) => ({ node: slot.node, value: jsonOrBase64(slot.value) })),
})

const requireKind = (kind: string) =>
  isObjectKind(kind)
    ? Effect.void
    : Effect.fail(
        new InvalidObject({
          message: `unknown kind "${kind}"; known kinds: ${objectKinds.join(", ")}`,
          issues: [{ path: "kind", message: "unknown kind" }],
        }),
      )

/** What the storage admission rules read of this node's store. */
export const storageReader = (node: RunningNode): StorageReader => {
  const spec = <A>(kind: string, id: string): A | undefined => {
    const value = node.get(kind, id)?.value
    return value == null ? undefined : (jsonOrBase64(value) as A)
  }
  const all = <A>(kind: string) =>
    node
      .list(kind)
      .flatMap((entry) =>
        entry.value === null ? [] : [{ id: entry.id, spec: jsonOrBase64(entry.value) as A }],
      )
  return {
    pool: (id) => spec("storage-pool", id),
    volume: (id) => spec("storage-volume", id),
    volumes: () => all("storage-volume"),
    systems: () => all("system"),
    snapshots: () => all("storage-snapshot"),
    shares: () => all("storage-share"),
    poolStats: (id) => {
      const slot = node.statsOf("storage-pool", id)[0]
      return slot === undefined
        ? undefined
        : (jsonOrBase64(slot.value) as ReturnType<StorageReader["poolStats"]>)
    },
  }
}

/** A storage rule's refusal of a valid spec (or of a delete), if one applies. */
const storageRefusal = (node: RunningNode, kind: string, id: string, spec: unknown | undefined) => {
  const store = storageReader(node)
  const refusal =
    spec === undefined
      ? admitDelete(store, kind, id)
      : kind === "storage-volume"
        ? admitVolume(store, id, spec as Parameters<typeof admitVolume>[2])
        : kind === "storage-pool"
          ? admitPool(store, id, spec as Parameters<typeof admitPool>[2])
          : kind === "system"
            ? admitSystemDisks(store, id, spec as SystemSpecValue)
            : kind === "storage-snapshot"
              ? admitSnapshot(store, id, spec as Parameters<typeof admitSnapshot>[2])
              : kind === "storage-share"
                ? admitShare(store, id, spec as Parameters<typeof admitShare>[2])
                : undefined
  return refusal === undefined
    ? Effect.void
    : Effect.fail(new OperationRefused({ reason: refusal.reason, message: refusal.message }))
}

const ObjectsHandlers = HttpApiBuilder.group(AcpApi, "objects", (handlers) =>
  Effect.gen(function* () {
    const node = yield* Node
    return handlers
      .handle("list", ({ params }) =>
        Effect.as(
          requireKind(params.kind),
          node.list(params.kind).map((entry) => view(node, entry)),
        ),
      )
      .handle("get", ({ params }) =>
        Effect.gen(function* () {
          yield* requireKind(params.kind)
          const entry = node.get(params.kind, params.id)
          if (entry === undefined) {
            return yield* new ObjectNotFound({
              kind: params.kind,
              id: params.id,
              message: notFoundMessage(params.kind, params.id),
            })
          }
          return view(node, entry)
        }),
      )
      .handle("put", ({ params, payload }) =>
        Effect.gen(function* () {
          yield* requireKind(params.kind)
          const id = decodeObjectPart(params.kind, "spec", payload)
          if (Result.isFailure(id)) {
            return yield* new InvalidObject({ message: id.failure.message, issues: id.failure.issues })
          }
          const idCheck = Schema.decodeUnknownResult(
            Schema.String.check(Schema.isPattern(/^[a-z0-9][a-z0-9._-]{0,62}$/)),
          )(params.id)
          if (Result.isFailure(idCheck)) {
            return yield* new InvalidObject({
              message: `invalid id "${params.id}"`,
              issues: [{ path: "id", message: "Expected 1-63 characters of a-z, 0-9, '.', '_' or '-'" }],
            })
          }
          yield* storageRefusal(node, params.kind, params.id, payload)
          yield* node
            .write([
              { op: "put", kind: params.kind, id: params.id, value: encoder.encode(JSON.stringify(payload)) },
            ])
            .pipe(Effect.mapError(writeFailed))
          return view(node, node.get(params.kind, params.id)!)
        }),
      )
      .handle("remove", ({ params }) =>
        Effect.gen(function* () {
          yield* requireKind(params.kind)
          if (node.get(params.kind, params.id) === undefined) {
            return yield* new ObjectNotFound({
              kind: params.kind,
              id: params.id,
              message: notFoundMessage(params.kind, params.id),
            })
          }
          yield* storageRefusal(node, params.kind, params.id, undefined)
          yield* node
            .write([{ op: "delete", kind: params.kind, id: params.id, value: null }])
            .pipe(Effect.mapError(writeFailed))
        }),
      )
  }),
)

const AlarmsHandlers = HttpApiBuilder.group(AcpApi, "alarms", (handlers) =>
  Effect.gen(function* () {
    const node = yield* Node
    return handlers.handle("acknowledge", ({ params, payload }) =>
      Effect.gen(function* () {
        const entry = node.get("alarm", params.id)
        const alarm = entry?.value == null ? undefined : decodeAlarm(entry.value)
        if (alarm === undefined)
          return yield* new ObjectNotFound({
            kind: "alarm",
            id: params.id,
            message: `no alarm "${params.id}"`,
          })
        const acknowledged = acknowledgeAlarm(params.id, alarm, payload.by)
        if (Result.isFailure(acknowledged)) {
          const rejection = acknowledged.failure
          return yield* new IllegalTransitionError({
            message: rejection.message,
            state: rejection.state,
            event: rejection.event,
          })
        }
        yield* node
          .write([{ op: "put", kind: "alarm", id: params.id, value: encodeAlarm(acknowledged.success) }])
          .pipe(Effect.mapError(writeFailed))
        return view(node, node.get("alarm", params.id)!)
      }),
    )
  }),
)

const notDecided = (refused: DecisionRefusedError) =>
  new NotDecided({
    reason:
      refused.reason === "change-in-progress" || refused.reason === "not-committed-in-time"
        ? refused.reason
        : refused.reason.startsWith("invalid: ")
          ? "invalid"
          : "not-primary",
    primary: refused.primary,
    message: refused.message,
  })

const NodeHandlers = HttpApiBuilder.group(AcpApi, "node", (handlers) =>
  Effect.gen(function* () {
    const node = yield* Node
    return handlers
      .handle("status", () => Effect.sync(() => node.status()))
      .handle("decisions", () => Effect.sync(() => node.decisions()))
      .handle("decide", ({ payload }) => node.decide(payload, 5_000).pipe(Effect.mapError(notDecided)))
      .handle("members", ({ payload }) =>
        node.changeMembership(payload, 10_000).pipe(Effect.mapError(notDecided)),
      )
      .handle("domains", () => {
        const list = node.domains
        return list === undefined
          ? Effect.fail(
              new HypervisorUnavailable({ message: "the hypervisor service is not running on this node" }),
            )
          : list.pipe(Effect.mapError((error) => new HypervisorUnavailable({ message: error.message })))
      })
      .handle("metrics", () => Effect.flatMap(node.dropped, (dropped) => metricsText(node, dropped)))
  }),
)

/** Request decoding failures as typed 400s; a response that cannot be encoded as a typed 500. */
const layerRequestErrors = HttpApiMiddleware.layerSchemaErrorTransform(RequestErrors, (error) => {
  const part = error.kind.toLowerCase()
  const detail = error.cause.message
  return error.kind === "Body" || error.kind === "ResponseHeaders"
    ? Effect.fail(new InternalError({ message: `the node could not encode its answer: ${detail}` }))
    : Effect.fail(new BadRequest({ part, message: `the request's ${part} is not valid: ${detail}` }))
})

/** The most a request body may hold: the largest object the CDB takes, with room for JSON. */
export const maxRequestBodyBytes = 1024 * 1024

/** How a server knows its callers: by API key (TCP), or by the socket's file permissions. */
type Callers = "key" | "socket"

const routes = (forwarding: Forwarding, callers: Callers) =>
  Layer.mergeAll(
    // Enforced while the body is read: a larger one is cut off, never held whole in memory.
    // A declared length over the limit is refused before anything is read, with a body saying so.
    HttpRouter.middleware(
      (handler) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          Number(request.headers["content-length"] ?? 0) > maxRequestBodyBytes
            ? Effect.succeed(
                HttpServerResponse.jsonUnsafe(
                  {
                    _tag: "PayloadTooLarge",
                    message: `a request body may hold at most ${maxRequestBodyBytes} bytes; this one declares ${request.headers["content-length"]}`,
                  },
                  { status: 413 },
                ),
              )
            : Effect.provideService(
                handler,
                HttpIncomingMessage.MaxBodySize,
                ByteSize.bytes(maxRequestBodyBytes),
              ).pipe(
                // A path the router cannot even match against (bad percent-encoding, a segment
                // over its length limit) fails before any route, the catch-all too: answered
                // with a body here (it was an empty 404; found by the agent's path fuzz).
                Effect.catch((error) =>
                  HttpServerError.isHttpServerError(error) && error.reason._tag === "RouteNotFound"
                    ? Effect.succeed(
                        HttpServerResponse.jsonUnsafe(
                          {
                            _tag: "RouteNotFound",
                            message: `no route ${request.method} ${request.url}${error.reason.description === undefined ? "" : ` (${error.reason.description})`}; see /openapi.json`,
                          },
                          { status: 404 },
                        ),
                      )
                    : Effect.fail(error),
                ),
              ),
        ),
      { global: true },
    ),
    HttpApiBuilder.layer(AcpApi, { openapiPath: "/openapi.json" }).pipe(
      Layer.provide([ObjectsHandlers, AlarmsHandlers, SystemsHandlers, StorageHandlers, NodeHandlers]),
      Layer.provide(callers === "key" ? layerKeyAuthorization : layerSocketAuthorization),
      Layer.provide(layerRequestErrors),
    ),
    layerForward(forwarding, callers),
    // Anything no route matched: a 404 that says so, never an empty body.
    HttpRouter.add("*", "*", (request) =>
      Effect.succeed(
        HttpServerResponse.jsonUnsafe(
          { _tag: "RouteNotFound", message: `no route ${request.method} ${request.url}; see /openapi.json` },
          { status: 404 },
        ),
      ),
    ),
  )

/** What one API server holds at most: connections, and how long a request may take to arrive. */
export const apiBounds = { connectionsMax: 256, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 } as const

/** A Node HTTP server with the API's bounds: past them a connection is refused or closed. */
const boundedServer = () => {
  const server = createServer()
  server.maxConnections = apiBounds.connectionsMax
  server.headersTimeout = apiBounds.headersTimeoutMs
  server.requestTimeout = apiBounds.requestTimeoutMs
  return server
}

/** The API on 127.0.0.1 only; every request needs an API key. */
export const layerApiServer = (port: number, forwarding: Forwarding) =>
  HttpRouter.serve(routes(forwarding, "key")).pipe(
    Layer.provide(NodeHttpServer.layer(boundedServer, { port, host: "127.0.0.1" })),
  )

/**
 * The same API on a Unix socket, readable and writable by the node's user only (0600): how
 * services on the node reach it, guarded by file permissions (seed 000). A socket left behind
 * by a killed node is removed first.
 */
export const layerApiSocket = (path: string, forwarding: Forwarding) =>
  Layer.unwrap(
    Effect.sync(() => {
      rmSync(path, { force: true })
      return HttpRouter.serve(routes(forwarding, "socket")).pipe(
        Layer.provide(NodeHttpServer.layer(boundedServer, { path })),
        Layer.tap(() => Effect.sync(() => chmodSync(path, 0o600))),
      )
    }),
  )
