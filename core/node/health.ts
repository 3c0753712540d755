/**
 * What a node knows of its cluster's health beyond the election: its members' services and
 * stores as their nodes report them (service meta, store statistics), the rules the primary
 * alarms them by, and the nodes' capacities as the scheduler sees them. Pure functions of the
 * CDB's contents; `NodeCore` (node.ts) calls them.
 */
import type { CdbNode, MemberState } from "../cdb/node.ts"
import type { NodeCapacity } from "../hypervisor/scheduler.ts"
import { decodeValue } from "../hypervisor/values.ts"
import type { AlarmRule, Condition } from "../monitor/alarms.ts"
import { type Corrupted, corruptedOutcome } from "../monitor/health.ts"
import type { StoreFailure } from "./steps.ts"

/** A service that is failing or backing off, alarmed by the primary once it has been for this long. */
export const serviceFailingRule: AlarmRule = {
  name: "service-failing",
  severity: "major",
  raiseAfterMs: 5_000,
  clearAfterMs: 2_000,
}

/** A node whose store has refused commits (a full disk, an I/O error) for this long is alarmed by the primary. */
export const storeFailingRule: AlarmRule = {
  name: "store-failing",
  severity: "critical",
  raiseAfterMs: 5_000,
  clearAfterMs: 2_000,
}

/**
 * A node whose store held values with a wrong checksum at its start (never served; asked of
 * peers again, restored from its own log, or lost) is alarmed by the primary at once, until the
 * node starts again with a clean store (or an operator acknowledges it).
 */
export const storeCorruptedRule: AlarmRule = {
  name: "store-corrupted",
  severity: "major",
  raiseAfterMs: 0,
  clearAfterMs: 0,
}

/**
 * How often a node publishes its store's state in its statistics (ephemeral, never repaired, so
 * sent again: a node whose store refuses commits can write nothing to the CDB, but it can say so).
 */
export const storeStatsEveryMs = 2_000

/** Points a failing service takes off the cluster's health and its node's. */
export const serviceFailingPoints = 15

const failingStates: ReadonlySet<string> = new Set(["failed", "backing-off"])

/**
 * Whether a service is failing: failed or backing off, or starting again after a failure (it has
 * not run since), so a service that keeps failing counts as failing throughout, not only between tries.
 */
export const serviceFailing = (service: { readonly state: string; readonly lastError?: string }): boolean =>
  failingStates.has(service.state) || (service.state === "starting" && service.lastError !== undefined)

export const describeStoreError = (error: StoreFailure): string =>
  `${error.reason === "disk-full" ? "disk full" : error.reason === "io-error" ? "I/O error" : "store write failed"}: ${error.detail}`

export interface ServiceReport {
  readonly node: string
  readonly name: string
  readonly state: string
  readonly restarts: number
  readonly lastError?: string
}

/** Every member's services as their nodes report them in the CDB (and this node's own), by node and name. */
export const servicesIn = (
  cdb: CdbNode,
  memberIds: ReadonlySet<string>,
  self: string,
  ownNames: Iterable<string>,
): ReadonlyArray<ServiceReport> => {
  // One pass over the ids with service meta (a workload may hold thousands), no copy.
  const ids = new Set<string>()
  for (const id of cdb.metaIdsOf("service")) {
    const dot = id.indexOf(".")
    if (dot > 0 && memberIds.has(id.slice(0, dot))) ids.add(id)
  }
  for (const name of ownNames) ids.add(`${self}.${name}`)
  const services: Array<ServiceReport> = []
  for (const id of [...ids].sort()) {
    const node = id.slice(0, id.indexOf("."))
    const meta = decodeValue<{ state: string; restarts?: number; reason?: string }>(
      cdb.metaOf("service", id).find((slot) => slot.node === node)?.value,
    )
    if (meta === undefined) continue
    services.push({
      node,
      name: id.slice(node.length + 1),
      state: meta.state,
      restarts: meta.restarts ?? 0,
      ...(meta.reason === undefined ? {} : { lastError: meta.reason }),
    })
  }
  return services
}

/**
 * The primary's own observation of conditions, by subject: since when each has held (or not), on
 * its own clock, as the alarm rules need it.
 */
export class ConditionBook {
  private readonly seen = new Map<string, { active: boolean; sinceMs: number }>()

