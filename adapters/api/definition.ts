/**
 * The node's local API, schema first: HTTP/JSON on 127.0.0.1 only, with its OpenAPI document
 * at /openapi.json. The CLI talks to it; remote callers reach it through the agent (not yet).
 */
import { Schema } from "effect"
import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi,
} from "effect/http-api"
import {
  DecidedStateSchema,
  DecisionCommand,
  DecisionEntry,
  MembershipChange,
  MembershipSchema,
} from "../../core/decision/state.ts"
import { kinds, objectKinds } from "../../core/model/kinds.ts"
import { SystemDiskRequest } from "../../core/model/storage.ts"

export const Version = Schema.Struct({ ms: Schema.Int, counter: Schema.Int, origin: Schema.String })

export const ObjectView = Schema.Struct({
  kind: Schema.String,
  id: Schema.String,
  spec: Schema.Unknown,
  version: Version,
  meta: Schema.Array(Schema.Struct({ node: Schema.String, value: Schema.Unknown })),
  stats: Schema.Array(Schema.Struct({ node: Schema.String, value: Schema.Unknown })),
})
export type ObjectView = typeof ObjectView.Type

export class ObjectNotFound extends Schema.TaggedError<ObjectNotFound>()(
  "ObjectNotFound",
  { kind: Schema.String, id: Schema.String, message: Schema.String },
  { httpApiStatus: 404 },
) {}

export class InvalidObject extends Schema.TaggedError<InvalidObject>()(
  "InvalidObject",
  {
    message: Schema.String,
    issues: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })),
  },
  { httpApiStatus: 400 },
) {}

export class WriteFailed extends Schema.TaggedError<WriteFailed>()(
  "WriteFailed",
  { reason: Schema.String, message: Schema.String },
  { httpApiStatus: 422 },
) {}

/** The node's store refused the commit (a full disk, an I/O error): nothing was written or sent. */
export class StorageRefused extends Schema.TaggedError<StorageRefused>()(
  "StorageRefused",
  { reason: Schema.Literals(["disk-full", "io-error", "write-failed"]), message: Schema.String },
  { httpApiStatus: 507 },
) {}

/** The request is well formed but cannot be done now (a pool that holds volumes, a pool that is full). */
export class OperationRefused extends Schema.TaggedError<OperationRefused>()(
  "OperationRefused",
  { reason: Schema.String, message: Schema.String },
  { httpApiStatus: 409 },
) {}

const objectPath = { kind: Schema.String, id: Schema.String }

export class ObjectsApi extends HttpApiGroup.make("objects")
  .annotate(OpenApi.Description, "The CDB's objects, of every kind")
  .add(
    HttpApiEndpoint.get("list", "/v1/objects/:kind", {
      params: { kind: Schema.String },
      success: Schema.Array(ObjectView),
      error: InvalidObject,
    }).annotate(OpenApi.Summary, "List the objects of a kind"),
    HttpApiEndpoint.get("get", "/v1/objects/:kind/:id", {
      params: objectPath,
      success: ObjectView,
      error: [ObjectNotFound, InvalidObject],
    }).annotate(OpenApi.Summary, "Read one object: spec, version, and every node’s meta and statistics"),
    HttpApiEndpoint.put("put", "/v1/objects/:kind/:id", {
      params: objectPath,
      payload: Schema.Unknown,
      success: ObjectView,
      error: [InvalidObject, OperationRefused, WriteFailed, StorageRefused],
    }).annotate(OpenApi.Summary, "Write an object’s spec, validated against its kind’s schema"),
    HttpApiEndpoint.delete("remove", "/v1/objects/:kind/:id", {
      params: objectPath,
      success: HttpApiSchema.NoContent,
      error: [ObjectNotFound, InvalidObject, OperationRefused, WriteFailed, StorageRefused],
    }).annotate(OpenApi.Summary, "Delete an object (a tombstone every node applies)"),
  ) {}

export class IllegalTransitionError extends Schema.TaggedError<IllegalTransitionError>()(
  "IllegalTransition",
  { message: Schema.String, state: Schema.String, event: Schema.String },
  { httpApiStatus: 409 },
) {}

