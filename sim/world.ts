/**
 * The simulated world: N CDB nodes in L2 domains joined by relays, a network that loses,
 * duplicates, delays and reorders datagrams, partitions (symmetric, one-way, flapping), crashes
 * with restart from the durable image, per-node clock drift, and a workload. Virtual time is in
 * microseconds; every draw comes from the seed. Checkers watch every output.
 *
 * Two phases, as in TigerBeetle's VOPR: safety (faults and writes on, checkers on every step),
 * then liveness (heal everything, faults and writes off; the cluster must converge within a bound).
 */
import type { Change } from "../core/cdb/codec.ts"
import { applyPersist, type DurableImage, emptyImage, entryKey } from "../core/cdb/durable.ts"
import { compareVersions, type Version } from "../core/cdb/hlc.ts"
import {
  type CdbConfig,
  CdbNode,
  defaultCdbConfig,
  type Member,
  type Output,
  type WriteOp,
} from "../core/cdb/node.ts"
import { haActions, storeInSync } from "../core/hypervisor/ha.ts"
import {
  defaultHypervisorTimings,
  domainNameOf,
  type Input as HypervisorInput,
  HypervisorNode,
  type Output as HypervisorOutput,
  type SystemMetaValue,
  type SystemSpecValue,
} from "../core/hypervisor/hypervisor.ts"
import { PendingWrites, type ServiceWrite } from "../core/hypervisor/pending.ts"
import { newTask, planOperation } from "../core/hypervisor/requests.ts"
import {
  defaultSchedulerPolicy,
  liveNodes,
  type NodeCapacity,
  place,
  placedSystems,
  requestFor,
} from "../core/hypervisor/scheduler.ts"
import { decodeValue, encodeValue } from "../core/hypervisor/values.ts"
import { viewIn } from "../core/hypervisor/view.ts"
import {
  type AlarmRecord,
  encodeAlarm,
  evaluateAlarms,
  nodeConditions,
  nodeUnreachableRule,
  openAlarms,
  storedAlarm,
} from "../core/monitor/alarms.ts"
import {
  type DurableVote,
  defaultElectionTimings,
  ElectionNode,
  type Output as ElectionOutput,
  fenceBoundMs,
  type Message,
} from "../core/monitor/election.ts"
import { computeHealth, type Health } from "../core/monitor/health.ts"
import { type Percentiles, percentiles } from "../core/percentile.ts"
import { ReplayWindow } from "../core/transport/replay.ts"
import { EventQueue, Prng, TraceHash } from "./prng.ts"
import {
  drawScenario,
  type ElectionTimings,
  type FaultEvent,
  replayCommand,
  type Scenario,
  type SimOptions,
} from "./scenario.ts"
import { callDone, SimVmm } from "./vmm.ts"

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
  /** The hypervisor in the loop (`systems` > 0). */
  readonly hypervisor: {
    readonly systems: number
    /** Where the scheduler first placed each system. */
    readonly created: ReadonlyArray<{ readonly system: string; readonly node: string; readonly ha: boolean }>
    readonly driverCalls: number
    /** HA systems the primary placed again (moved off a lost node, or released from a hold). */
    readonly haActions: number
    /** From the crash of a node to each of its HA systems running on another node (virtual ms). */
    readonly failoverSamplesMs: ReadonlyArray<number>
    readonly failoverMs: Percentiles
    /** HA systems of a crashed node that ran again on that node, restarted before the move. */
    readonly restartedInPlace: number
  }
}

/** What the envelope seals into every datagram: who sent it, in which run, with which number. */
interface Seal {
  readonly sender: string
  readonly incarnation: number
  readonly counter: number
}

type Event =
  | {
      readonly type: "deliver"
      readonly to: number
      readonly bytes: Uint8Array
      readonly via: "domain" | "relay"
      readonly from: string
      readonly seal: Seal
    }
  | { readonly type: "deadline"; readonly node: number }
  | { readonly type: "write"; readonly node: number }
  | { readonly type: "fault-start"; readonly fault: FaultEvent }
  | { readonly type: "fault-end"; readonly fault: FaultEvent }
  | { readonly type: "heal" }
  | { readonly type: "check" }
  | { readonly type: "monitor-deliver"; readonly to: number; readonly message: Message; readonly seal: Seal }
  | { readonly type: "replay" }
  | { readonly type: "monitor-deadline"; readonly node: number }
  | { readonly type: "hv-deadline"; readonly node: number }
  | { readonly type: "hv-view"; readonly node: number }
  | {
      readonly type: "hv-input"
      readonly node: number
      readonly incarnation: number
      /** A driver call's answer, or "observe": the VMM's list of domains, read when this fires. */
      readonly input: HypervisorInput | "observe"
    }
  | { readonly type: "ha" }
  | { readonly type: "create-systems" }
  | { readonly type: "operate" }

interface SimNode {
  readonly id: string
  readonly index: number
  readonly domain: string
  readonly driftPpm: number
  cdb: CdbNode | null
  image: DurableImage
  incarnation: number
  armedUs: number
  /** Request ids of writes in flight, with the key they write, by request id. */
  requestId: number
  /** Per origin, the last sequence number this node applied (order and duplicate checkers). */
  lastApplied: Map<string, number>
  monitor: ElectionNode | null
  /** The election's durable state: the term and the vote cast in it. */
  vote: DurableVote
  monitorArmedUs: number
  /** Until when (global µs) this node holds a primary lease, as the checker sees it. */
  leaseUntilUs: number
  leaseTerm: number
  leaseFromUs: number
  fenced: boolean
  /** Since when (global µs) the network has cut this node off from a majority, if it has. */
  cutOffSinceUs: number | null
  /** When (global µs) this node was last up and connected both ways with each node, by index. */
  lastConnectedUs: Array<number>
  /** When (its local ms) this incarnation started. */
  startedMs: number
  /** How this node's CDB sees each member, in its local ms. */
  memberView: Map<string, { state: "alive" | "suspect" | "dead"; sinceMs: number }>
  /** The host's hypervisor (outlives the node process: a crash takes its domains, though). */
  readonly vmm: SimVmm
  hypervisor: HypervisorNode | null
  /** Set while this node's store refuses commits, as its driver knows it (from a refused commit until one succeeds). */
  storeFailing: boolean
  /** While it does, the local ms from which the core takes received datagrams again (one probe per interval). */
  storeProbeAtMs: number
  /** Numbers the datagrams this node seals (with its incarnation: never confusable across runs). */
  sealCounter: number
  /** The anti-replay window of this node's transport (a process's: new at every start). */
  replayWindow: ReplayWindow
  /** The hypervisor's writes its node refused, to write again. */
  pendingWrites: PendingWrites
  hypervisorArmedUs: number
  viewPending: boolean
}

/** An HA system whose node crashed while running it, until it runs again somewhere. */
interface Outage {
  readonly system: string
  readonly from: string
  readonly atUs: number
  /** Restarted whenever no majority is connected: the bound counts only time the cluster could act. */
  sinceUs: number
}

interface AcknowledgedWrite {
  readonly key: string
  readonly version: Version
  readonly node: string
  readonly atMs: number
}

const l2DelayUs = 150
const l3DelayUs = 2_000
/** A change as the refused-writes checker knows it: key, version and value, so a reused version is no match. */
const changeIdentity = (change: Change): string =>
  `${change.kind}/${change.id}|${change.origin}@${change.ms}.${change.counter}|${Array.from(change.value ?? [], (byte) => byte.toString(16)).join(",")}`

/** How long a node whose store refused a commit waits before its core tries again (its driver's tick). */
const storeRetryMs = 50
/** As the real driver (adapters/node/node.ts): while its store refuses commits, a node's core takes received datagrams once per this. */
const storeProbeMs = 500
/** Fault "replay": the adversary's memory, and how much it plays back how often. */
const capturedMax = 64
const replaysPerRound = 16
const replayEveryUs = 50_000
/** As the real transport: a restarted node takes a sender's datagrams sealed from its own start less this. */
const clockOffsetToleratedMs = 500
/** How long a service waits before writing again what its node refused. */
const serviceRetryMs = 500
const checkIntervalUs = 20_000
/** How long a connected, stable majority may go without a primary (the issue's failover goal). */
export const electionBoundMs = 5_000
/** How long an HA system of a crashed node may stay down while a majority is connected (the hypervisor issue's goal). */
export const haBoundMs = 15_000
const haEveryUs = 250_000
/** Each simulated host's capacity, as its statistics would report it. */
const hostCpus = 16
const hostMemoryMiB = 32_768
const safetyCheckers = new Set([
  "order",
  "refused",
  "duplicate",
  "durability",
  "decode",
  "canary",
  "crash",
  "election",
  "lease",
  "alarm",
  "fence",
  "vm",
])

export const isSafetyViolation = (violation: Violation): boolean => safetyCheckers.has(violation.checker)

export const nodeName = (index: number) => `n${index + 1}`

