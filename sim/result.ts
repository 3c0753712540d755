/**
 * What a simulation run reports: its figures, the violations its checkers found, and why it did
 * not converge when it did not. Which checkers guard safety (a violation is a bug that loses or
 * corrupts something) and which liveness.
 */
import type { Health } from "../core/monitor/health.ts"
import type { Percentiles } from "../core/percentile.ts"
import type { FaultEvent, Scenario } from "./scenario.ts"

export interface Violation {
  readonly checker: string
  readonly message: string
  readonly atMs: number
}

export interface TimelineSample {
  readonly atMs: number
  /** Per node: -1 while down, else how many changes it lags behind the most advanced node. */
  readonly lag: ReadonlyArray<number>
}

export interface SimResult {
  readonly seed: number
  readonly nodes: number
  readonly domains: number
  readonly virtualMs: number
  readonly events: number
  readonly datagramsDelivered: number
  readonly datagramsDropped: number
  readonly changesWritten: number
  readonly changesApplied: number
  readonly acknowledgedWrites: number
  /** Steps whose commit a node's store refused (fault "disk-full"), each undone. */
  readonly commitsRefused: number
  /** Crashes that came inside a step, after a part of its commit and outputs (fault "crash"). */
  readonly crashesInStep: number
  /** Fault "service-failure": windows the service-alarm checker checked (the others had a fault in the way). */
  readonly serviceAlarmChecks: number
  /** Fault "replay": datagrams the adversary played back, and those the receivers' windows dropped. */
  readonly replays: { readonly sent: number; readonly dropped: number }
  /** Acknowledged spec writes per node, in node order. */
  readonly acknowledgedByNode: ReadonlyArray<number>
  readonly snapshotsInstalled: number
  readonly nacksSent: number
  readonly traceHash: string
  readonly converged: boolean
  readonly convergenceMs: number | null
  readonly violations: ReadonlyArray<Violation>
  /** Why the cluster did not converge, when it did not. */
  readonly pending: ReadonlyArray<string>
  readonly replay: string
  readonly scenario: Scenario
  readonly timeline: ReadonlyArray<TimelineSample>
  readonly faultWindows: ReadonlyArray<FaultEvent>
  readonly healAtMs: number
  /** Times a new primary took office. */
  readonly primaryChanges: number
  /** From the primary's crash or isolation to the next primary holding a lease (virtual ms). */
  /** Every failover measured, in the order they happened (virtual ms). */
  readonly failoverSamplesMs: ReadonlyArray<number>
  readonly failoverMs: {
    readonly samples: number
    readonly p50: number | null
    readonly p99: number | null
    readonly max: number | null
  }
  readonly alarmsRaised: number
  /** Alarms raised about a node that was, in truth, up and connected at that moment. */
  readonly falseAlarms: number
  readonly fences: number
  /** Who was primary when: one interval per lease held. */
  readonly primaries: ReadonlyArray<{
    readonly node: string
    readonly term: number
    readonly fromMs: number
    readonly toMs: number
  }>
  /** The cluster's health as the last primary (or the first node) sees it at the end. */
  readonly health: Health | null
  /** Storage in the loop (with the hypervisor): driver calls made, and volumes on the hosts' disks at the end. */
  readonly storage: {
    readonly calls: number
    readonly volumes: number
    readonly revertsChecked: number
    /** Calls a host crash broke off before their last step (a create's image left half-made, a snapshot or revert not made). */
    readonly brokenOff: number
    /** Host crashes that came while a create, snapshot or revert ran on its disk. */
    readonly crashesInCall: number
    /** Volumes the operator attached to systems (the API's rules let through). */
    readonly attaches: number
  }
  /** The hypervisor in the loop (`systems` > 0). */
  readonly hypervisor: {
    readonly systems: number
    /** Where the scheduler first placed each system. */
    readonly created: ReadonlyArray<{ readonly system: string; readonly node: string; readonly ha: boolean }>
    readonly driverCalls: number
    /** HA systems the primary placed again (moved off a lost node, or released from a hold). */
    readonly haActions: number
    /** The HA round's moves as their primary proposed them (virtual ms), committed or not. */
    readonly moves: ReadonlyArray<{
      readonly atMs: number
      readonly by: string
      readonly system: string
      readonly from: string
      readonly to: string
    }>
    /** Placements the decision log committed, in index order, where they were first applied (virtual ms). */
    readonly placements: ReadonlyArray<{
      readonly atMs: number
      readonly index: number
      readonly system: string
      readonly node: string
      readonly epoch: number
    }>
    /** From the crash of a node to each of its HA systems running on another node (virtual ms). */
    readonly failoverSamplesMs: ReadonlyArray<number>
    readonly failoverMs: Percentiles
    /** HA systems of a crashed node that ran again on that node, restarted before the move. */
    readonly restartedInPlace: number
  }
}

const safetyCheckers = new Set([
  "order",
  "refused",
  "duplicate",
  "durability",
  "model",
  "digest",
  "numbering",
  "decisions",
  "flow",
  "decode",
  "canary",
  "crash",
  "election",
  "lease",
  "alarm",
  "fence",
  "vm",
  "epoch",
])

export const isSafetyViolation = (violation: Violation): boolean => safetyCheckers.has(violation.checker)
