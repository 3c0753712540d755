import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { authorize, permissionFor, type Role } from "../../../core/access/policy.ts"

const route = (group: string, endpoint: string, params: Record<string, string> = {}) => ({
  group,
  endpoint,
  params,
})

describe("authorize", () => {
  it("scopes roles: read-only reads; operators also write and operate, but not keys; admins do all", () => {
    const allowed = (role: Role, group: string, endpoint: string, params?: Record<string, string>) =>
      authorize(role, route(group, endpoint, params))._tag === "Allowed"
    expect(allowed("read-only", "objects", "list", { kind: "system" })).toBe(true)
    expect(allowed("read-only", "objects", "put", { kind: "system", id: "a" })).toBe(false)
    expect(allowed("read-only", "systems", "operate", { id: "a", operation: "stop" })).toBe(false)
    expect(allowed("operator", "objects", "put", { kind: "system", id: "a" })).toBe(true)
    expect(allowed("operator", "systems", "create", { id: "a" })).toBe(true)
    expect(allowed("operator", "objects", "put", { kind: "api-key", id: "k-1" })).toBe(false)
    expect(allowed("operator", "objects", "get", { kind: "api-key", id: "k-1" })).toBe(false)
    expect(allowed("read-only", "objects", "list", { kind: "api-key" })).toBe(false)
    expect(allowed("admin", "objects", "put", { kind: "api-key", id: "k-1" })).toBe(true)
  })

  it("denies by default: an endpoint the policy does not name is open to no role", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Role>("admin", "operator", "read-only"),
        fc.string(),
        fc.string(),
        (role, group, endpoint) => {
          fc.pre(permissionFor(route(group, endpoint)) === undefined)
          const decision = authorize(role, route(group, endpoint))
          expect(decision).toMatchObject({ _tag: "Denied", permission: undefined })
        },
      ),
    )
  })

  it("names the role, the route and what it lacks when it denies", () => {
    expect(authorize("operator", route("objects", "put", { kind: "api-key", id: "k-1" }))).toEqual({
      _tag: "Denied",
      permission: "admin",
      message: "an operator key may not objects.put api-key: it needs admin",
    })
  })
})