export class World {
  readonly scenario: Scenario
  private readonly options: SimOptions
  private readonly queue = new EventQueue<Event>()
  private readonly net: Prng
  private readonly load: Prng
  private readonly trace = new TraceHash()
  private readonly nodes: Array<SimNode>
  private readonly byId: ReadonlyMap<string, SimNode>
  private readonly members: ReadonlyArray<Member>
  private readonly config: Omit<CdbConfig, "self">
  private readonly active = new Set<FaultEvent>()
  private readonly violations: Array<Violation> = []
  private readonly acknowledged: Array<AcknowledgedWrite> = []
  /** Writes a node's store refused (fault "disk-full"), by key, version and value: none may ever be applied. */
  private readonly refused = new Set<string>()
  /** Fault "replay": whether the adversary listens at all, what it captured, what it sent back. */
  private readonly adversary: boolean
  private readonly captured: Array<{
    events: Array<Extract<Event, { type: "deliver" | "monitor-deliver" }>>
    next: number
  }>
  private readonly replays: Prng
  private replaysSent = 0
  private replaysDropped = 0
  private commitsRefused = 0
  private readonly timeline: Array<TimelineSample> = []
  private nowUs = 0
  private events = 0
  private delivered = 0
  private dropped = 0
  private written = 0
  private healed = false
  private healAtUs: number
  private convergedAtUs: number | null = null
  private readonly sampleEveryUs: number
  private nextSampleUs = 0
  private readonly voters: ReadonlyArray<string>
  private readonly electionTimings: ElectionTimings
  private readonly termPrimary = new Map<number, string>()
  private readonly primaries: Array<{ node: string; term: number; fromMs: number; toMs: number }> = []
  private readonly failovers: Array<number> = []
  /** Set while the primary is gone (crashed or cut off) and no successor holds a lease yet. */
  private failoverFrom: { readonly atUs: number; readonly node: string; readonly term: number } | null = null
  private primaryChanges = 0
  /** Since when (global µs) a majority has been up and connected, every pair both ways; null if none is. */
  private majoritySinceUs: number | null = 0
  private lastPrimaryUs = 0
  private alarmsRaised = 0
  /** Alarms raised about a node that was up and connected (ground truth) when it was raised. */
  private falseAlarms = 0
  private fences = 0
  private readonly systems: number
  private readonly operator: Prng
  private driverCalls = 0
  private haMoves = 0
  private readonly outages = new Map<string, Outage>()
  private readonly haFailovers: Array<number> = []
  private restartedInPlace = 0
  private operations = 0
  private readonly created: Array<{ system: string; node: string; ha: boolean }> = []

  constructor(options: SimOptions) {
    this.options = options
    this.scenario = drawScenario(options)
    const root = new Prng(options.seed)
    this.net = root.fork("network")
    this.load = root.fork("load")
    this.operator = root.fork("operator")
    this.replays = root.fork("adversary")
    this.adversary = this.scenario.schedule.events.some((fault) => fault.kind === "replay")
    this.captured = Array.from({ length: options.nodes }, () => ({ events: [], next: 0 }))
    const guests = root.fork("guests")
    this.systems = options.systems ?? 0
    this.healAtUs = options.durationMs * 1000
    this.sampleEveryUs = Math.max(
      checkIntervalUs,
      Math.floor((options.durationMs + options.livenessBoundMs) * 10),
    )
    this.members = Array.from({ length: options.nodes }, (_, index) => {
      const domain = `d${(index % options.domains) + 1}`
      return { id: nodeName(index), domain, relay: index < options.domains }
    })
    this.config = { ...defaultCdbConfig, ...options.timings, members: this.members }
    this.voters = this.members.map((member) => member.id)
    this.electionTimings = options.electionTimings ?? defaultElectionTimings
    this.nodes = this.members.map((member, index) => ({
      id: member.id,
      index,
      domain: member.domain,
      driftPpm: this.scenario.schedule.driftPpm[index] ?? 0,
      cdb: null,
      image: emptyImage(),
      incarnation: 0,
      armedUs: Number.MAX_SAFE_INTEGER,
      requestId: 0,
      lastApplied: new Map(),
      monitor: null,
      vote: { term: 0, votedFor: null },
      monitorArmedUs: Number.MAX_SAFE_INTEGER,
      leaseUntilUs: 0,
      leaseTerm: 0,
      leaseFromUs: 0,
      fenced: false,
      cutOffSinceUs: null,
      startedMs: 0,
      lastConnectedUs: Array.from({ length: options.nodes }, () => 0),
      memberView: new Map(),
      vmm: new SimVmm(guests.fork(member.id), this.scenario.guests),
      hypervisor: null,
      storeFailing: false,
      storeProbeAtMs: 0,
      sealCounter: 0,
      replayWindow: new ReplayWindow(),
      pendingWrites: new PendingWrites(serviceRetryMs),
      hypervisorArmedUs: Number.MAX_SAFE_INTEGER,
      viewPending: false,
    }))
    this.byId = new Map(this.nodes.map((node) => [node.id, node]))
  }

  run(): SimResult {
    for (const node of this.nodes) this.start(node)
    for (const fault of this.scenario.schedule.events) {
      this.queue.push(fault.atMs * 1000, { type: "fault-start", fault })
      this.queue.push((fault.atMs + fault.durationMs) * 1000, { type: "fault-end", fault })
    }
    if (this.options.writesPerSec > 0) for (const node of this.nodes) this.scheduleWrite(node)
    this.queue.push(this.healAtUs, { type: "heal" })
    this.queue.push(checkIntervalUs, { type: "check" })
    if (this.adversary) this.queue.push(replayEveryUs, { type: "replay" })
    if (this.systems > 0) {
      // Systems are created once a primary is likely (the election takes a few hundred ms).
      this.queue.push(Math.min(1_500_000, Math.floor(this.healAtUs / 2)), { type: "create-systems" })
      this.queue.push(haEveryUs, { type: "ha" })
    }
    const endUs = this.healAtUs + this.options.livenessBoundMs * 1000
    while (this.queue.size > 0 && this.queue.peekTime() <= endUs && this.convergedAtUs === null) {
      const next = this.queue.pop()!
      this.nowUs = next.timeUs
      this.events++
      this.dispatch(next.item)
      if (this.violations.length > 50) break
    }
    return this.result()
  }

  // ---- events ------------------------------------------------------------------------------

  private dispatch(event: Event): void {
    switch (event.type) {
      case "deliver": {
        const node = this.nodes[event.to]!
        if (node.cdb === null || !this.unsealed(node, event.seal)) return
        // As the real driver: while its store refuses commits the core takes one datagram per
        // probe interval, the rest is dropped (and repaired later, like any loss).
        if (node.storeFailing) {
          if (this.localMs(node) < node.storeProbeAtMs) return
          node.storeProbeAtMs = this.localMs(node) + storeProbeMs
        }
        this.trace.number(1)
        this.trace.number(this.nowUs)
        this.trace.number(event.to)
        this.delivered++
        this.step(node, { _tag: "DatagramReceived", bytes: event.bytes, via: event.via, from: event.from })
        return
      }
      case "deadline": {
        const node = this.nodes[event.node]!
        if (node.cdb === null || node.armedUs !== this.nowUs) return
        node.armedUs = Number.MAX_SAFE_INTEGER
        this.step(node, { _tag: "DeadlineReached" })
        return
      }
      case "write":
        this.write(this.nodes[event.node]!)
        return
      case "fault-start":
        this.faultStart(event.fault)
        return
      case "fault-end":
        this.faultEnd(event.fault)
        return
      case "heal":
        this.heal()
        return
      case "replay":
        this.replay()
        return
      case "check":
        this.check()
        this.queue.push(this.nowUs + checkIntervalUs, { type: "check" })
        return
      case "monitor-deliver": {
        const node = this.nodes[event.to]!
        if (node.monitor === null || !this.unsealed(node, event.seal)) return
        this.trace.number(8)
        this.trace.number(this.nowUs)
        this.trace.number(event.to)
        this.trace.text(event.message._tag)
        this.monitorStep(node, { _tag: "MessageReceived", message: event.message })
        return
      }
      case "monitor-deadline": {
        const node = this.nodes[event.node]!
        if (node.monitor === null || node.monitorArmedUs !== this.nowUs) return
        node.monitorArmedUs = Number.MAX_SAFE_INTEGER
        this.monitorStep(node, { _tag: "DeadlineReached" })
        this.evaluateAlarms(node)
        return
      }
      case "hv-deadline": {
        const node = this.nodes[event.node]!
        if (node.hypervisor === null || node.hypervisorArmedUs !== this.nowUs) return
        node.hypervisorArmedUs = Number.MAX_SAFE_INTEGER
        this.hypervisorStep(node, { _tag: "DeadlineReached" })
        return
      }
      case "hv-view": {
        const node = this.nodes[event.node]!
        node.viewPending = false
        if (node.hypervisor !== null)
          this.hypervisorStep(node, { _tag: "ViewChanged", view: this.viewOf(node) })
        return
      }
      case "hv-input": {
        const node = this.nodes[event.node]!
        if (node.hypervisor === null || node.incarnation !== event.incarnation) return
        if (event.input === "observe") {
          node.vmm.advance(this.nowUs, 0)
          this.hypervisorStep(node, { _tag: "Observed", domains: node.vmm.list() })
        } else this.hypervisorStep(node, event.input)
        return
      }
      case "ha":
        for (const node of this.nodes) this.highAvailability(node)
        this.queue.push(this.nowUs + haEveryUs, { type: "ha" })
        return
      case "create-systems":
        this.createSystems()
        return
      case "operate":
        this.operate()
        return
    }
  }