export class AlarmsApi extends HttpApiGroup.make("alarms")
  .annotate(OpenApi.Description, "Alarms raised by the primary monitor")
  .add(
    HttpApiEndpoint.post("acknowledge", "/v1/alarms/:id/acknowledge", {
      params: { id: Schema.String },
      payload: Schema.Struct({ by: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(128)) }),
      success: ObjectView,
      error: [ObjectNotFound, IllegalTransitionError, WriteFailed, StorageRefused],
    }).annotate(OpenApi.Summary, "Acknowledge an open alarm"),
  ) {}

const Verdict = Schema.Struct({
  node: Schema.String,
  eligible: Schema.Boolean,
  reason: Schema.String,
  freeMemoryMiBAfter: Schema.Number,
})

/** The scheduler's decision (core/hypervisor/scheduler.ts) with every node's verdict. */
export const Decision = Schema.Union([
  Schema.TaggedStruct("Placed", { node: Schema.String, verdicts: Schema.Array(Verdict) }),
  Schema.TaggedStruct("Unplaceable", { reason: Schema.String, verdicts: Schema.Array(Verdict) }),
])

export class Unplaceable extends Schema.TaggedError<Unplaceable>()(
  "Unplaceable",
  { message: Schema.String, decision: Decision },
  { httpApiStatus: 409 },
) {}

export class ConsoleUnavailable extends Schema.TaggedError<ConsoleUnavailable>()(
  "ConsoleUnavailable",
  { message: Schema.String },
  { httpApiStatus: 501 },
) {}

/** The node's hypervisor service is not running (not started yet, or failed): its driver cannot be asked. */
export class HypervisorUnavailable extends Schema.TaggedError<HypervisorUnavailable>()(
  "HypervisorUnavailable",
  { message: Schema.String },
  { httpApiStatus: 503 },
) {}

export const SystemCreated = Schema.Struct({
  /** The scheduler's decision and every node's verdict. */
  decision: Decision,
  /** Absent on a dry run. */
  system: Schema.optionalKey(ObjectView),
  task: Schema.optionalKey(Schema.String),
})

export class SystemsApi extends HttpApiGroup.make("systems")
  .annotate(OpenApi.Description, "Virtual machines and the tasks that operate them")
  .add(
    HttpApiEndpoint.post("create", "/v1/systems/:id", {
      params: { id: Schema.String },
      payload: Schema.Struct({
        spec: Schema.Unknown,
        dryRun: Schema.optionalKey(Schema.Boolean),
        /** Disks to make with it: new volumes, clones, existing volumes (`--disk`). */
        disks: Schema.optionalKey(Schema.Array(SystemDiskRequest)),
      }),
      success: SystemCreated,
      error: [InvalidObject, Unplaceable, OperationRefused, WriteFailed, StorageRefused],
    }).annotate(
      OpenApi.Summary,
      "Create a system with its disks (new volumes made with it): placed by the scheduler (or on spec.node), defined and started once its volumes are available; or only the decision, on a dry run",
    ),
    HttpApiEndpoint.post("operate", "/v1/systems/:id/:operation", {
      params: { id: Schema.String, operation: Schema.String },
      payload: Schema.Record(Schema.String, Schema.String),
      success: Schema.Struct({ task: Schema.String }),
      error: [ObjectNotFound, OperationRefused, WriteFailed, StorageRefused],
    }).annotate(
      OpenApi.Summary,
      "Operate on a system (start, stop, reboot, suspend, resume, destroy, attach, detach, migrate): a task on its node",
    ),
    HttpApiEndpoint.get("console", "/v1/systems/:id/console", {
      params: { id: Schema.String },
      success: Schema.String.pipe(HttpApiSchema.asText()),
      error: [ObjectNotFound, ConsoleUnavailable],
    }).annotate(OpenApi.Summary, "Read a system’s serial console, on the node that runs it"),
  ) {}

export class StorageApi extends HttpApiGroup.make("storage")
  .annotate(OpenApi.Description, "Storage operations beyond writing objects")
  .add(
    HttpApiEndpoint.post("revert", "/v1/storage-snapshots/:id/revert", {
      params: { id: Schema.String },
      success: Schema.Struct({ task: Schema.String }),
      error: [OperationRefused, WriteFailed, StorageRefused],
    }).annotate(
      OpenApi.Summary,
      "Revert a snapshot's volume to it: a task for the node of the volume's pool (refused while a system that has the volume runs)",
    ),
  ) {}

const HealthScore = Schema.Struct({
  score: Schema.Int,
  reasons: Schema.Array(Schema.Struct({ points: Schema.Int, reason: Schema.String })),
})

