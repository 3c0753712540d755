import { describe, expect, it } from "vitest"
import { type ApiKeyRecord, checkApiKey, newApiKey } from "../../adapters/agent/keys.ts"

describe("api keys", () => {
  const issued = newApiKey("ops", "operator")
  const lookup = (records: Record<string, ApiKeyRecord>) => (id: string) => records[id]

  it("accepts the key it issued, with its role, and stores no secret", () => {
    expect(checkApiKey(issued.key, lookup({ [issued.id]: issued.record }), 0)).toEqual({
      ok: true,
      id: issued.id,
      role: "operator",
      name: "ops",
    })
    // The secret is everything after `acp_<id>_` (base64url: it may hold "_" itself; split on the
    // first two only, or a short fragment of it could turn up in the salt or hash by chance).
    const secret = issued.key.slice(issued.key.indexOf("_", "acp_".length) + 1)
    expect(secret).toHaveLength(43)
    expect(JSON.stringify(issued.record)).not.toContain(secret)
  })

  it("says why a key is refused: missing, malformed, unknown, wrong, revoked, expired", () => {
    const records = { [issued.id]: issued.record }
    const reason = (key: string | undefined, table = records, nowMs = 0) => {
      const check = checkApiKey(key, lookup(table), nowMs)
      return check.ok ? "ok" : check.reason
    }
    expect(reason(undefined)).toBe("missing")
    expect(reason("hunter2")).toBe("malformed")
    expect(reason(newApiKey("x", "admin").key)).toBe("unknown")
    const [prefix, id] = issued.key.split("_")
    expect(reason(`${prefix}_${id}_${"A".repeat(43)}`)).toBe("wrong")
    expect(reason(issued.key, { [issued.id]: { ...issued.record, revoked: true } })).toBe("revoked")
    expect(reason(issued.key, { [issued.id]: { ...issued.record, expiresMs: 10 } }, 20)).toBe("expired")
  })
})
