/**
 * API keys: `acp_<id>_<secret>`, 256 random bits of secret. The CDB holds only a salted SHA-256
 * of the secret (an `api-key` object: name, role, salt, hash, revoked); the agent finds the key
 * by its id and compares hashes in constant time. A fast hash is enough for 256-bit secrets,
 * which cannot be guessed the way passwords can.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"

import type { Role } from "../../core/access/policy.ts"

export type { Role }

export interface ApiKeyRecord {
  readonly name: string
  readonly role: Role
  readonly salt: string
  readonly hash: string
  readonly revoked: boolean
  readonly expiresMs?: number
}

const hashSecret = (salt: string, secret: string) =>
  createHash("sha256").update(Buffer.from(salt, "hex")).update(secret).digest("hex")

/** The record for a key made elsewhere (the cluster-internal key in every node's config). */
export const recordFor = (
  key: string,
  salt: string,
  name: string,
  role: Role,
): { readonly id: string; readonly record: ApiKeyRecord } | undefined => {
  const match = /^acp_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$/.exec(key)
  if (match === null) return undefined
  return {
    id: `k-${match[1]}`,
    record: { name, role, salt, hash: hashSecret(salt, match[2]!), revoked: false },
  }
}

export const newApiKey = (
  name: string,
  role: Role,
): { readonly id: string; readonly key: string; readonly record: ApiKeyRecord } => {
  const id = randomBytes(4).toString("hex")
  const secret = randomBytes(32).toString("base64url")
  const salt = randomBytes(16).toString("hex")
  return {
    id: `k-${id}`,
    key: `acp_${id}_${secret}`,
    record: { name, role, salt, hash: hashSecret(salt, secret), revoked: false },
  }
}

export type KeyCheck =
  | { readonly ok: true; readonly id: string; readonly role: Role; readonly name: string }
  | {
      readonly ok: false
      readonly reason: "missing" | "malformed" | "unknown" | "revoked" | "expired" | "wrong"
    }

/** Checks a presented key against the records in the CDB. */
export const checkApiKey = (
  presented: string | undefined,
  lookup: (id: string) => ApiKeyRecord | undefined,
  nowMs: number,
): KeyCheck => {
  if (presented === undefined || presented === "") return { ok: false, reason: "missing" }
  const match = /^acp_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$/.exec(presented)
  if (match === null) return { ok: false, reason: "malformed" }
  const id = `k-${match[1]}`
  const record = lookup(id)
  if (record === undefined) return { ok: false, reason: "unknown" }
  const expected = Buffer.from(record.hash, "hex")
  const actual = Buffer.from(hashSecret(record.salt, match[2]!), "hex")
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual))
    return { ok: false, reason: "wrong" }
  if (record.revoked) return { ok: false, reason: "revoked" }
  if (record.expiresMs !== undefined && nowMs >= record.expiresMs) return { ok: false, reason: "expired" }
  return { ok: true, id, role: record.role, name: record.name }
}