  private localMs(node: SimNode): number {
    return Math.floor((this.nowUs * (1_000_000 + node.driftPpm)) / 1_000_000_000)
  }

  private globalUs(node: SimNode, localMs: number): number {
    return Math.ceil((localMs * 1_000_000_000) / (1_000_000 + node.driftPpm))
  }

  private start(node: SimNode): void {
    const config: CdbConfig = { ...this.config, self: node.id }
    const image = node.incarnation === 0 ? undefined : node.image
    node.cdb = new CdbNode(config, this.localMs(node), node.incarnation, image)
    node.storeFailing = false
    node.replayWindow = new ReplayWindow(1024, BigInt((this.localMs(node) - clockOffsetToleratedMs) * 1000))
    node.lastApplied = new Map(node.image.vector)
    node.startedMs = this.localMs(node)
    node.armedUs = Number.MAX_SAFE_INTEGER
    node.memberView = new Map(
      this.members
        .filter((m) => m.id !== node.id)
        .map((m) => [m.id, { state: "alive" as const, sinceMs: this.localMs(node) }]),
    )
    this.trace.number(2)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
    this.step(node, { _tag: "DeadlineReached" })
    node.monitor = new ElectionNode(
      { ...this.electionTimings, self: node.id, voters: this.voters },
      this.localMs(node),
      node.vote,
    )
    node.monitorArmedUs = Number.MAX_SAFE_INTEGER
    node.fenced = false
    this.monitorStep(node, { _tag: "DeadlineReached" })
    if (this.systems > 0) {
      node.hypervisor = new HypervisorNode(
        { ...defaultHypervisorTimings, self: node.id, volumeDir: "/var/lib/acp/volumes" },
        this.localMs(node),
      )
      node.hypervisorArmedUs = Number.MAX_SAFE_INTEGER
      node.viewPending = false
      node.pendingWrites = new PendingWrites(serviceRetryMs)
      this.hypervisorStep(node, { _tag: "ViewChanged", view: this.viewOf(node) })
    }
  }

  private crash(node: SimNode, lose: number): void {
    if (node.cdb === null) return
    this.primaryGone(node)
    this.endLease(node)
    if (node.hypervisor !== null) this.hostCrashed(node)
    node.cdb = null
    node.monitor = null
    node.incarnation++
    if (lose > 0) this.loseDurableWrites(node, lose)
    this.trace.number(3)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
  }

  /** The unsafe fault: the disk forgets the node's last `lose` own changes it claimed were durable. */
  private loseDurableWrites(node: SimNode, lose: number): void {
    const own = node.image.ownLog
    const kept = own.slice(0, Math.max(0, own.length - lose))
    const lost = own.length - kept.length
    if (lost === 0) return
    const image = emptyImage()
    const self = node.id
    for (const [key, entry] of node.image.entries) {
      if (entry.version.origin !== self || kept.some((change) => change.seq === entry.seq))
        image.entries.set(key, entry)
    }
    for (const [origin, seq] of node.image.vector)
      image.vector.set(origin, origin === self ? (kept.at(-1)?.seq ?? 0) : seq)
    image.ownLog.push(...kept)
    node.image = image
  }

  private step(node: SimNode, input: Parameters<CdbNode["handle"]>[0]): ReadonlyArray<Output> {
    const cdb = node.cdb!
    const outputs = cdb.handle(input, this.localMs(node))
    if (
      this.diskFull(node) &&
      outputs.some((output) => output._tag === "Persist" || output._tag === "PersistSnapshot")
    ) {
      if (!this.options.faults.includes("ignore-refused-commit")) {
        this.commitRefused(node, outputs)
        return []
      }
      // The unsafe driver: it notes the refusal, then acknowledges and sends all the same.
      this.noteRefused(node, outputs)
      for (const output of outputs)
        if (output._tag !== "Persist" && output._tag !== "PersistSnapshot") this.carryOut(node, output)
      return outputs
    }
    if (
      node.storeFailing &&
      outputs.some((output) => output._tag === "Persist" || output._tag === "PersistSnapshot")
    )
      node.storeFailing = false
    for (const output of outputs) this.carryOut(node, output)
    return outputs
  }

  /**
   * The store refused a step's commit: as the real driver does, nothing of the step is carried
   * out (no acknowledgement, no datagram) and the core goes back to what is durable. The writes
   * it refused are remembered: none may ever become visible.
   */
  private noteRefused(node: SimNode, outputs: ReadonlyArray<Output>): void {
    this.commitsRefused++
    this.trace.number(9)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
    for (const output of outputs)
      if (output._tag === "Applied")
        for (const change of output.changes)
          if (change.origin === node.id && change.op === "put") this.refused.add(changeIdentity(change))
  }

  private commitRefused(node: SimNode, outputs: ReadonlyArray<Output>): void {
    this.noteRefused(node, outputs)
    if (!node.storeFailing) node.storeProbeAtMs = this.localMs(node) + storeProbeMs
    node.storeFailing = true
    const image = node.image
    const fresh = image.vector.size === 0 && image.entries.size === 0
    node.cdb = new CdbNode(
      { ...this.config, self: node.id },
      this.localMs(node),
      node.incarnation,
      fresh ? undefined : image,
    )
    node.lastApplied = new Map(image.vector)
    // The new core's failure detector starts over (every member alive), so its view does too.
    node.memberView = new Map(
      this.members
        .filter((m) => m.id !== node.id)
        .map((m) => [m.id, { state: "alive" as const, sinceMs: this.localMs(node) }]),
    )
    // Its timers start over with it: the next try comes after a short wait, not at once.
    node.armedUs = Number.MAX_SAFE_INTEGER
    this.arm(node, this.localMs(node) + storeRetryMs, "deadline")
  }

  private carryOut(node: SimNode, output: Output): void {
    switch (output._tag) {
      case "Persist":
      case "PersistSnapshot":
        applyPersist(node.image, output, node.id, this.config.retainChanges)
        return
      case "Applied":
        this.checkApplied(node, output.changes)
        if (
          node.hypervisor !== null &&
          output.changes.some((change) => change.kind === "system" || change.kind === "task")
        )
          this.viewSoon(node)
        return
      case "SnapshotInstalled":
        for (const [origin, seq] of output.vector) {
          if (seq < (node.lastApplied.get(origin) ?? 0)) {
            this.violate("order", `${node.id} installed a snapshot that moves ${origin} back to #${seq}`)
          }
          node.lastApplied.set(origin, seq)
        }
        if (node.hypervisor !== null) this.viewSoon(node)
        return
      case "Rejected":
        this.violate(
          "decode",
          `${node.id} rejected a datagram from a correct peer: ${output.rejection.reason}: ${output.rejection.detail}`,
        )
        return
      case "Multicast":
        this.hashSend(node, output.bytes)
        for (const peer of this.nodes) {
          if (peer.domain === node.domain && peer !== node)
            this.transmit(node, peer, output.bytes, "domain", l2DelayUs)
        }
        return
      case "Unicast": {
        this.hashSend(node, output.bytes)
        const peer = this.byId.get(output.to)
        if (peer !== undefined && peer.domain === node.domain)
          this.transmit(node, peer, output.bytes, "domain", l2DelayUs)
        return
      }
      case "Relay": {
        this.hashSend(node, output.bytes)
        const peer = this.byId.get(output.to)
        if (peer !== undefined) this.transmit(node, peer, output.bytes, "relay", l3DelayUs)
        return
      }
      case "ArmDeadline":
        this.arm(node, output.atMs, "deadline")
        return
      case "MemberChanged":
        node.memberView.set(output.node, { state: output.state, sinceMs: this.localMs(node) })
        return
      case "Acknowledged":
      case "WriteRejected":
        return
    }
  }

  /** Arms a state machine's next deadline (its local ms), keeping only the earliest one pending. */
  private arm(node: SimNode, atMs: number, type: "deadline" | "monitor-deadline" | "hv-deadline"): undefined {
    const atUs = Math.max(this.nowUs + 1, this.globalUs(node, atMs))
    const armed =
      type === "deadline"
        ? node.armedUs
        : type === "monitor-deadline"
          ? node.monitorArmedUs
          : node.hypervisorArmedUs
    if (atUs >= armed) return
    if (type === "deadline") node.armedUs = atUs
    else if (type === "monitor-deadline") node.monitorArmedUs = atUs
    else node.hypervisorArmedUs = atUs
    this.queue.push(atUs, { type, node: node.index })
  }