export const AlarmView = Schema.Struct({
  id: Schema.String,
  rule: Schema.String,
  severity: Schema.Literals(["info", "warning", "major", "critical"]),
  subject: Schema.Struct({ kind: Schema.String, id: Schema.String }),
  message: Schema.String,
  state: Schema.String,
  raisedMs: Schema.Number,
  term: Schema.Int,
  raisedBy: Schema.String,
  occurrences: Schema.Int,
  acknowledgedBy: Schema.optionalKey(Schema.String),
})

/** One node's account of the cluster: members as it sees them, the monitor, alarms, health. */
export const NodeStatusView = Schema.Struct({
  node: Schema.String,
  incarnation: Schema.Int,
  members: Schema.Array(Schema.Struct({ id: Schema.String, state: Schema.String })),
  primary: Schema.NullOr(Schema.String),
  isPrimary: Schema.Boolean,
  term: Schema.Int,
  fenced: Schema.Boolean,
  entries: Schema.Int,
  health: Schema.Struct({ cluster: HealthScore, nodes: Schema.Record(Schema.String, HealthScore) }),
  alarms: Schema.Array(AlarmView),
  /** This node's services, as its supervisor reports them. */
  services: Schema.Array(
    Schema.Struct({
      name: Schema.String,
      state: Schema.String,
      restarts: Schema.Int,
      lastError: Schema.optionalKey(Schema.String),
      forMs: Schema.Number,
    }),
  ),
})
export type NodeStatusView = typeof NodeStatusView.Type

export const DecisionLogView = Schema.Struct({
  term: Schema.Int,
  leader: Schema.NullOr(Schema.String),
  /** Whether this node is the primary and everything before its term is committed. */
  ready: Schema.Boolean,
  commit: Schema.Int,
  applied: Schema.Int,
  last: Schema.Int,
  snapshot: Schema.Int,
  voters: Schema.Array(Schema.String),
  learners: Schema.Array(Schema.String),
  decided: DecidedStateSchema,
  recent: Schema.Array(DecisionEntry),
})

/** A decision not taken: this node is not the primary that decides (it names the one it knows), or it did not commit in time. */
export class NotDecided extends Schema.TaggedError<NotDecided>()(
  "NotDecided",
  {
    reason: Schema.Literals(["not-primary", "change-in-progress", "not-committed-in-time", "invalid"]),
    primary: Schema.NullOr(Schema.String),
    message: Schema.String,
  },
  { httpApiStatus: 409 },
) {}

export const DecisionAnswerView = Schema.Union([
  Schema.TaggedStruct("Placed", { system: Schema.String, node: Schema.String, epoch: Schema.Int }),
  Schema.TaggedStruct("Unplaced", { system: Schema.String }),
  Schema.TaggedStruct("Granted", { pool: Schema.String, value: Schema.Int, epoch: Schema.Int }),
  Schema.TaggedStruct("Released", { pool: Schema.String, value: Schema.Int }),
  Schema.TaggedStruct("Refused", { reason: Schema.String }),
])

export class NodeApi extends HttpApiGroup.make("node", { topLevel: true })
  .annotate(OpenApi.Description, "The node itself: status and metrics")
  .add(
    HttpApiEndpoint.get("status", "/v1/status", { success: NodeStatusView }).annotate(
      OpenApi.Summary,
      "This node’s account of the cluster: members, primary and term, fencing, open alarms, health",
    ),
    HttpApiEndpoint.get("decisions", "/v1/decisions", { success: DecisionLogView }).annotate(
      OpenApi.Summary,
      "The decision log as this node holds it: term, commit index, voters and learners, the last entries, what is decided",
    ),
    HttpApiEndpoint.post("decide", "/v1/decisions", {
      payload: DecisionCommand,
      success: DecisionAnswerView,
      error: NotDecided,
    }).annotate(
      OpenApi.Summary,
      "Propose a decision to the log, on the primary: answered once a majority of the voters holds it and it is applied",
    ),
    HttpApiEndpoint.post("members", "/v1/members", {
      payload: MembershipChange,
      success: MembershipSchema,
      error: NotDecided,
    }).annotate(
      OpenApi.Summary,
      "Change who is a member, one at a time, through the log on the primary: add a learner (it follows, votes in nothing), promote a learner to voter, remove a member; answered once committed",
    ),
    HttpApiEndpoint.get("domains", "/v1/host/domains", {
      success: Schema.Array(Schema.Struct({ name: Schema.String, state: Schema.String })),
      error: HypervisorUnavailable,
    }).annotate(
      OpenApi.Summary,
      "The domains this node's hypervisor driver holds and their states, as the driver reports them (virsh list --all)",
    ),
    HttpApiEndpoint.get("metrics", "/metrics", {
      success: Schema.String.pipe(HttpApiSchema.asText({ contentType: "text/plain; version=0.0.4" })),
    }).annotate(OpenApi.Summary, "Prometheus metrics"),
  ) {}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  {
    reason: Schema.Literals(["missing", "malformed", "unknown", "revoked", "expired", "wrong"]),
    message: Schema.String,
  },
  { httpApiStatus: 401 },
) {}

