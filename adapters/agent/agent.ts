/**
 * The agent: the node's TLS entrypoint (seed 000). TLS 1.3 only; the client must present a
 * certificate signed by the cluster CA (a client without one, or with another CA's, fails the
 * handshake); then an API key authorises the request, by role, and the agent proxies it to the
 * node's local API. Every refusal says why, as JSON, and nothing is forwarded.
 */
import { readFileSync } from "node:fs"
import { request } from "node:http"
import { createServer, type Server } from "node:https"
import { Effect, Option, Schema } from "effect"
import { ApiKeySpec } from "../../core/model/access.ts"
import type { RunningNode } from "../node/node.ts"
import { type ApiKeyRecord, allows, checkApiKey } from "./keys.ts"

export class AgentError extends Schema.TaggedError<AgentError>()("AgentError", { message: Schema.String }) {}

export interface AgentOptions {
  readonly address: string
  readonly port: number
  readonly apiPort: number
  readonly certFile: string
  readonly keyFile: string
  readonly caFile: string
}

const decoder = new TextDecoder()
const decodeRecord = Schema.decodeUnknownOption(Schema.fromJsonString(ApiKeySpec))

/** The stored record of a key, decoded with its schema: a record that does not decode is no key. */
const lookupKey =
  (node: RunningNode) =>
  (id: string): ApiKeyRecord | undefined => {
    const entry = node.get("api-key", id)
    if (entry?.value == null) return undefined
    return Option.getOrUndefined(decodeRecord(decoder.decode(entry.value)))
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

export const startAgent = (node: RunningNode, options: AgentOptions) =>
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
      const lookup = lookupKey(node)
      const server = createServer(
        { ...tls, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" },
        (incoming, response) => {
          const header = incoming.headers.authorization
          const presented = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined
          const check = checkApiKey(presented, lookup, Date.now())
          if (!check.ok) {
            const why = {
              missing: "no API key: send `Authorization: Bearer <key>`",
              malformed: "the API key is malformed",
              unknown: "unknown API key",
              wrong: "wrong API key",
              revoked: "the API key has been revoked",
              expired: "the API key has expired",
            }[check.reason]
            return refuse(response, 401, "Unauthorized", why)
          }
          const method = incoming.method ?? "GET"
          const path = incoming.url ?? "/"
          if (!allows(check.role, method, path)) {
            return refuse(
              response,
              403,
              "Forbidden",
              `the ${check.role} key "${check.name}" may not ${method} ${path}`,
            )
          }
          const upstream = request(
            {
              host: "127.0.0.1",
              port: options.apiPort,
              method,
              path,
              headers: { ...incoming.headers, authorization: "" },
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