  private hashSend(node: SimNode, bytes: Uint8Array): void {
    this.trace.number(4)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
    this.trace.bytes(bytes)
  }

  // ---- the network -------------------------------------------------------------------------

  private transmit(
    from: SimNode,
    to: SimNode,
    bytes: Uint8Array,
    via: "domain" | "relay",
    baseUs: number,
  ): void {
    const rates = this.healed
      ? { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 }
      : this.scenario.schedule.rates
    if (
      this.blocked(from.index, to.index) ||
      (rates.lossPermille > 0 && this.net.chance(rates.lossPermille))
    ) {
      this.dropped++
      return
    }
    const seal = this.seal(from)
    const copies = rates.duplicatePermille > 0 && this.net.chance(rates.duplicatePermille) ? 2 : 1
    for (let copy = 0; copy < copies; copy++) {
      const delayUs = baseUs + (rates.jitterUs > 0 ? this.net.below(rates.jitterUs) : this.net.below(50))
      const event = { type: "deliver" as const, to: to.index, bytes, via, from: from.id, seal }
      this.capture(event)
      this.queue.push(this.nowUs + delayUs, event)
    }
  }

  /** As the envelope seals: the counter is a hybrid clock, never below the sender's local µs. */
  private seal(from: SimNode): Seal {
    from.sealCounter = Math.max(from.sealCounter + 1, this.localMs(from) * 1000)
    return { sender: from.id, incarnation: from.incarnation, counter: from.sealCounter }
  }

  /** The adversary keeps, per sender, the last `capturedMax` datagrams it saw on the wire (fault "replay"). */
  private capture(event: Extract<Event, { type: "deliver" | "monitor-deliver" }>): void {
    if (!this.adversary) return
    const sender = this.byId.get(event.seal.sender)!.index
    const ring = this.captured[sender]!
    if (ring.events.length >= capturedMax) ring.events[ring.next % capturedMax] = event
    else ring.events.push(event)
    ring.next++
  }

  /**
   * The adversary plays back what it captured, long after, to where it was going, from wherever
   * it likes (the window never looks at a source). Sending a datagram to a node it was not for
   * would be a different attack (bridging a partition), against which the seal does not claim to
   * protect; the checkers' ground truth would not know of it either.
   */
  private replay(): void {
    const active = [...this.active].some((fault) => fault.kind === "replay")
    // Each round, one sender's datagrams (a crashed primary's, say, which no longer change).
    const events = this.captured[this.replays.below(this.captured.length)]!.events
    if (active && events.length > 0) {
      for (let index = 0; index < replaysPerRound; index++) {
        const event = events[this.replays.below(events.length)]!
        this.replaysSent++
        this.queue.push(this.nowUs + 1 + this.replays.below(1_000), event)
      }
    }
    if (!this.healed) this.queue.push(this.nowUs + replayEveryUs, { type: "replay" })
  }

  /** What the receiving node's transport lets through: never a datagram it has seen before. */
  private unsealed(node: SimNode, seal: Seal): boolean {
    if (node.replayWindow.accept(seal.sender, seal.incarnation, BigInt(seal.counter))) return true
    if (this.options.faults.includes("no-replay-window")) return true
    this.replaysDropped++
    return false
  }

  private blocked(from: number, to: number): boolean {
    for (const fault of this.active) {
      switch (fault.kind) {
        case "partition":
          if (fault.side.includes(from) !== fault.side.includes(to)) return true
          break
        case "asymmetric":
          if (fault.node === from) return true
          break
        case "flapping": {
          const phase = Math.floor((this.nowUs / 1000 - fault.atMs) / fault.periodMs)
          if ((fault.node === from || fault.node === to) && phase % 2 === 0) return true
          break
        }
        case "crash":
        case "fsync-lie":
        case "disk-full":
        case "replay":
          break
      }
    }
    return false
  }

  /** Whether `node`'s store refuses commits now (fault "disk-full"). */
  private diskFull(node: SimNode): boolean {
    for (const fault of this.active) if (fault.kind === "disk-full" && fault.node === node.index) return true
    return false
  }

  private faultStart(fault: FaultEvent): void {
    if (this.healed) return
    this.trace.number(5)
    this.trace.number(this.nowUs)
    this.trace.text(fault.kind)
    if (fault.kind === "crash" || fault.kind === "fsync-lie") {
      this.crash(this.nodes[fault.node]!, fault.kind === "fsync-lie" ? fault.lose : 0)
      return
    }
    this.active.add(fault)
    for (const node of this.nodes)
      if (node.cdb !== null && !this.reachesMajority(node)) this.primaryGone(node)
  }

  private faultEnd(fault: FaultEvent): void {
    if (this.healed) return
    this.active.delete(fault)
    if (fault.kind === "crash" || fault.kind === "fsync-lie") {
      const node = this.nodes[fault.node]!
      const stillDown = [...this.scenario.schedule.events].some(
        (other) =>
          other !== fault &&
          (other.kind === "crash" || other.kind === "fsync-lie") &&
          other.node === fault.node &&
          other.atMs * 1000 <= this.nowUs &&
          (other.atMs + other.durationMs) * 1000 > this.nowUs,
      )
      if (node.cdb === null && !stillDown) this.start(node)
    }
  }

  private heal(): void {
    this.healed = true
    this.active.clear()
    this.failoverFrom = null
    this.trace.number(6)
    this.trace.number(this.nowUs)
    for (const node of this.nodes) node.vmm.calm()
    for (const node of this.nodes) if (node.cdb === null) this.start(node)
  }

  // ---- the monitor: election, leases, fencing, alarms --------------------------------------

  private monitorStep(node: SimNode, input: Parameters<ElectionNode["handle"]>[0]): void {
    const outputs = node.monitor!.handle(input, this.localMs(node))
    for (const output of outputs) {
      if (output._tag === "PersistVote" && this.diskFull(node)) {
        // A vote the store refused is not cast: nothing after it goes out, and the election
        // goes back to the durable vote (as the real driver does).
        this.commitsRefused++
        for (const after of node.monitor!.revertVote(node.vote, this.localMs(node)))
          this.carryOutElection(node, after)
        // What came after the refused vote did not go out (a SteppedDown, a Fence or Unfence):
        // take the core's word for it. It is a follower now, so any lease it held is over.
        this.endLease(node)
        node.fenced = node.monitor!.isFenced()
        return
      }
      this.carryOutElection(node, output)
    }
  }

  private carryOutElection(node: SimNode, output: ElectionOutput): void {
    switch (output._tag) {
      case "Send": {
        const peer = this.byId.get(output.to)
        if (peer !== undefined) this.transmitMonitor(node, peer, output.message)
        return
      }
      case "Broadcast":
        for (const peer of this.nodes) if (peer !== node) this.transmitMonitor(node, peer, output.message)
        return
      case "PersistVote":
        node.vote = { term: output.term, votedFor: output.votedFor }
        return
      case "BecamePrimary": {
        this.trace.number(7)
        this.trace.number(this.nowUs)
        this.trace.number(node.index)
        this.trace.number(output.term)
        const holder = this.termPrimary.get(output.term)
        if (holder !== undefined && holder !== node.id) {
          this.violate("election", `${node.id} and ${holder} both became primary in term ${output.term}`)
        }
        this.termPrimary.set(output.term, node.id)
        return
      }
      case "LeaseRenewed":
        this.leaseRenewed(node, output.term, this.globalUs(node, output.leaseUntilMs))
        return
      case "SteppedDown":
        this.endLease(node)
        return
      case "Fence":
        node.fenced = true
        this.fences++
        return
      case "Unfence":
        node.fenced = false
        return
      case "ArmDeadline":
        this.arm(node, output.atMs, "monitor-deadline")
        return
    }
  }

  private transmitMonitor(from: SimNode, to: SimNode, message: Message): void {
    const rates = this.healed
      ? { lossPermille: 0, duplicatePermille: 0, jitterUs: 0 }
      : this.scenario.schedule.rates
    if (this.blocked(from.index, to.index) || (rates.lossPermille > 0 && this.net.chance(rates.lossPermille)))
      return
    const baseUs = from.domain === to.domain ? l2DelayUs : l3DelayUs
    const delayUs = baseUs + (rates.jitterUs > 0 ? this.net.below(rates.jitterUs) : this.net.below(50))
    const event = { type: "monitor-deliver" as const, to: to.index, message, seal: this.seal(from) }
    this.capture(event)
    this.queue.push(this.nowUs + delayUs, event)
  }

