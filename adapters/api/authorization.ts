/**
 * Who is calling, and whether they may: the two implementations of the API's `Authorization`
 * middleware. On TCP the caller is the API key it presents, checked against the stored records;
 * on the node's Unix socket (mode 0600) the caller is the node's owner, an admin. Either way the
 * decision is the one policy (core/access/policy.ts) applied to the route the router resolved.
 */
import { Effect, Layer, Option, Redacted, Schema } from "effect"
import { HttpRouter } from "effect/http"
import { authorize, type Role } from "../../core/access/policy.ts"
import { ApiKeySpec } from "../../core/model/access.ts"
import { type ApiKeyRecord, checkApiKey, type KeyCheck } from "../agent/keys.ts"
import type { RunningNode } from "../node/node.ts"
import { Authorization, Forbidden, Unauthorized } from "./definition.ts"
import { Node } from "./node.ts"

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

const refusal: Readonly<Record<Exclude<KeyCheck, { ok: true }>["reason"], string>> = {
  missing: "no API key: send `Authorization: Bearer <key>`",
  malformed: "the API key is malformed",
  unknown: "unknown API key",
  wrong: "wrong API key",
  revoked: "the API key has been revoked",
  expired: "the API key has expired",
}

/** The caller behind a bearer credential, or why there is none. */
export const authenticate = (
  node: RunningNode,
  bearer: string,
  nowMs: number,
): Effect.Effect<{ readonly name: string; readonly role: Role }, Unauthorized> => {
  const check = checkApiKey(bearer === "" ? undefined : bearer, lookupKey(node), nowMs)
  return check.ok
    ? Effect.succeed({ name: check.name, role: check.role })
    : Effect.fail(new Unauthorized({ reason: check.reason, message: refusal[check.reason] }))
}

const decide = (role: Role, group: string, endpoint: string) =>
  Effect.flatMap(HttpRouter.params, (params) => {
    const decision = authorize(role, { group, endpoint, params })
    return decision._tag === "Allowed"
      ? Effect.void
      : Effect.fail(new Forbidden({ message: decision.message }))
  })

/** TCP: the caller's API key, then the policy. */
export const layerKeyAuthorization = Layer.effect(
  Authorization,
  Effect.map(Node, (node) => ({
    bearer: (handler, { credential, endpoint, group }) =>
      authenticate(node, Redacted.value(credential), Date.now()).pipe(
        Effect.flatMap((caller) => decide(caller.role, group.identifier, endpoint.identifier)),
        Effect.andThen(handler),
      ),
  })),
)

/** The Unix socket: its file permissions proved the caller is the node's owner, an admin. */
export const layerSocketAuthorization = Layer.succeed(Authorization, {
  bearer: (handler, { endpoint, group }) =>
    decide("admin", group.identifier, endpoint.identifier).pipe(Effect.andThen(handler)),
})
