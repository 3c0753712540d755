/**
 * The agent: the node's TLS entrypoint (seed 000). TLS 1.3 only; the client must present a
 * certificate signed by the cluster CA (a client without one, or with another CA's, fails the
 * handshake); the request then goes to the node's local API with the caller's API key, where it
 * is authenticated and authorised on the route the API resolves (adapters/api/authorization.ts).
 */
import { readFileSync } from "node:fs"
import { request } from "node:http"
import { createServer, type Server } from "node:https"
import type { Socket } from "node:net"
import { Effect, Schema } from "effect"

export class AgentError extends Schema.TaggedError<AgentError>()("AgentError", { message: Schema.String }) {}

export interface AgentOptions {
  readonly address: string
  readonly port: number
  readonly apiPort: number
  readonly certFile: string
  readonly keyFile: string
  readonly caFile: string
}

const refuse = (
  response: import("node:http").ServerResponse,
  status: number,
  tag: string,
  message: string,
) => {
  response.writeHead(status, { "content-type": "application/json" })
  response.end(JSON.stringify({ _tag: tag, message }))
}

/** What one agent holds open at most; past a bound a connection is closed at once. */
export const agentBounds = {
  /** A client that has not finished its TLS handshake by then is dropped. */
  handshakeTimeoutMs: 5_000,
  /** A connection with no request in flight for this long is closed. */
  idleTimeoutMs: 30_000,
  /** A request's headers must arrive within this, the whole request within `requestTimeoutMs`. */
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  connectionsMax: 512,
  /** Per source address: resources only, decided before any identity is known. */
  connectionsPerSourceMax: 32,
} as const

/** Counts connections per source address and closes those over the cap (before TLS). */
const capPerSource = (server: Server, max: number) => {
  const open = new Map<string, number>()
  server.on("connection", (socket: Socket) => {
    const source = socket.remoteAddress ?? "?"
    const count = (open.get(source) ?? 0) + 1
    if (count > max) {
      socket.destroy()
      return
    }
    open.set(source, count)
    socket.once("close", () => {
      const left = (open.get(source) ?? 1) - 1
      if (left === 0) open.delete(source)
      else open.set(source, left)
    })
  })
}

export const startAgent = (options: AgentOptions) =>
  Effect.acquireRelease(
    Effect.callback<Server, AgentError>((resume) => {
      let tls: { cert: Buffer; key: Buffer; ca: Buffer }
      try {
        tls = {
          cert: readFileSync(options.certFile),
          key: readFileSync(options.keyFile),
          ca: readFileSync(options.caFile),
        }
      } catch (error) {
        resume(
          Effect.fail(new AgentError({ message: `agent certificate files: ${(error as Error).message}` })),
        )
        return
      }
      const server = createServer(
        {
          ...tls,
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: "TLSv1.3",
          handshakeTimeout: agentBounds.handshakeTimeoutMs,
        },
        (incoming, response) => {
          // The caller's API key goes on with the request: the API authenticates it and
          // authorises the route it resolves, in one place for every way in.
          const method = incoming.method ?? "GET"
          const path = incoming.url ?? "/"
          const upstream = request(
            {
              host: "127.0.0.1",
              port: options.apiPort,
              method,
              path,
              headers: incoming.headers,
            },
            (answer) => {
              response.writeHead(answer.statusCode ?? 502, answer.headers)
              answer.pipe(response)
            },
          )
          upstream.on("error", (error) =>
            refuse(response, 502, "BadGateway", `the node's API did not answer: ${error.message}`),
          )
          incoming.pipe(upstream)
        },
      )
      server.maxConnections = agentBounds.connectionsMax
      server.headersTimeout = agentBounds.headersTimeoutMs
      server.requestTimeout = agentBounds.requestTimeoutMs
      server.keepAliveTimeout = agentBounds.idleTimeoutMs
      server.setTimeout(agentBounds.idleTimeoutMs, (socket) => socket.destroy())
      capPerSource(server, agentBounds.connectionsPerSourceMax)
      server.once("error", (error) =>
        resume(
          Effect.fail(
            new AgentError({ message: `agent on ${options.address}:${options.port}: ${error.message}` }),
          ),
        ),
      )
      server.listen(options.port, options.address, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
      }),
  )