  /** A lease begins: no other node may hold a valid one at this instant (true time). */
  private leaseRenewed(node: SimNode, term: number, untilUs: number): void {
    for (const other of this.nodes) {
      if (other !== node && other.leaseUntilUs > this.nowUs) {
        this.violate(
          "lease",
          `${node.id} holds a lease (term ${term}) while ${other.id} still holds one (term ${other.leaseTerm}) until ${Math.floor(other.leaseUntilUs / 1000)} ms`,
        )
      }
    }
    // The primary the failover clock was started for renewed its lease with acknowledgements sent
    // after the fault began (not ones already in flight): a majority still acknowledges it, so
    // there was no failover (a brief flap, say) and the clock stops.
    const inFlightUs = l3DelayUs + this.scenario.schedule.rates.jitterUs + 1_000
    if (
      this.failoverFrom !== null &&
      this.failoverFrom.node === node.id &&
      this.failoverFrom.term === term &&
      this.nowUs - this.failoverFrom.atUs > inFlightUs
    ) {
      this.failoverFrom = null
    }
    const fresh = node.leaseUntilUs <= this.nowUs || node.leaseTerm !== term
    if (fresh) {
      if (node.leaseFromUs > 0 && node.leaseUntilUs > node.leaseFromUs) {
        this.primaries.push({
          node: node.id,
          term: node.leaseTerm,
          fromMs: Math.floor(node.leaseFromUs / 1000),
          toMs: Math.floor(Math.min(node.leaseUntilUs, this.nowUs) / 1000),
        })
      }
      this.primaryChanges++
      node.leaseFromUs = this.nowUs
      if (
        this.failoverFrom !== null &&
        (this.failoverFrom.node !== node.id || this.failoverFrom.term !== term)
      ) {
        this.failovers.push(Math.floor((this.nowUs - this.failoverFrom.atUs) / 1000))
        this.failoverFrom = null
      }
    }
    node.leaseTerm = term
    node.leaseUntilUs = Math.max(node.leaseUntilUs, untilUs)
  }

  /** The lease ends now (step-down or crash); its interval is recorded when the next one starts, or at the end. */
  private endLease(node: SimNode): void {
    if (node.leaseUntilUs > this.nowUs) node.leaseUntilUs = this.nowUs
  }

  /** The primary crashed or was cut off: start the failover clock, unless one is already running. */
  private primaryGone(node: SimNode): void {
    if (this.healed || this.failoverFrom !== null || node.leaseUntilUs <= this.nowUs) return
    this.failoverFrom = { atUs: this.nowUs, node: node.id, term: node.leaseTerm }
  }

  /** Ground truth from the network: can this node exchange datagrams with a majority (itself included)? */
  private reachesMajority(node: SimNode): boolean {
    let count = 0
    for (const peer of this.nodes) {
      if (
        peer === node ||
        (peer.cdb !== null && !this.blocked(node.index, peer.index) && !this.blocked(peer.index, node.index))
      )
        count++
    }
    return count >= Math.floor(this.voters.length / 2) + 1
  }

  /** The primary (only) turns what its CDB says about the members into alarms, written to the CDB. */
  private evaluateAlarms(node: SimNode): void {
    const monitor = node.monitor
    const cdb = node.cdb
    if (monitor === null || cdb === null || !monitor.isPrimary(this.localMs(node))) return
    const conditions = nodeConditions(node.id, node.startedMs, node.memberView)
    const changes = evaluateAlarms(
      nodeUnreachableRule,
      conditions,
      (id) => storedAlarm(cdb.get("alarm", id)?.value),
      { nowMs: this.localMs(node), term: monitor.currentTerm, self: node.id, subjectKind: "node" },
    )
    if (changes.length === 0) return
    if (node.leaseUntilUs <= this.nowUs) {
      this.violate("alarm", `${node.id} wrote alarms without a valid lease`)
    }
    for (const change of changes) {
      if (change.record.state !== "raised") continue
      this.alarmsRaised++
      // Ground truth at the moment of raising: is the subject really down or cut off?
      const subject = this.byId.get(change.record.subject.id)
      const real =
        subject === undefined ||
        subject.cdb === null ||
        subject.cutOffSinceUs !== null ||
        this.blocked(subject.index, node.index) ||
        this.blocked(node.index, subject.index)
      if (!real) this.falseAlarms++
    }
    const writes: Array<WriteOp> = changes.map((change) => ({
      requestId: ++node.requestId,
      op: "put",
      kind: "alarm",
      id: change.id,
      value: encodeAlarm(change.record),
    }))
    this.step(node, { _tag: "Write", writes })
  }

  /** Ground truth: is there a majority of up nodes, every pair of which can talk both ways? */
  private majorityConnected(): boolean {
    const connected = (a: SimNode, b: SimNode) =>
      !this.blocked(a.index, b.index) && !this.blocked(b.index, a.index)
    const group = this.nodes.filter((node) => node.cdb !== null)
    // Greedily drop the least connected node until every pair in the group is connected.
    for (;;) {
      const degrees = group.map(
        (node) => group.filter((peer) => peer !== node && connected(node, peer)).length,
      )
      const worst = degrees.indexOf(Math.min(...degrees))
      if (degrees[worst] === undefined || degrees[worst] === group.length - 1) break
      group.splice(worst, 1)
    }
    return group.length >= Math.floor(this.voters.length / 2) + 1
  }

  /**
   * Liveness of the election: a majority that has been connected and stable for longer than the
   * election bound has a primary. Checked only where the network keeps its promises (no loss),
   * and it pauses the failover clock while no majority is connected.
   */
  private checkPrimaryLiveness(): void {
    if (!this.majorityConnected()) {
      this.majoritySinceUs = null
      if (this.failoverFrom !== null) this.failoverFrom = { ...this.failoverFrom, atUs: this.nowUs }
      return
    }
    this.majoritySinceUs ??= this.nowUs
    if (this.primaryNow() !== undefined) {
      this.lastPrimaryUs = this.nowUs
      return
    }
    const rates = this.scenario.schedule.rates
    const lossless = this.healed || (rates.lossPermille === 0 && rates.jitterUs <= 10_000)
    const withoutUs = this.nowUs - Math.max(this.majoritySinceUs, this.lastPrimaryUs)
    if (lossless && withoutUs > electionBoundMs * 1000) {
      this.violate(
        "primary",
        `no primary for ${Math.floor(withoutUs / 1000)} ms while a majority has been connected since ${Math.floor(this.majoritySinceUs / 1000)} ms`,
      )
      this.lastPrimaryUs = this.nowUs
    }
  }

  /**
   * Every node cut off from a majority for longer than the fence bound must have fenced itself.
   * "Cut off" is ground truth seen through the node's own quorum window: no majority (itself
   * included) has been up and connected to it both ways within the last window.
   */
  private checkFencing(): void {
    // The bound the core promises, plus the largest delivery delay the network may add.
    const boundUs =
      fenceBoundMs(this.electionTimings) * 1000 + this.scenario.schedule.rates.jitterUs + l3DelayUs
    const windowUs = this.electionTimings.quorumWindowMs * 1000
    const majority = Math.floor(this.voters.length / 2) + 1
    for (const node of this.nodes) {
      if (node.cdb === null) continue
      for (const peer of this.nodes) {
        if (
          peer !== node &&
          peer.cdb !== null &&
          !this.blocked(node.index, peer.index) &&
          !this.blocked(peer.index, node.index)
        ) {
          node.lastConnectedUs[peer.index] = this.nowUs
        }
      }
    }
    for (const node of this.nodes) {
      const recent = node.lastConnectedUs.filter(
        (atUs, index) => index !== node.index && atUs > 0 && this.nowUs - atUs <= windowUs,
      ).length
      if (node.cdb === null || recent + 1 >= majority) {
        node.cutOffSinceUs = null
        continue
      }
      node.cutOffSinceUs ??= this.nowUs
      if (this.nowUs - node.cutOffSinceUs > boundUs && !node.fenced) {
        this.violate(
          "fence",
          `${node.id} has been cut off from a majority since ${Math.floor(node.cutOffSinceUs / 1000)} ms and has not fenced itself`,
        )
        node.cutOffSinceUs = this.nowUs
      }
    }
  }

  private openAlarms(cdb: CdbNode): Array<AlarmRecord & { readonly id: string }> {
    return openAlarms(cdb.allEntries().map(([, entry]) => entry))
  }

  private primaryNow(): SimNode | undefined {
    return this.nodes.find((node) => node.leaseUntilUs > this.nowUs)
  }

  private health(): Health | null {
    const node = this.primaryNow() ?? this.nodes.find((candidate) => candidate.cdb !== null)
    if (node === undefined || node.cdb === null || node.monitor === null) return null
    const nowMs = this.localMs(node)
    return computeHealth({
      nowMs,
      members: [
        { id: node.id, state: "alive", sinceMs: 0 },
        ...[...node.memberView].map(([id, view]) => ({ id, ...view })),
      ],
      voters: this.voters.length,
      votersSeen: this.voters.filter((id) => id === node.id || node.memberView.get(id)?.state === "alive")
        .length,
      primary: this.primaryNow()?.id ?? null,
      openAlarms: this.openAlarms(node.cdb).map((alarm) => ({ id: alarm.id, severity: alarm.severity })),
      fenced: node.fenced,
    })
  }

