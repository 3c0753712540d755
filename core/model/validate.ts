/**
 * Validation at the edge of the core: untrusted input (an API body, a datagram's payload, a
 * config file) is decoded against the kind's schema. A failure is returned as data that names
 * every offending field by its path, never thrown.
 */
import { Result, Schema, SchemaIssue } from "effect"
import { isObjectKind, kinds, type ObjectKind } from "./kinds.ts"

export interface FieldIssue {
  /** The path to the field, e.g. `nics.0.mac`; empty for the whole value. */
  readonly path: string
  readonly message: string
}

export interface InvalidObject {
  readonly _tag: "InvalidObject"
  readonly kind: string
  readonly part: ObjectPart | "kind" | "id"
  readonly issues: ReadonlyArray<FieldIssue>
  readonly message: string
}

export type ObjectPart = "spec" | "meta" | "stats"

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const invalid = (
  kind: string,
  part: InvalidObject["part"],
  issues: ReadonlyArray<FieldIssue>,
): InvalidObject => ({
  _tag: "InvalidObject",
  kind,
  part,
  issues,
  message: `invalid ${kind} ${part}: ${issues.map((issue) => (issue.path === "" ? issue.message : `${issue.path}: ${issue.message}`)).join("; ")}`,
})

const decodeWith = <A>(
  schema: Schema.Codec<A, unknown, never, never>,
  kind: string,
  part: InvalidObject["part"],
  input: unknown,
): Result.Result<A, InvalidObject> => {
  const result = Schema.decodeUnknownResult(schema)(input, { errors: "all", onExcessProperty: "error" })
  if (Result.isSuccess(result)) return Result.succeed(result.success)
  const issues = formatter(result.failure.issue).issues.map((issue) => ({
    path: (issue.path ?? [])
      .map((segment) => String(typeof segment === "object" ? segment.key : segment))
      .join("."),
    message: issue.message,
  }))
  return Result.fail(invalid(kind, part, issues))
}

/** Decodes one part of an object of a named kind; an unknown kind is itself an `InvalidObject`. */
export const decodeObjectPart = (
  kind: string,
  part: ObjectPart,
  input: unknown,
): Result.Result<unknown, InvalidObject> => {
  if (!isObjectKind(kind)) {
    return Result.fail(
      invalid(kind, "kind", [
        { path: "", message: `unknown kind; known kinds: ${Object.keys(kinds).join(", ")}` },
      ]),
    )
  }
  return decodeWith(kinds[kind][part], kind, part, input)
}

export const decodeObjectId = (kind: ObjectKind, input: unknown): Result.Result<string, InvalidObject> =>
  decodeWith(kinds[kind].id, kind, "id", input)

/** The one message for an object that is not there, wherever it is looked up. */
export const notFoundMessage = (kind: string, id: string) => `no ${kind} "${id}"`

/** The one message for a node that is not a member, naming those that are. */
export const unknownNodeMessage = (id: string, nodes: ReadonlyArray<string>) =>
  `no node "${id}" in this cluster; nodes: ${nodes.join(", ")}`
