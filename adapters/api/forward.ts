/**
 * The API's route to other nodes: `/v1/nodes/{node}/<path>` on any node's local API is the same
 * request on that node's API, carried through its agent (TLS with this node's certificate, and
 * the cluster-internal key); `{node}` may be this node itself. So a service or an operator on one
 * node reaches every node without certificates of its own.
 */
import { request as httpRequest } from "node:http"
import { request as httpsRequest } from "node:https"
import { Effect } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { authenticate } from "./authorization.ts"
import { Node } from "./node.ts"

export interface Forwarding {
  readonly self: string
  readonly apiPort: number
  readonly peers: ReadonlyMap<string, { readonly address: string; readonly agentPort: number | undefined }>
  readonly tls: { readonly cert: Buffer; readonly key: Buffer; readonly ca: Buffer } | undefined
  readonly apiKey: string | undefined
}

interface Answer {
  readonly status: number
  readonly body: string
  readonly contentType: string
}

const json = (status: number, tag: string, message: string) =>
  HttpServerResponse.text(JSON.stringify({ _tag: tag, message }), { status, contentType: "application/json" })

const send = (
  forwarding: Forwarding,
  node: string,
  method: string,
  path: string,
  body: string,
  credential: string | undefined,
) =>
  Effect.callback<Answer, string>((resume) => {
    const collect = (response: import("node:http").IncomingMessage) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        text += chunk
      })
      response.on("end", () =>
        resume(
          Effect.succeed({
            status: response.statusCode ?? 502,
            body: text,
            contentType: response.headers["content-type"] ?? "application/json",
          }),
        ),
      )
    }
    const headers = {
      ...(body === "" ? {} : { "content-type": "application/json" }),
      ...(credential === undefined ? {} : { authorization: `Bearer ${credential}` }),
    }
    if (node === forwarding.self) {
      const outgoing = httpRequest(
        { host: "127.0.0.1", port: forwarding.apiPort, method, path, headers },
        collect,
      )
      outgoing.on("error", (error) => resume(Effect.fail(`this node's API: ${error.message}`)))
      outgoing.end(body === "" ? undefined : body)
      return
    }
    const peer = forwarding.peers.get(node)
    if (peer?.agentPort === undefined || forwarding.tls === undefined) {
      resume(
        Effect.fail(
          `no route to ${node}: it is not a member with an agent, or this node has no agent credentials`,
        ),
      )
      return
    }
    const outgoing = httpsRequest(
      {
        host: peer.address,
        port: peer.agentPort,
        method,
        path,
        ...forwarding.tls,
        minVersion: "TLSv1.3",
        timeout: 5_000,
        headers,
      },
      collect,
    )
    outgoing.on("timeout", () => outgoing.destroy(new Error("timed out after 5 s")))
    outgoing.on("error", (error) =>
      resume(Effect.fail(`${node}'s agent at ${peer.address}:${peer.agentPort}: ${error.message}`)),
    )
    outgoing.end(body === "" ? undefined : body)
  })

const decoded = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}

/**
 * The route to other nodes. The request goes on as its caller's: a TCP caller's own API key
 * (checked here first, so only an authenticated caller is forwarded; the target node authorises
 * the resolved route itself), or, from the Unix socket, the node owner's, as the internal key.
 */
export const layerForward = (forwarding: Forwarding, callers: "key" | "socket") =>
  HttpRouter.add("*", "/v1/nodes/*", (request) =>
    Effect.gen(function* () {
      const bearer = (request.headers.authorization ?? "").replace(/^Bearer\s+/i, "").trim()
      if (callers === "key") {
        const node = yield* Node
        const caller = yield* Effect.result(authenticate(node, bearer, Date.now()))
        if (caller._tag === "Failure") return json(401, "Unauthorized", caller.failure.message)
      }
      const credential = callers === "key" ? bearer : forwarding.apiKey
      const match = /^\/v1\/nodes\/([^/]+)(\/.*)$/.exec(request.url)
      if (match === null) return json(400, "InvalidRequest", "expected /v1/nodes/{node}/{path}")
      const [, node, path] = match as unknown as [string, string, string]
      if (path.startsWith("/v1/nodes/"))
        return json(400, "InvalidRequest", "a forwarded request may not be forwarded again")
      const target = decoded(node)
      if (target === undefined)
        return json(400, "InvalidRequest", `the node in the path is not valid percent-encoding: ${node}`)
      // A name that is no member is nowhere to go (404); 502 is for a member that does not answer.
      if (target !== forwarding.self && !forwarding.peers.has(target))
        return json(
          404,
          "UnknownNode",
          `no member ${target}; members: ${[...new Set([forwarding.self, ...forwarding.peers.keys()])].sort().join(", ")}`,
        )
      const body = yield* Effect.orElseSucceed(request.text, () => "")
      const answer = yield* Effect.result(send(forwarding, target, request.method, path, body, credential))
      if (answer._tag === "Failure") return json(502, "NodeUnreachable", answer.failure)
      return HttpServerResponse.text(answer.success.body, {
        status: answer.success.status,
        contentType: answer.success.contentType,
      })
    }),
  )
