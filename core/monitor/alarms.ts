/**
 * Alarm rules, evaluated by the primary monitor only. A rule looks at a condition per subject
 * and raises an alarm once the condition has held for `raiseAfterMs`, and clears it once the
 * condition has been gone for `clearAfterMs` (hysteresis, so a flapping link does not page
 * anybody). Alarms are CDB objects, one per (rule, subject): raising an alarm that is already
 * raised does nothing (deduplication), and raising a cleared one raises it again and counts the
 * occurrence. The evaluation is a pure function of the conditions and the alarms in the CDB, so
 * a new primary carries on from whatever its predecessor left.
 */
import { Result } from "effect"
import { type IllegalTransition, transition } from "../lifecycle/machine.ts"
import { type AlarmState, alarmLifecycle } from "../lifecycle/tables.ts"

export type Severity = "info" | "warning" | "major" | "critical"

export interface AlarmRule {
  readonly name: string
  readonly severity: Severity
  readonly raiseAfterMs: number
  readonly clearAfterMs: number
}

export const nodeUnreachableRule: AlarmRule = {
  name: "node-unreachable",
  severity: "major",
  raiseAfterMs: 3_000,
  clearAfterMs: 2_000,
}

/** A condition as the primary sees it: whether it holds, and since when it has held or not held. */
export interface Condition {
  readonly subject: string
  readonly active: boolean
  readonly sinceMs: number
  readonly message: string
}

export interface AlarmRecord {
  readonly rule: string
  readonly severity: Severity
  readonly subject: { readonly kind: string; readonly id: string }
  readonly message: string
  readonly state: AlarmState
  readonly raisedMs: number
  readonly term: number
  readonly raisedBy: string
  readonly occurrences: number
  /** Who acknowledged it, once someone has. */
  readonly acknowledgedBy?: string
}

/**
 * An operator acknowledges an alarm: a lifecycle transition (raised → acknowledged), so
 * acknowledging a cleared or already acknowledged alarm is a rejection naming its state.
 */
export const acknowledgeAlarm = (
  id: string,
  alarm: AlarmRecord,
  by: string,
): Result.Result<AlarmRecord, IllegalTransition> => {
  const moved = transition(alarmLifecycle, id, alarm.state, "acknowledge")
  return moved._tag === "Moved"
    ? Result.succeed({ ...alarm, state: moved.to, acknowledgedBy: by })
    : Result.fail(moved.rejection)
}

export interface AlarmChange {
  readonly id: string
  readonly record: AlarmRecord
}

export const alarmId = (rule: string, subject: string) => `${rule}.${subject}`

/**
 * What the primary should write: for each subject whose condition crossed its threshold, the
 * alarm raised or cleared. `existing` is the alarm as the CDB holds it now, if any.
 */
export const evaluateAlarms = (
  rule: AlarmRule,
  conditions: ReadonlyArray<Condition>,
  existing: (id: string) => AlarmRecord | undefined,
  context: {
    readonly nowMs: number
    readonly term: number
    readonly self: string
    readonly subjectKind: string
  },
): ReadonlyArray<AlarmChange> => {
  const changes: Array<AlarmChange> = []
  for (const condition of conditions) {
    const id = alarmId(rule.name, condition.subject)
    const alarm = existing(id)
    const open = alarm !== undefined && alarm.state !== "cleared"
    const heldMs = context.nowMs - condition.sinceMs
    if (condition.active && !open && heldMs >= rule.raiseAfterMs) {
      changes.push({
        id,
        record: {
          rule: rule.name,
          severity: rule.severity,
          subject: { kind: context.subjectKind, id: condition.subject },
          message: condition.message,
          state: "raised",
          raisedMs: context.nowMs,
          term: context.term,
          raisedBy: context.self,
          occurrences: (alarm?.occurrences ?? 0) + 1,
        },
      })
    } else if (!condition.active && open && heldMs >= rule.clearAfterMs) {
      changes.push({ id, record: { ...alarm, state: "cleared", term: context.term, raisedBy: context.self } })
    }
  }
  return changes
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export const encodeAlarm = (record: AlarmRecord): Uint8Array => encoder.encode(JSON.stringify(record))

/** The alarm stored in a CDB value, or undefined if the bytes are not an alarm this rule wrote. */
export const decodeAlarm = (bytes: Uint8Array): AlarmRecord | undefined => {
  try {
    const value = JSON.parse(decoder.decode(bytes)) as Partial<AlarmRecord>
    return typeof value.rule === "string" && typeof value.state === "string"
      ? (value as AlarmRecord)
      : undefined
  } catch {
    return undefined
  }
}

export interface MemberView {
  readonly state: "alive" | "suspect" | "dead"
  readonly sinceMs: number
}

/**
 * The node-unreachable conditions as the primary sees them: every member its CDB reports, and
 * itself too (alive since it started), so it clears an alarm a predecessor raised about it.
 */
export const nodeConditions = (
  self: string,
  startedMs: number,
  members: Iterable<readonly [string, MemberView]>,
): ReadonlyArray<Condition> => [
  { subject: self, active: false, sinceMs: startedMs, message: `node ${self} is alive` },
  ...[...members].map(([id, view]) => ({
    subject: id,
    active: view.state !== "alive",
    sinceMs: view.sinceMs,
    message: `node ${id} is ${view.state}`,
  })),
]

/** The alarm stored in a CDB entry's value, if it holds one. */
export const storedAlarm = (value: Uint8Array | null | undefined): AlarmRecord | undefined =>
  value === null || value === undefined ? undefined : decodeAlarm(value)

/** The alarms that are not cleared, among a store's entries. */
export const openAlarms = (
  entries: Iterable<{ readonly kind: string; readonly id: string; readonly value: Uint8Array | null }>,
): Array<AlarmRecord & { readonly id: string }> => {
  const open: Array<AlarmRecord & { readonly id: string }> = []
  for (const entry of entries) {
    if (entry.kind !== "alarm") continue
    const alarm = storedAlarm(entry.value)
    if (alarm !== undefined && alarm.state !== "cleared") open.push({ ...alarm, id: entry.id })
  }
  return open
}