export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  { httpApiStatus: 403 },
) {}

/**
 * Every endpoint is authorised here, on the route the router resolved (core/access/policy.ts):
 * on TCP by the caller's API key (`Authorization: Bearer acp_…`); on the node's Unix socket by
 * file permissions (its owner is the node's admin).
 */
export class Authorization extends HttpApiMiddleware.Service<Authorization>()("acp/api/Authorization", {
  error: [Unauthorized, Forbidden],
  security: { bearer: HttpApiSecurity.bearer },
}) {}

export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  { part: Schema.String, message: Schema.String },
  { httpApiStatus: 400 },
) {}

export class InternalError extends Schema.TaggedError<InternalError>()(
  "InternalError",
  { message: Schema.String },
  { httpApiStatus: 500 },
) {}

/** A request that does not decode (bad JSON, a wrong shape) is a 400 saying which part and why. */
export class RequestErrors extends HttpApiMiddleware.Service<RequestErrors>()("acp/api/RequestErrors", {
  error: [BadRequest, InternalError],
}) {}

/**
 * What the generated document cannot say by itself: the spec a PUT takes for each kind (the
 * handler validates against the kind named in the path), and the forwarding route.
 */
interface JsonContent {
  content?: { "application/json"?: { schema?: object } }
}
interface DocumentedOperation {
  requestBody?: JsonContent & { required?: boolean; description?: string }
  parameters?: Array<{ readonly name: string; schema?: unknown }>
  responses?: Record<string, JsonContent>
}
type DocumentedPaths = Record<string, Record<string, DocumentedOperation | object>>

/** `storage-pool` → `StoragePool`: the name of its schemas in the document's components. */
const componentName = (kind: string): string =>
  kind.replace(/(^|-)([a-z])/g, (_, _dash: string, letter: string) => letter.toUpperCase())
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` })
const jsonSchema = (schema: Schema.Codec<unknown, unknown>) =>
  Schema.toJsonSchemaDocument(schema).schema as object

/**
 * Each kind's spec and the object as it is served (spec, meta and stats of that kind), as
 * components: `SystemSpec`, `SystemObject`, …; an object of any kind is one of them, told apart by
 * its `kind`.
 */
const kindComponents = () => {
  const components: Record<string, object> = {}
  for (const kind of objectKinds) {
    const name = componentName(kind)
    const perNode = (schema: Schema.Codec<unknown, unknown>) => ({
      type: "array",
      items: {
        type: "object",
        properties: { node: { type: "string" }, value: jsonSchema(schema) },
        required: ["node", "value"],
      },
    })
    components[`${name}Spec`] = { title: `${kind} spec`, ...jsonSchema(kinds[kind].spec) }
    components[`${name}Object`] = {
      title: `${kind} object`,
      description: kinds[kind].description,
      type: "object",
      properties: {
        kind: { type: "string", const: kind },
        id: { type: "string" },
        spec: ref(`${name}Spec`),
        version: jsonSchema(Version),
        meta: { description: "Each node's state of it", ...perNode(kinds[kind].meta) },
        stats: { description: "Each node's figures for it", ...perNode(kinds[kind].stats) },
      },
      required: ["kind", "id", "spec", "version", "meta", "stats"],
    }
  }
  return components
}

const anyObject = {
  oneOf: objectKinds.map((kind) => ref(`${componentName(kind)}Object`)),
  discriminator: {
    propertyName: "kind",
    mapping: Object.fromEntries(
      objectKinds.map((kind) => [kind, `#/components/schemas/${componentName(kind)}Object`]),
    ),
  },
}

