/** Projects (ownership and quotas) and API keys (seed 000's Agent authorisation). */
import { Schema } from "effect"
import { Bytes, Count, Millis, Name } from "./quantities.ts"

export const ProjectSpec = Schema.Struct({
  name: Name,
  description: Schema.String,
  quota: Schema.Struct({ cpus: Count, memoryMiB: Count, storageBytes: Bytes }),
})
export const ProjectMeta = Schema.Struct({})
export const ProjectStats = Schema.Struct({ cpus: Count, memoryMiB: Count, storageBytes: Bytes })

const hex = (bytes: number) =>
  Schema.String.check(
    Schema.isPattern(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), { message: `Expected ${bytes} bytes of hex` }),
  )

export const ApiKeyRole = Schema.Literals(["admin", "operator", "read-only"])
/** The key itself is never stored: only a salted hash, compared in constant time by the agent. */
export const ApiKeySpec = Schema.Struct({
  name: Name,
  role: ApiKeyRole,
  salt: hex(16),
  hash: hex(32),
  expiresMs: Schema.optionalKey(Millis),
  revoked: Schema.Boolean,
})
export const ApiKeyMeta = Schema.Struct({ lastUsedMs: Millis })
export const ApiKeyStats = Schema.Struct({ uses: Count, refusals: Count })