  // ---- the hypervisor: systems on simulated hosts, HA, an operator -------------------------

  /** What the node's CDB holds for its hypervisor: every system, and the tasks it owns that are open. */
  private viewOf(node: SimNode) {
    const cdb = node.cdb!
    return viewIn(node.id, {
      list: (kind) => cdb.entriesOf(kind),
      metaOf: (kind, id) => cdb.metaOf(kind, id),
    })
  }

  /** The node's hypervisor looks at its CDB again shortly (as the real node's tick does). */
  private viewSoon(node: SimNode): void {
    if (node.viewPending) return
    node.viewPending = true
    this.queue.push(this.nowUs + 10_000, { type: "hv-view", node: node.index })
  }

  private hypervisorStep(node: SimNode, input: HypervisorInput): void {
    const nowMs = this.localMs(node)
    const caughtUp = storeInSync({
      self: node.id,
      members: this.voters,
      sinceMs: nowMs - this.config.heartbeatMs * 3,
      ...node.cdb!.syncState(),
    })
    // The unsafe fault "no-fence" takes the fence away: the host believes it always has a primary.
    const authority = this.options.faults.includes("no-fence")
      ? { leaderContactMs: nowMs, fenced: false }
      : { leaderContactMs: node.monitor!.leaderContact(nowMs), fenced: node.fenced, caughtUp }
    for (const output of node.hypervisor!.handle(input, nowMs, authority))
      this.carryOutHypervisor(node, output)
    const retry = node.pendingWrites.due(nowMs)
    if (retry.length > 0) this.serviceWrite(node, retry)
  }

  private carryOutHypervisor(node: SimNode, output: HypervisorOutput): undefined {
    switch (output._tag) {
      case "Call": {
        const result = node.vmm.execute(output.domain, output.call, this.nowUs)
        this.driverCalls++
        this.trace.number(9)
        this.trace.number(this.nowUs)
        this.trace.number(node.index)
        this.trace.text(output.domain)
        this.trace.text(output.call._tag)
        this.trace.text(result.error?.reason ?? "ok")
        if (result.error === undefined && (result.observed === "running" || result.observed === "paused"))
          this.systemActive(output.system, node)
        this.queue.push(this.nowUs + Math.max(1_000, result.latencyUs), {
          type: "hv-input",
          node: node.index,
          incarnation: node.incarnation,
          input: callDone(output.requestId, result),
        })
        return
      }
      case "Observe":
        this.queue.push(this.nowUs + 1_000, {
          type: "hv-input",
          node: node.index,
          incarnation: node.incarnation,
          input: "observe",
        })
        return
      case "WriteMeta":
        return this.serviceWrite(node, [
          { op: "meta", kind: "system", id: output.system, value: encodeValue(output.meta) },
        ])
      case "WriteTask":
        return this.serviceWrite(node, [
          { op: "put", kind: "task", id: output.id, value: encodeValue(output.spec) },
        ])
      case "WriteSpec":
        return this.serviceWrite(node, [
          { op: "put", kind: "system", id: output.system, value: encodeValue(output.spec) },
        ])
      case "ArmDeadline":
        return this.arm(node, output.atMs, "hv-deadline")
    }
  }

  /** Writes through the node's CDB like any client; the durability checker holds these too. */
  private writeObjects(node: SimNode, writes: ReadonlyArray<ServiceWrite>): boolean {
    const ops: Array<WriteOp> = writes.map((write) => ({ requestId: ++node.requestId, ...write }))
    const outputs = this.step(node, { _tag: "Write", writes: ops })
    this.recordAcknowledged(node, ops, outputs)
    const acknowledged = new Set(
      outputs.flatMap((output) => (output._tag === "Acknowledged" ? output.requestIds : [])),
    )
    return ops.every((op) => acknowledged.has(op.requestId))
  }

  /** The hypervisor's own writes: what the node refuses is held and written again (core/hypervisor/pending.ts). */
  private serviceWrite(node: SimNode, writes: ReadonlyArray<ServiceWrite>): undefined {
    if (this.writeObjects(node, writes)) node.pendingWrites.accepted(writes)
    else node.pendingWrites.refused(writes, this.localMs(node))
    return undefined
  }

  /**
   * The safety checker: a domain just became active (running or paused) on `node`; no other host
   * may have that system's domain active (running, paused or shutting down) at the same instant.
   * Also ends an outage: the HA system of a crashed node runs again.
   */
  private systemActive(system: string, node: SimNode): void {
    const domain = domainNameOf(system)
    for (const other of this.nodes) {
      const state = other.vmm.stateOf(domain)
      if (other !== node && (state === "running" || state === "paused" || state === "shutting-down"))
        this.violate("vm", `system ${system} is active on ${node.id} while ${other.id} has it ${state}`)
    }
    const outage = this.outages.get(system)
    if (outage === undefined) return
    this.outages.delete(system)
    if (outage.from === node.id) this.restartedInPlace++
    else this.haFailovers.push(Math.floor((this.nowUs - outage.atUs) / 1000))
  }

  /** The host went down with the node: its domains are gone; its HA systems are now in an outage. */
  private hostCrashed(node: SimNode): void {
    for (const { name, state } of node.vmm.list()) {
      if (state !== "running" && state !== "paused") continue
      const system = name.slice("acp-".length)
      const spec = decodeValue<SystemSpecValue>(node.cdb?.get("system", system)?.value)
      if (spec?.ha === true && !this.healed)
        this.outages.set(system, { system, from: node.id, atUs: this.nowUs, sinceUs: this.nowUs })
    }
    node.vmm.hostCrashed()
    node.hypervisor = null
    node.hypervisorArmedUs = Number.MAX_SAFE_INTEGER
  }

  /** The scheduler's view of the hosts, as `node` knows them (membership from its CDB). */
  private capacities(node: SimNode): ReadonlyArray<NodeCapacity> {
    return this.members.map((member) => ({
      id: member.id,
      alive: member.id === node.id || node.memberView.get(member.id)?.state === "alive",
      fenced: member.id === node.id && node.fenced,
      roles: [],
      cpuCount: hostCpus,
      memoryMiB: hostMemoryMiB,
      cpuUsageHundredths: 0,
    }))
  }

  /** The primary's HA round (every 250 ms, as on a real node): moves and releases, written to its CDB. */
  private highAvailability(node: SimNode): void {
    const monitor = node.monitor
    const cdb = node.cdb
    if (monitor === null || cdb === null || node.hypervisor === null) return
    const nowMs = this.localMs(node)
    if (!monitor.isPrimary(nowMs)) return
    const sync = cdb.syncState()
    if (!storeInSync({ self: node.id, members: this.voters, sinceMs: monitor.primarySince, ...sync })) return
    const actions = haActions({
      nowMs,
      self: node.id,
      primarySinceMs: monitor.primarySince,
      systems: this.viewOf(node).systems,
      metaOf: (system, owner) =>
        decodeValue<SystemMetaValue>(cdb.metaOf("system", system).find((slot) => slot.node === owner)?.value),
      lastHeardMs: (peer) => monitor.lastHeard(peer),
      nodes: this.capacities(node),
      timings: {
        haFenceMs: defaultHypervisorTimings.haFenceMs,
        quorumWindowMs: this.electionTimings.quorumWindowMs,
        marginMs: 500,
      },
      policy: defaultSchedulerPolicy,
    })
    for (const action of actions) {
      if (action._tag === "Stranded") continue
      this.haMoves++
      this.trace.number(10)
      this.trace.number(this.nowUs)
      this.trace.text(action.system)
      this.writeObjects(node, [
        { op: "put", kind: "system", id: action.system, value: encodeValue(action.spec) },
      ])
    }
  }

  /** The operator creates the systems through a live node, placed by the scheduler; most are HA. */
  private createSystems(): void {
    const node = this.primaryNow() ?? this.nodes.find((candidate) => candidate.cdb !== null)
    if (node === undefined || node.cdb === null) return
    const nowMs = this.localMs(node)
    const existing = this.viewOf(node).systems
    const placed = [...placedSystems(existing)]
    const writes: Array<{ op: "put"; kind: string; id: string; value: Uint8Array }> = []
    for (let index = 0; index < this.systems; index++) {
      const id = `vm${index + 1}`
      const spec: SystemSpecValue = {
        name: id as SystemSpecValue["name"],
        cpus: 1 + this.operator.below(2),
        memoryMiB: this.operator.pick([512, 1024, 2048]),
        disks: [],
        nics: [],
        ha: index % 4 !== 3,
        desired: "running",
        placement: { affinity: [], antiAffinity: [] },
      }
      const decision = place(requestFor(id, spec), this.capacities(node), placed, defaultSchedulerPolicy)
      if (decision._tag === "Unplaceable") continue
      const owner = decision.node as NonNullable<SystemSpecValue["node"]>
      placed.push({ ...requestFor(id, spec), node: decision.node })
      this.created.push({ system: id, node: decision.node, ha: spec.ha })
      writes.push(
        { op: "put", kind: "system", id, value: encodeValue({ ...spec, node: owner }) },
        {
          op: "put",
          kind: "task",
          id: `create-${id}`,
          value: encodeValue(newTask("create", id, owner, {}, nowMs)),
        },
      )
    }
    this.writeObjects(node, writes)
    this.queue.push(this.nowUs + 1_000_000 + this.operator.below(3_000_000), { type: "operate" })
  }

