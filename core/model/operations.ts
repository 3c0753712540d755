/** Endpoint pools (seed 001), tasks (seed 003's message queue) and alarms (seed 000's Monitor). */
import { Schema } from "effect"
import { alarmLifecycle, taskLifecycle } from "../lifecycle/tables.ts"
import { NodeId } from "./ids.ts"
import { Count, IpAddress, Millis, Name, PercentHundredths, Port } from "./quantities.ts"

/** What an object reference points at: its kind and id, as plain strings on the wire. */
export const ObjectRef = Schema.Struct({ kind: Schema.String, id: Schema.String })

export const Endpoint = Schema.Struct({
  address: IpAddress,
  port: Port,
  weight: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 })),
})
export const HealthCheck = Schema.Struct({
  plugin: Schema.Literals(["tcp", "http", "icmp"]),
  path: Schema.optionalKey(Schema.String),
  intervalMs: Millis.check(Schema.isGreaterThanOrEqualTo(100)),
  timeoutMs: Millis.check(Schema.isGreaterThanOrEqualTo(10)),
  /** Consecutive passes before a failed endpoint is added back, and failures before a healthy one is removed. */
  rise: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 100 })),
  fall: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 100 })),
})
export const EndpointPoolSpec = Schema.Struct({
  name: Name,
  /** The DNS name the appliance answers for. */
  fqdn: Schema.String.check(
    Schema.isPattern(/^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}[a-z]{2,63}$/, {
      message: "Expected a DNS name",
    }),
  ),
  endpoints: Schema.Array(Endpoint),
  check: HealthCheck,
  ttlS: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 86_400 })),
})
export const EndpointPoolMeta = Schema.Struct({
  /** The endpoints this node's checker currently finds healthy. */
  healthy: Schema.Array(IpAddress),
  lastChangeMs: Millis,
})
export const EndpointPoolStats = Schema.Struct({ checksRun: Count, checksFailed: Count })

export const TaskLogLine = Schema.Struct({ atMs: Millis, line: Schema.String })
export const TaskSpec = Schema.Struct({
  operation: Schema.String.check(
    Schema.isPattern(/^[a-z][a-z-]*\.[a-z][a-z-]*$/, { message: "Expected service.operation" }),
  ),
  target: ObjectRef,
  /** The node whose service works the task off. */
  owner: NodeId,
  parameters: Schema.Record(Schema.String, Schema.String),
  state: Schema.Literals(taskLifecycle.states),
  log: Schema.Array(TaskLogLine),
  error: Schema.optionalKey(Schema.String),
  createdMs: Millis,
})
export const TaskMeta = Schema.Struct({ progress: PercentHundredths })
export const TaskStats = Schema.Struct({ durationMs: Millis })

export const Severity = Schema.Literals(["info", "warning", "major", "critical"])
export const AlarmSpec = Schema.Struct({
  rule: Schema.String,
  severity: Severity,
  subject: ObjectRef,
  message: Schema.String,
  state: Schema.Literals(alarmLifecycle.states),
  raisedMs: Millis,
  /** The monitor term in which it was last raised or cleared, so a stale primary's word loses. */
  term: Count,
  raisedBy: NodeId,
  acknowledgedBy: Schema.optionalKey(Schema.String),
  /** How many times the same condition was raised again while this alarm was open or after it cleared. */
  occurrences: Count,
})
export const AlarmMeta = Schema.Struct({ lastEvaluatedMs: Millis })
export const AlarmStats = Schema.Struct({ occurrences: Count })
