/**
 * Who may do what through the API, decided on the request as the router resolved it: the
 * endpoint it chose (group and name) and its decoded parameters — never on the raw URL, so no
 * other spelling of a path reaches a handler unchecked. Deny by default: an endpoint this table
 * does not name is refused for every role.
 *
 * Roles: `read-only` reads; `operator` also writes and operates; `admin` also manages API keys
 * (writing them, and reading their hashes).
 */

export type Role = "admin" | "operator" | "read-only"
export type Permission = "read" | "write" | "admin"

export interface ResolvedRoute {
  readonly group: string
  readonly endpoint: string
  /** The route's parameters, decoded by the router (e.g. `kind` of /v1/objects/{kind}/{id}). */
  readonly params: Readonly<Record<string, string | undefined>>
}

/** What each endpoint needs; `undefined` for an endpoint nobody may use. */
const endpointPermissions: Readonly<Record<string, Permission>> = {
  "objects.list": "read",
  "objects.get": "read",
  "objects.put": "write",
  "objects.remove": "write",
  "alarms.acknowledge": "write",
  "systems.create": "write",
  "systems.operate": "write",
  "systems.console": "read",
  "storage.revert": "write",
  "node.status": "read",
  "node.metrics": "read",
  "node.domains": "read",
  "node.decisions": "read",
  "node.decide": "write",
  "node.members": "admin",
}

/** Kinds whose objects only an admin may touch at all. */
const adminKinds: ReadonlySet<string> = new Set(["api-key"])

const granted: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  "read-only": new Set(["read"]),
  operator: new Set(["read", "write"]),
  admin: new Set(["read", "write", "admin"]),
}

export const permissionFor = (route: ResolvedRoute): Permission | undefined => {
  const permission = endpointPermissions[`${route.group}.${route.endpoint}`]
  if (permission === undefined) return undefined
  const kind = route.params.kind
  return kind !== undefined && adminKinds.has(kind) ? "admin" : permission
}

export type Decision =
  | { readonly _tag: "Allowed" }
  | { readonly _tag: "Denied"; readonly permission: Permission | undefined; readonly message: string }

export const authorize = (role: Role, route: ResolvedRoute): Decision => {
  const permission = permissionFor(route)
  if (permission === undefined)
    return {
      _tag: "Denied",
      permission,
      message: `${route.group}.${route.endpoint} is not open to any role`,
    }
  if (granted[role].has(permission)) return { _tag: "Allowed" }
  const kind = route.params.kind
  return {
    _tag: "Denied",
    permission,
    message: `${role === "operator" || role === "admin" ? "an" : "a"} ${role} key may not ${route.group}.${route.endpoint}${kind === undefined ? "" : ` ${kind}`}: it needs ${permission}`,
  }
}