  /** Every few seconds of the faulty phase, an operation on a system through a random live node. */
  private operate(): void {
    if (this.healed) return
    this.queue.push(this.nowUs + 1_000_000 + this.operator.below(3_000_000), { type: "operate" })
    const live = this.nodes.filter((node) => node.cdb !== null)
    if (live.length === 0) return
    const node = this.operator.pick(live)
    const system = `vm${1 + this.operator.below(this.systems)}`
    const operation = this.operator.pick([
      "start",
      "start",
      "start",
      "stop",
      "suspend",
      "resume",
      "resume",
      "reboot",
      "migrate",
      "migrate",
    ])
    const to = this.operator.pick(this.members).id
    const plan = planOperation({
      system,
      spec: decodeValue<SystemSpecValue>(node.cdb!.get("system", system)?.value),
      operation,
      parameters: operation === "migrate" ? { to } : {},
      nowMs: this.localMs(node),
      nodes: this.members.map((member) => member.id),
      live: liveNodes(this.capacities(node)),
    })
    if (!("task" in plan)) return
    this.operations++
    const id = `op-${this.operations}`
    this.writeObjects(node, [
      ...(plan.system === undefined || plan.system === null
        ? []
        : [{ op: "put" as const, kind: "system", id: system, value: encodeValue(plan.system) }]),
      { op: "put", kind: "task", id, value: encodeValue(plan.task) },
    ])
  }

  /**
   * The HA liveness checker: an HA system of a crashed node runs again (anywhere) within
   * `haBoundMs` of time during which a majority was up and connected and the network kept its
   * promises. A system the operator has since stopped, or whose starts keep failing (the
   * hypervisor gives up after `maxStartFailures`), is excused.
   */
  private checkHaLiveness(): void {
    if (this.outages.size === 0) return
    const connected = this.majorityConnected()
    const rates = this.scenario.schedule.rates
    const lossless = this.healed || (rates.lossPermille === 0 && rates.jitterUs <= 10_000)
    for (const outage of [...this.outages.values()]) {
      if (!connected || !lossless) {
        outage.sinceUs = this.nowUs
        continue
      }
      if (this.nowUs - outage.sinceUs <= haBoundMs * 1000) continue
      this.outages.delete(outage.system)
      const spec = this.latestSpec(outage.system)
      if (spec === undefined || !spec.ha || spec.desired === "stopped") continue
      const owner = this.nodes.find((node) => node.id === spec.node)
      if (owner !== undefined && owner.vmm.startFailuresOf(domainNameOf(outage.system)) > 0) continue
      this.violate(
        "ha",
        `HA system ${outage.system} of ${outage.from} (crashed at ${Math.floor(outage.atUs / 1000)} ms) has not run again for ${haBoundMs} ms with a majority connected; its spec places it on ${spec.node ?? "no node"}`,
      )
    }
  }

  /** Ground truth: the newest spec of a system any live node holds. */
  private latestSpec(system: string): SystemSpecValue | undefined {
    let best: { version: Version; value: Uint8Array | null } | undefined
    for (const node of this.nodes) {
      const entry = node.cdb?.get("system", system)
      if (entry !== undefined && (best === undefined || compareVersions(entry.version, best.version) > 0))
        best = entry
    }
    return decodeValue<SystemSpecValue>(best?.value)
  }

  /**
   * Convergence for the hypervisor: every system as its spec says, on its node only (a system
   * whose starts all failed is excused: the hypervisor gave up on it, with a reason in its meta).
   */
  private unsettledSystems(cdb: CdbNode): ReadonlyArray<string> {
    const unsettled: Array<string> = []
    const known = new Set<string>()
    for (const entry of cdb.entriesOf("system")) {
      const spec = decodeValue<SystemSpecValue>(entry.value)
      if (spec === undefined) continue
      known.add(domainNameOf(entry.id))
      const domain = domainNameOf(entry.id)
      const active = this.nodes.flatMap((node) => {
        const state = node.vmm.stateOf(domain)
        return state === "running" || state === "paused" || state === "shutting-down"
          ? [`${node.id}:${state}`]
          : []
      })
      const expected = spec.desired === "stopped" ? [] : [`${spec.node}:${spec.desired}`]
      const owner = this.nodes.find((node) => node.id === spec.node)
      const gaveUp =
        owner !== undefined &&
        owner.vmm.startFailuresOf(domain) >= defaultHypervisorTimings.maxStartFailures &&
        active.length === 0
      if (!gaveUp && active.join(",") !== expected.join(","))
        unsettled.push(
          `system ${entry.id}: wanted ${expected.join(",") || "stopped"}, is ${active.join(",") || "stopped"}`,
        )
    }
    for (const node of this.nodes)
      for (const { name, state } of node.vmm.list())
        if (!known.has(name) && (state === "running" || state === "paused" || state === "shutting-down"))
          unsettled.push(`orphan ${name} on ${node.id}: ${state}`)
    return unsettled
  }

  // ---- the workload ------------------------------------------------------------------------

  private scheduleWrite(node: SimNode): void {
    const perNodeRate = this.options.writesPerSec / this.options.nodes
    const meanUs = Math.max(1, Math.floor(1_000_000 / perNodeRate))
    const atUs = this.nowUs + 1 + this.load.below(meanUs * 2)
    if (atUs < this.healAtUs) this.queue.push(atUs, { type: "write", node: node.index })
  }

  private write(node: SimNode): void {
    this.scheduleWrite(node)
    if (node.cdb === null) return
    const workload = this.scenario.workload
    const burst = workload.burstSize > 0 && this.load.chance(5) ? workload.burstSize : 1
    const writes: Array<WriteOp> = []
    for (let index = 0; index < burst; index++) {
      const hot = this.load.chance(workload.hotPermille)
      const id = hot ? `hot-${this.load.below(8)}` : `${node.id}-${this.load.below(workload.keySpace)}`
      const roll = this.load.below(1000)
      const op =
        roll < workload.deletePermille
          ? "delete"
          : roll < workload.deletePermille + workload.metaPermille
            ? "meta"
            : "put"
      const value = op === "delete" ? null : this.value(workload.valueBytes)
      writes.push({ requestId: ++node.requestId, op, kind: op === "meta" ? "service" : "record", id, value })
    }
    this.written += writes.length
    const outputs = this.step(node, { _tag: "Write", writes })
    this.recordAcknowledged(node, writes, outputs)
    if (workload.statsStorm && this.load.chance(200)) {
      const values = Array.from({ length: 40 }, (_, index) => ({
        kind: "record",
        id: `${node.id}-${index}`,
        value: this.value(24),
      }))
      this.step(node, { _tag: "SetStats", values })
    }
  }

  private value(length: number): Uint8Array {
    const bytes = new Uint8Array(length)
    for (let index = 0; index < length; index++) bytes[index] = this.load.below(256)
    return bytes
  }

  /** Pairs each acknowledged request with the change it became, for the durability checker. */
  private recordAcknowledged(
    node: SimNode,
    writes: ReadonlyArray<WriteOp>,
    outputs: ReadonlyArray<Output>,
  ): void {
    const own: Array<Change> = []
    const acknowledged = new Set<number>()
    for (const output of outputs) {
      if (output._tag === "Applied")
        for (const change of output.changes) if (change.origin === node.id) own.push(change)
      if (output._tag === "Acknowledged") for (const id of output.requestIds) acknowledged.add(id)
    }
    const accepted = writes.filter((write) => acknowledged.has(write.requestId))
    if (accepted.length !== own.length) {
      this.violate(
        "durability",
        `${node.id} acknowledged ${accepted.length} writes but applied ${own.length}`,
      )
      return
    }
    accepted.forEach((write, index) => {
      const change = own[index]!
      if (write.op === "meta") return
      this.acknowledged.push({
        key: entryKey(write.kind, write.id),
        version: { ms: change.ms, counter: change.counter, origin: change.origin },
        node: node.id,
        atMs: Math.floor(this.nowUs / 1000),
      })
    })
  }

  // ---- checkers ----------------------------------------------------------------------------

  private violate(checker: string, message: string): void {
    this.violations.push({ checker, message, atMs: Math.floor(this.nowUs / 1000) })
  }