  /** `rule` keeps apart the conditions of two rules about one subject. */
  observe(subject: string, active: boolean, message: string, nowMs: number, rule = ""): Condition {
    const key = `${rule}\u0000${subject}`
    const seen = this.seen.get(key)
    if (seen === undefined || seen.active !== active) this.seen.set(key, { active, sinceMs: nowMs })
    return { subject, active, sinceMs: this.seen.get(key)!.sinceMs, message }
  }
}

/** The service-failing conditions: every member's service, failing while its node is alive. */
export const serviceConditions = (
  services: ReadonlyArray<ServiceReport>,
  memberState: (node: string) => MemberState,
  book: ConditionBook,
  nowMs: number,
): ReadonlyArray<Condition> =>
  services.map((status) =>
    book.observe(
      `${status.node}.${status.name}`,
      serviceFailing(status) && memberState(status.node) === "alive",
      `${status.name} on ${status.node} ${status.state}${status.lastError === undefined ? "" : `: ${status.lastError}`}`,
      nowMs,
    ),
  )

/** What a member says of its store in its statistics (published by `NodeCore`). */
const storeSaid = (cdb: CdbNode, member: string) =>
  decodeValue<{ failing?: string | null; corrupted?: Corrupted }>(
    cdb.statsOf("node", `${member}.store`, member),
  )

/** The store-failing conditions: every member's store as its statistics say (this node's as it knows it). */
export const storeConditions = (
  cdb: CdbNode,
  members: ReadonlyArray<string>,
  self: string,
  ownFailure: StoreFailure | undefined,
  memberState: (node: string) => MemberState,
  book: ConditionBook,
  nowMs: number,
): ReadonlyArray<Condition> =>
  members.map((member) => {
    const said = storeSaid(cdb, member)
    const failing =
      member === self ? (ownFailure === undefined ? null : describeStoreError(ownFailure)) : said?.failing
    const active = typeof failing === "string" && memberState(member) === "alive"
    const message = active
      ? `the store of ${member} refuses writes (${failing})`
      : `the store of ${member} takes writes`
    return book.observe(`${member}.store`, active, message, nowMs)
  })

/** The store-corrupted conditions: every member whose store held corrupted values at its start. */
export const corruptionConditions = (
  cdb: CdbNode,
  members: ReadonlyArray<string>,
  self: string,
  own: Corrupted | undefined,
  memberState: (node: string) => MemberState,
  book: ConditionBook,
  nowMs: number,
): ReadonlyArray<Condition> =>
  members.map((member) => {
    const said = member === self ? own : storeSaid(cdb, member)?.corrupted
    const active = said !== undefined && said.count > 0 && memberState(member) === "alive"
    const message = active
      ? `the store of ${member} held ${said.count} corrupted value(s) at its start, not served: ${corruptedOutcome(said)}`
      : `the store of ${member} held no corrupted value at its start`
    return book.observe(`${member}.store`, active, message, nowMs, "corrupted")
  })

/** The nodes as the scheduler sees them: membership from the monitor, capacity from each node's stats. */
export const capacitiesIn = (
  cdb: CdbNode,
  members: ReadonlyArray<{ readonly id: string; readonly state: MemberState }>,
  self: string,
  fenced: boolean,
): ReadonlyArray<NodeCapacity> =>
  members.map((member) => {
    const stats = decodeValue<{ cpuCount: number; memoryTotalBytes: number; cpuUsage: number }>(
      cdb.statsOf("node", member.id, member.id),
    )
    const service = decodeValue<{ state: string; reason?: string }>(
      cdb.metaOf("service", `${member.id}.hypervisor`).find((slot) => slot.node === member.id)?.value,
    )
    const unavailable =
      service === undefined
        ? "hypervisor service not started"
        : service.state === "running"
          ? undefined
          : `hypervisor ${service.state}${service.reason === undefined ? "" : `: ${service.reason}`}`
    return {
      ...(unavailable === undefined ? {} : { unavailable }),
      id: member.id,
      alive: member.state === "alive",
      fenced: member.id === self && fenced,
      roles: [],
      cpuCount: stats?.cpuCount ?? 0,
      memoryMiB: Math.floor((stats?.memoryTotalBytes ?? 0) / 1024 / 1024),
      cpuUsageHundredths: stats?.cpuUsage ?? 0,
    }
  })