const documentSpecsAndForwarding = <Spec extends object>(document: Spec): Spec => {
  const spec = document as unknown as {
    paths: DocumentedPaths
    components: { schemas: Record<string, object> }
  }
  Object.assign(spec.components.schemas, kindComponents())
  const operation = (path: string, method: string) =>
    spec.paths[path]?.[method] as DocumentedOperation | undefined
  const success = (path: string, method: string) =>
    operation(path, method)?.responses?.["200"]?.content?.["application/json"]
  const put = operation("/v1/objects/{kind}/{id}", "put")
  if (put !== undefined) {
    put.requestBody = {
      required: true,
      description: "The object's spec: the schema of the kind named in the path",
      content: {
        "application/json": {
          schema: { oneOf: objectKinds.map((kind) => ref(`${componentName(kind)}Spec`)) },
        },
      },
    }
  }
  // What is served: an object of the kind named in the path (its spec, meta and stats).
  for (const method of ["get", "put"]) {
    const content = success("/v1/objects/{kind}/{id}", method)
    if (content !== undefined) content.schema = anyObject
  }
  const listed = success("/v1/objects/{kind}", "get")
  if (listed !== undefined) listed.schema = { type: "array", items: anyObject }
  const acknowledged = success("/v1/alarms/{id}/acknowledge", "post")
  if (acknowledged !== undefined) acknowledged.schema = ref("AlarmObject")
  const properties = (schema: object | undefined) =>
    (schema as { properties?: Record<string, unknown> } | undefined)?.properties
  const created = properties(success("/v1/systems/{id}", "post")?.schema)
  if (created !== undefined) created.system = ref("SystemObject")
  const creating = properties(
    operation("/v1/systems/{id}", "post")?.requestBody?.content?.["application/json"]?.schema,
  )
  if (creating !== undefined) creating.spec = ref("SystemSpec")
  for (const path of ["/v1/objects/{kind}", "/v1/objects/{kind}/{id}"])
    for (const operation of Object.values(spec.paths[path] ?? {}) as Array<DocumentedOperation>)
      for (const parameter of operation.parameters ?? [])
        if (parameter.name === "kind") parameter.schema = { type: "string", enum: [...objectKinds] }
  const forwarded = (method: string) => ({
    tags: ["node"],
    operationId: `forward.${method}`,
    summary: `${method.toUpperCase()} any route of this API on another node, through its agent, as the same caller`,
    parameters: [
      { name: "node", in: "path", required: true, schema: { type: "string" }, description: "The node's id" },
      {
        name: "route",
        in: "path",
        required: true,
        schema: { type: "string" },
        description: "The route on that node, e.g. v1/status (it may hold slashes)",
      },
    ],
    responses: {
      "200": { description: "That node's answer, as it gave it" },
      "400": {
        description: "The node's name is not valid percent-encoding, or the route is forwarded again",
      },
      "401": { description: "No valid API key" },
      "404": { description: "No member of that name" },
      "502": { description: "That node could not be reached" },
    },
  })
  spec.paths["/v1/nodes/{node}/{route}"] = {
    get: forwarded("get"),
    put: forwarded("put"),
    post: forwarded("post"),
    delete: forwarded("delete"),
  }
  return document
}

export class AcpApi extends HttpApi.make("acp")
  .add(ObjectsApi)
  .add(AlarmsApi)
  .add(SystemsApi)
  .add(StorageApi)
  .add(NodeApi)
  .middleware(RequestErrors)
  .middleware(Authorization)
  .annotateMerge(
    OpenApi.annotations({
      title: "ACP node API",
      description:
        "One node's local API, on 127.0.0.1 (an API key as `Authorization: Bearer acp_…`) and on its Unix socket (file permissions): the CDB's objects, systems, alarms, its status and metrics. Any route is also served for another node at /v1/nodes/{node}/<route>, through that node's agent, as the same caller.",
      license: { name: "MIT", url: "https://opensource.org/license/mit" },
      servers: [
        {
          url: "http://127.0.0.1:{port}",
          description: "a node's local API (acp cluster up: 17501 for n1, 17502 for n2, …)",
          variables: { port: { default: "17501" } },
        },
      ],
      transform: documentSpecsAndForwarding,
    }),
  ) {}