  /** Per-origin order and no duplicate application, on every change every node applies. */
  private checkApplied(node: SimNode, changes: ReadonlyArray<Change>): void {
    for (const change of changes) {
      const last = node.lastApplied.get(change.origin) ?? 0
      if (change.seq <= last)
        this.violate("duplicate", `${node.id} applied ${change.origin}#${change.seq} again (had #${last})`)
      else if (change.seq !== last + 1)
        this.violate("order", `${node.id} applied ${change.origin}#${change.seq} after #${last}`)
      node.lastApplied.set(change.origin, change.seq)
      if (this.refused.size > 0 && change.op === "put" && this.refused.has(changeIdentity(change)))
        this.violate(
          "refused",
          `${node.id} applied ${change.kind}/${change.id} as ${change.origin}@${change.ms}.${change.counter}, a write ${change.origin}'s store refused`,
        )
      if (this.options.canary && change.origin !== node.id) {
        this.violate(
          "canary",
          `${node.id} applied a change from ${change.origin} (the canary says no node ever does)`,
        )
      }
    }
  }

  /** Samples the timeline and, after the heal, tests convergence. */
  private check(): void {
    if (this.systems > 0) {
      for (const node of this.nodes) node.vmm.advance(this.nowUs, checkIntervalUs)
      this.checkHaLiveness()
    }
    this.checkPrimaryLiveness()
    if (!this.healed) this.checkFencing()
    if (this.nowUs >= this.nextSampleUs) {
      this.nextSampleUs = this.nowUs + this.sampleEveryUs
      this.timeline.push({ atMs: Math.floor(this.nowUs / 1000), lag: this.lags() })
    }
    if (this.healed && this.convergedAtUs === null && this.isConverged()) {
      this.convergedAtUs = this.nowUs
      this.timeline.push({ atMs: Math.floor(this.nowUs / 1000), lag: this.lags() })
    }
  }

  private lags(): Array<number> {
    const best = new Map<string, number>()
    for (const node of this.nodes) {
      if (node.cdb === null) continue
      for (const [origin, seq] of node.cdb.vector()) best.set(origin, Math.max(best.get(origin) ?? 0, seq))
    }
    return this.nodes.map((node) => {
      if (node.cdb === null) return -1
      let lag = 0
      for (const [origin, seq] of best) lag += seq - node.cdb.appliedUpTo(origin)
      return lag
    })
  }

  private isConverged(): boolean {
    const first = this.nodes[0]!.cdb
    if (first === null) return false
    const fingerprint = first.fingerprint()
    if (!this.nodes.every((node) => node.cdb !== null && node.cdb.fingerprint() === fingerprint)) return false
    const vector = JSON.stringify(first.vector())
    if (!this.nodes.every((node) => JSON.stringify(node.cdb!.vector()) === vector)) return false
    // The monitor too: one primary with a lease, nobody fenced, and every alarm cleared.
    return (
      this.primaryNow() !== undefined &&
      this.nodes.every((node) => !node.fenced) &&
      this.openAlarms(first).length === 0 &&
      (this.systems === 0 || this.unsettledSystems(first).length === 0)
    )
  }

  /** After convergence: every live node holds identical entries, and every acknowledged write survived. */
  private finalChecks(): void {
    const stores = this.nodes.map((node) => node.cdb!.allEntries())
    const reference = stores[0]!
    stores.forEach((store, index) => {
      if (store.length !== reference.length) {
        this.violate(
          "convergence",
          `${nodeName(index)} holds ${store.length} entries, ${nodeName(0)} holds ${reference.length}`,
        )
        return
      }
      for (let position = 0; position < store.length; position++) {
        const [key, entry] = store[position]!
        const [referenceKey, referenceEntry] = reference[position]!
        if (key !== referenceKey || compareVersions(entry.version, referenceEntry.version) !== 0) {
          this.violate(
            "convergence",
            `${nodeName(index)} and ${nodeName(0)} differ at ${key.replace("\u0000", "/")}`,
          )
          return
        }
      }
    })
    const latest = new Map<string, AcknowledgedWrite>()
    for (const write of this.acknowledged) {
      const previous = latest.get(write.key)
      if (previous === undefined || compareVersions(write.version, previous.version) > 0)
        latest.set(write.key, write)
    }
    const entries = new Map(reference)
    for (const [key, write] of latest) {
      const entry = entries.get(key)
      if (entry === undefined || compareVersions(entry.version, write.version) < 0) {
        this.violate(
          "durability",
          `the write to ${key.replace("\u0000", "/")} acknowledged by ${write.node} at ${write.atMs} ms is lost: the cluster holds ${entry === undefined ? "nothing" : `${entry.version.origin}@${entry.version.ms}.${entry.version.counter}`}`,
        )
      }
    }
  }

  /** The result of a run that threw: what was seen so far, and the crash. */
  crashed(message: string): SimResult {
    this.violate("crash", message)
    this.convergedAtUs = null
    return { ...this.result(), converged: false }
  }

  private result(): SimResult {
    const converged =
      this.convergedAtUs !== null && !this.violations.some((violation) => violation.checker === "crash")
    if (converged) this.finalChecks()
    const pending: Array<string> = []
    if (!converged) {
      this.violate("liveness", `not converged ${this.options.livenessBoundMs} ms after the heal`)
      for (const node of this.nodes) {
        if (node.cdb === null) pending.push(`${node.id}: down`)
        else for (const gap of node.cdb.gapsReport()) pending.push(`${node.id} lacks ${gap}`)
      }
      const fingerprints = this.nodes.map((node) => `${node.id}=${node.cdb?.fingerprint() ?? "down"}`)
      pending.push(`fingerprints: ${fingerprints.join(" ")}`)
      const primary = this.primaryNow()
      pending.push(
        primary === undefined
          ? "no primary holds a lease"
          : `primary ${primary.id} (term ${primary.leaseTerm})`,
      )
      for (const node of this.nodes) if (node.fenced) pending.push(`${node.id} is fenced`)
      const first = this.nodes[0]!.cdb
      if (first !== null) {
        for (const alarm of this.openAlarms(first)) pending.push(`alarm ${alarm.id} is ${alarm.state}`)
        if (this.systems > 0) pending.push(...this.unsettledSystems(first))
      }
    }
    const counters = this.nodes.map((node) => node.cdb?.counters)
    const primaries = [
      ...this.primaries,
      ...this.nodes
        .filter((node) => node.leaseFromUs > 0 && node.leaseUntilUs > node.leaseFromUs)
        .map((node) => ({
          node: node.id,
          term: node.leaseTerm,
          fromMs: Math.floor(node.leaseFromUs / 1000),
          toMs: Math.floor(Math.min(node.leaseUntilUs, this.nowUs) / 1000),
        })),
    ].sort((left, right) => left.fromMs - right.fromMs)
    return {
      primaryChanges: this.primaryChanges,
      failoverSamplesMs: this.failovers,
      failoverMs: percentiles(this.failovers),
      hypervisor: {
        systems: this.systems,
        created: this.created,
        driverCalls: this.driverCalls,
        haActions: this.haMoves,
        failoverSamplesMs: this.haFailovers,
        failoverMs: percentiles(this.haFailovers),
        restartedInPlace: this.restartedInPlace,
      },
      alarmsRaised: this.alarmsRaised,
      falseAlarms: this.falseAlarms,
      fences: this.fences,
      primaries,
      health: this.health(),
      seed: this.options.seed,
      nodes: this.options.nodes,
      domains: this.options.domains,
      virtualMs: Math.floor(this.nowUs / 1000),
      events: this.events,
      datagramsDelivered: this.delivered,
      datagramsDropped: this.dropped,
      changesWritten: this.written,
      changesApplied: counters.reduce((sum, counter) => sum + (counter?.changesApplied ?? 0), 0),
      acknowledgedWrites: this.acknowledged.length,
      commitsRefused: this.commitsRefused,
      replays: { sent: this.replaysSent, dropped: this.replaysDropped },
      acknowledgedByNode: this.nodes.map(
        (node) => this.acknowledged.filter((write) => write.node === node.id).length,
      ),
      snapshotsInstalled: counters.reduce((sum, counter) => sum + (counter?.snapshotsInstalled ?? 0), 0),
      nacksSent: counters.reduce((sum, counter) => sum + (counter?.nacksSent ?? 0), 0),
      traceHash: this.trace.hex(),
      converged,
      convergenceMs: converged ? Math.floor((this.convergedAtUs! - this.healAtUs) / 1000) : null,
      violations: this.violations,
      pending,
      replay: replayCommand(this.options),
      scenario: this.scenario,
      timeline: this.timeline,
      faultWindows: this.scenario.schedule.events,
      healAtMs: Math.floor(this.healAtUs / 1000),
    }
  }
}

/** Runs one simulation; a crash of the simulator itself (a failed assertion) is reported as a `crash` violation. */
export const simulate = (options: SimOptions): SimResult => {
  const world = new World(options)
  try {
    return world.run()
  } catch (error) {
    return world.crashed(error instanceof Error ? (error.stack ?? error.message) : String(error))
  }
}

export { type Percentiles, percentiles } from "../core/percentile.ts"
