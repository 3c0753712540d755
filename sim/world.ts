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
import { type CdbConfig, defaultCdbConfig, type Member, type WriteOp } from "../core/cdb/node.ts"
import {
  defaultHypervisorTimings,
  domainNameOf,
  type SystemSpecValue,
} from "../core/hypervisor/hypervisor.ts"
import { newTask, planOperation } from "../core/hypervisor/requests.ts"
import {
  defaultSchedulerPolicy,
  liveNodes,
  place,
  placedSystems,
  requestFor,
} from "../core/hypervisor/scheduler.ts"
import { hypervisorService } from "../core/hypervisor/service.ts"
import { decodeValue, encodeValue } from "../core/hypervisor/values.ts"
import { systemsIn } from "../core/hypervisor/view.ts"
import type { AlarmChange } from "../core/monitor/alarms.ts"
import {
  type DurableVote,
  defaultElectionTimings,
  fenceBoundMs,
  type Message,
} from "../core/monitor/election.ts"
import type { Health } from "../core/monitor/health.ts"
import {
  defaultNodeTimings,
  NodeCore,
  type Output,
  type ServiceEffect,
  type Step,
  serviceFailingRule,
} from "../core/node/node.ts"
import type { ServicePorts } from "../core/node/service.ts"
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
  | {
      readonly type: "service-input"
      readonly node: number
      readonly incarnation: number
      /** The service run the answer is for (the composition drops one for an earlier run). */
      readonly run: number
      /** A driver call's answer, or "observe": the VMM's list of domains, read when this fires. */
      readonly input: ServicePorts["hypervisor"]["input"] | "observe"
    }
  | { readonly type: "stats"; readonly node: number; readonly incarnation: number }
  | { readonly type: "service-alarm-check"; readonly fault: Extract<FaultEvent, { kind: "service-failure" }> }
  | { readonly type: "create-systems" }
  | { readonly type: "operate" }

interface SimNode {
  readonly id: string
  readonly index: number
  readonly domain: string
  readonly driftPpm: number
  /** The node's composition (the same object a real node drives); null while the node is down. */
  core: NodeCore | null
  /** What its store holds: the CDB's durable image and the election's vote. */
  image: DurableImage
  vote: DurableVote
  incarnation: number
  /** The one timer, armed at the composition's next deadline (global µs). */
  armedUs: number
  /** Tickets of the workload's and the operator's writes. */
  ticket: number
  /** Per origin, the last sequence number this node applied (order and duplicate checkers). */
  lastApplied: Map<string, number>
  /** Until when (global µs) this node holds a primary lease, as the checker sees it. */
  leaseUntilUs: number
  leaseTerm: number
  leaseFromUs: number
  fenced: boolean
  /** Since when (global µs) the network has cut this node off from a majority, if it has. */
  cutOffSinceUs: number | null
  /** When (global µs) this node was last up and connected both ways with each node, by index. */
  lastConnectedUs: Array<number>
  /** The host's hypervisor (outlives the node process: a crash takes its domains, though). */
  readonly vmm: SimVmm
  /** Numbers the datagrams this node seals (with its incarnation: never confusable across runs). */
  sealCounter: number
  /** The anti-replay window of this node's transport (a process's: new at every start). */
  replayWindow: ReplayWindow
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
/** A change as the refused-writes checker knows it: key, version and a digest of its value, so a reused version is no match. */
const changeIdentity = (change: Change): string => {
  let digest = 0x811c9dc5
  const value = change.value ?? new Uint8Array()
  for (let index = 0; index < value.length; index++) digest = Math.imul(digest ^ value[index]!, 0x01000193)
  return `${change.kind}/${change.id}|${change.origin}@${change.ms}.${change.counter}|${value.length}.${digest >>> 0}`
}

/** Fault "replay": the adversary's memory, and how much it plays back how often. */
const capturedMax = 64
const replaysPerRound = 16
const replayEveryUs = 50_000
/** As the real transport: a restarted node takes a sender's datagrams sealed from its own start less this. */
const clockOffsetToleratedMs = 500
const checkIntervalUs = 20_000
/** Fault "service-failure": how long after the alarm's threshold the primary must have raised it. */
const serviceAlarmSlackMs = 3_000
/** How long a connected, stable majority may go without a primary (the issue's failover goal). */
export const electionBoundMs = 5_000
/** How long an HA system of a crashed node may stay down while a majority is connected (the hypervisor issue's goal). */
export const haBoundMs = 15_000
/** Each simulated host's capacity, as its statistics report it (published at every start). */
const hostCpus = 16
const statsEveryUs = 2_000_000
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
  /** Fault "service-failure": windows in which the service-alarm checker could and did look. */
  private serviceAlarmChecks = 0
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
      core: null,
      image: emptyImage(),
      vote: { term: 0, votedFor: null },
      incarnation: 0,
      armedUs: Number.MAX_SAFE_INTEGER,
      ticket: 0,
      lastApplied: new Map(),
      leaseUntilUs: 0,
      leaseTerm: 0,
      leaseFromUs: 0,
      fenced: false,
      cutOffSinceUs: null,
      lastConnectedUs: Array.from({ length: options.nodes }, () => 0),
      vmm: new SimVmm(guests.fork(member.id), this.scenario.guests),
      sealCounter: 0,
      replayWindow: new ReplayWindow(),
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
        if (node.core === null || !this.unsealed(node, event.seal)) return
        this.trace.number(1)
        this.trace.number(this.nowUs)
        this.trace.number(event.to)
        this.delivered++
        this.step(node, { _tag: "Datagram", bytes: event.bytes, via: event.via, from: event.from })
        return
      }
      case "deadline": {
        const node = this.nodes[event.node]!
        if (node.core === null || node.armedUs !== this.nowUs) return
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
        if (node.core === null || !this.unsealed(node, event.seal)) return
        this.trace.number(8)
        this.trace.number(this.nowUs)
        this.trace.number(event.to)
        this.trace.text(event.message._tag)
        this.step(node, { _tag: "MonitorMessage", message: event.message })
        return
      }
      case "service-input": {
        const node = this.nodes[event.node]!
        if (node.core === null || node.incarnation !== event.incarnation) return
        if (node.core.serviceRun("hypervisor") !== event.run) return
        let input = event.input
        if (input === "observe") {
          node.vmm.advance(this.nowUs, 0)
          input = { _tag: "Observed", domains: node.vmm.list() }
        }
        this.step(node, { _tag: "ServiceInput", service: "hypervisor", run: event.run, input })
        return
      }
      case "stats": {
        const node = this.nodes[event.node]!
        if (node.core === null || node.incarnation !== event.incarnation) return
        this.publishStats(node)
        return
      }
      case "service-alarm-check":
        this.checkServiceAlarm(event.fault)
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
    // A new process: its quorum window (and so the fence checker's clock) starts over.
    node.cutOffSinceUs = null
    node.replayWindow = new ReplayWindow(1024, BigInt((this.localMs(node) - clockOffsetToleratedMs) * 1000))
    node.lastApplied = new Map(node.image.vector)
    node.armedUs = Number.MAX_SAFE_INTEGER
    node.fenced = false
    node.core = new NodeCore(
      {
        self: node.id,
        cdb: { ...this.config, self: node.id },
        election: { ...this.electionTimings, self: node.id, voters: this.voters },
        incarnation: node.incarnation,
        timings: defaultNodeTimings,
        ...(this.options.faults.includes("no-service-alarm") ? { ignoreServices: true } : {}),
        services:
          this.systems === 0
            ? {}
            : {
                hypervisor: hypervisorService({
                  volumeDir: "/var/lib/acp/volumes",
                  // The unsafe fault "no-fence" takes the fence away: the host believes it always has a primary.
                  withoutFence: this.options.faults.includes("no-fence"),
                }),
              },
      },
      { image: node.image, vote: node.vote },
      this.localMs(node),
    )
    this.trace.number(2)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
    this.step(node, { _tag: "DeadlineReached" })
    if (this.systems > 0) {
      // As a real node: its supervisor reports the hypervisor running (or backing off, fault
      // "service-failure"), and the host publishes its capacity.
      if (this.serviceDown(node))
        this.step(node, {
          _tag: "ServiceState",
          name: "hypervisor",
          state: "backing-off",
          restarts: 1,
          lastError: "cannot load libvirt.so.0 (simulated)",
        })
      else this.serviceRuns(node)
      this.publishStats(node)
    }
  }

  private serviceRuns(node: SimNode): void {
    this.step(node, { _tag: "ServiceState", name: "hypervisor", state: "running", restarts: 0 })
  }

  /** The host's statistics, every 2 s as a real node's hypervisor service publishes them. */
  private publishStats(node: SimNode): void {
    const stats = { cpuCount: hostCpus, memoryTotalBytes: hostMemoryMiB * 1024 * 1024, cpuUsage: 0 }
    this.step(node, { _tag: "SetStats", values: [{ kind: "node", id: node.id, value: encodeValue(stats) }] })
    this.queue.push(this.nowUs + statsEveryUs, {
      type: "stats",
      node: node.index,
      incarnation: node.incarnation,
    })
  }

  private crash(node: SimNode, lose: number): void {
    if (node.core === null) return
    this.primaryGone(node)
    this.endLease(node)
    if (this.systems > 0) this.hostCrashed(node)
    node.core = null
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

  /** One input into the node's composition, and its step carried out as the real driver does. */
  private step(node: SimNode, input: Parameters<NodeCore["handle"]>[0]): void {
    this.carry(node, node.core!.handle(input, this.localMs(node)))
  }

  /**
   * As the real driver (adapters/node/node.ts): the step's commit first; if the store refuses it
   * (fault "disk-full"), nothing of its outputs is carried out and the composition goes back to
   * what is durable. The writes it refused are remembered: none may ever become visible.
   */
  private carry(node: SimNode, step: Step): void {
    const core = node.core!
    let outputs = step.outputs
    if (step.commit !== undefined) {
      if (this.diskFull(node)) {
        this.noteRefused(node, step.outputs)
        if (!this.options.faults.includes("ignore-refused-commit")) {
          const refused = core.handle(
            {
              _tag: "CommitRefused",
              error: { reason: "disk-full", detail: "no space left on device (simulated)" },
              durable: { image: node.image, vote: node.vote },
            },
            this.localMs(node),
          )
          node.lastApplied = new Map(node.image.vector)
          for (const effect of step.effects) this.execute(node, effect)
          this.carry(node, refused)
          return
        }
        // The unsafe driver: it notes the refusal, then acknowledges and sends all the same.
      } else {
        for (const persist of step.commit.persists)
          applyPersist(node.image, persist, node.id, this.config.retainChanges)
        if (step.commit.vote !== undefined) node.vote = step.commit.vote
        outputs = [...outputs, ...core.committed()]
      }
    }
    for (const output of outputs) this.carryOut(node, output)
    for (const effect of step.effects) this.execute(node, effect)
    this.arm(node, step.deadlineMs)
  }

  /** A step whose commit the store refused: the puts it would have made visible, and the count. */
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

  private carryOut(node: SimNode, output: Output): void {
    switch (output._tag) {
      case "Applied":
        this.checkApplied(node, output.changes)
        return
      case "SnapshotInstalled":
        for (const [origin, seq] of output.vector) {
          if (seq < (node.lastApplied.get(origin) ?? 0)) {
            this.violate("order", `${node.id} installed a snapshot that moves ${origin} back to #${seq}`)
          }
          node.lastApplied.set(origin, seq)
        }
        return
      case "Rejected":
        this.violate(
          "decode",
          `${node.id} rejected a datagram from a correct peer: ${output.rejection.reason}: ${output.rejection.detail}`,
        )
        return
      case "Send": {
        this.hashSend(node, output.bytes)
        const to = output.to
        if (to._tag === "Domain") {
          for (const peer of this.nodes)
            if (peer.domain === node.domain && peer !== node)
              this.transmit(node, peer, output.bytes, "domain", l2DelayUs)
          return
        }
        const peer = this.byId.get(to.node)
        if (peer === undefined) return
        if (to._tag === "Relay") this.transmit(node, peer, output.bytes, "relay", l3DelayUs)
        else if (peer.domain === node.domain) this.transmit(node, peer, output.bytes, "domain", l2DelayUs)
        return
      }
      case "SendMessage":
        if (output.to === "all") {
          for (const peer of this.nodes) if (peer !== node) this.transmitMonitor(node, peer, output.message)
        } else {
          const peer = this.byId.get(output.to)
          if (peer !== undefined) this.transmitMonitor(node, peer, output.message)
        }
        return
      case "Written":
        this.recordAcknowledged(node, output.writes, output.changes)
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
      case "Alarms":
        this.alarmsWritten(node, output.changes)
        return
      case "ServiceEvent":
        if (output.event.kind !== "ha-move") return
        this.haMoves++
        this.trace.number(10)
        this.trace.number(this.nowUs)
        this.trace.text(String(output.event.detail.system))
        return
      case "WriteRefused":
      case "MemberChanged":
      case "StoreFailing":
      case "StoreRecovered":
        return
    }
  }

  /** Carries out a service's effect through the simulated VMM; its answer comes back as an event. */
  private execute(node: SimNode, { run, effect }: ServiceEffect): void {
    if (effect._tag === "Observe") {
      this.queue.push(this.nowUs + 1_000, {
        type: "service-input",
        node: node.index,
        incarnation: node.incarnation,
        run,
        input: "observe",
      })
      return
    }
    const result = node.vmm.execute(effect.domain, effect.call, this.nowUs)
    this.driverCalls++
    this.trace.number(9)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
    this.trace.text(effect.domain)
    this.trace.text(effect.call._tag)
    this.trace.text(result.error?.reason ?? "ok")
    if (result.error === undefined && (result.observed === "running" || result.observed === "paused"))
      this.systemActive(effect.system, node)
    this.queue.push(this.nowUs + Math.max(1_000, result.latencyUs), {
      type: "service-input",
      node: node.index,
      incarnation: node.incarnation,
      run,
      input: callDone(effect.requestId, result),
    })
  }

  /** Arms the node's one timer at the composition's next deadline (its local ms), keeping only the earliest. */
  private arm(node: SimNode, atMs: number): void {
    if (!Number.isFinite(atMs)) return
    const atUs = Math.max(this.nowUs + 1, this.globalUs(node, atMs))
    if (atUs >= node.armedUs) return
    node.armedUs = atUs
    this.queue.push(atUs, { type: "deadline", node: node.index })
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
        case "service-failure":
          break
      }
    }
    return false
  }

  /** Whether `node`'s hypervisor service cannot start now (fault "service-failure"). */
  private serviceDown(node: SimNode): boolean {
    for (const fault of this.active)
      if (fault.kind === "service-failure" && fault.node === node.index) return true
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
    if (fault.kind === "service-failure") {
      // The host restarts; its node comes back with a hypervisor service that cannot start.
      const node = this.nodes[fault.node]!
      if (node.core === null) return
      this.crash(node, 0)
      this.start(node)
      const checkAtMs = fault.atMs + serviceFailingRule.raiseAfterMs + serviceAlarmSlackMs
      if (checkAtMs < fault.atMs + fault.durationMs)
        this.queue.push(checkAtMs * 1000, { type: "service-alarm-check", fault })
      return
    }
    for (const node of this.nodes)
      if (node.core !== null && !this.reachesMajority(node)) this.primaryGone(node)
  }

  /**
   * The service-alarm checker: a hypervisor service that has been failing for the alarm's
   * threshold (and a slack for its state to reach the primary) is alarmed by a primary that has
   * held office throughout, hears the node over a network that keeps its promises, and whose
   * store and the node's took every commit in the window.
   */
  private checkServiceAlarm(fault: Extract<FaultEvent, { kind: "service-failure" }>): void {
    const node = this.nodes[fault.node]!
    const primary = this.primaryNow()
    const rates = this.scenario.schedule.rates
    const windowFromMs = fault.atMs
    const overlapsDiskFull = (index: number) =>
      this.scenario.schedule.events.some(
        (other) =>
          other.kind === "disk-full" &&
          other.node === index &&
          other.atMs < this.nowUs / 1000 &&
          other.atMs + other.durationMs > windowFromMs,
      )
    if (
      this.healed ||
      node.core === null ||
      primary === undefined ||
      primary === node ||
      primary.leaseFromUs > windowFromMs * 1000 ||
      rates.lossPermille > 0 ||
      rates.jitterUs > 10_000 ||
      this.scenario.schedule.events.some(
        (other) =>
          (other.kind === "partition" || other.kind === "asymmetric" || other.kind === "flapping") &&
          other.atMs < this.nowUs / 1000 &&
          other.atMs + other.durationMs > windowFromMs,
      ) ||
      overlapsDiskFull(node.index) ||
      overlapsDiskFull(primary.index)
    )
      return
    this.serviceAlarmChecks++
    const id = `service-failing.${node.id}.hypervisor`
    if (!primary.core!.openAlarms().some((alarm) => alarm.id === id))
      this.violate(
        "service-alarm",
        `${node.id}'s hypervisor has failed since ${fault.atMs} ms, yet primary ${primary.id} has raised no ${id}`,
      )
    const reason = `hypervisor on ${node.id} backing-off`
    if (
      !primary
        .core!.health(this.localMs(primary))
        .cluster.reasons.some((entry) => entry.reason.startsWith(reason))
    )
      this.violate("service-alarm", `${primary.id}'s health does not say "${reason}"`)
  }

  private faultEnd(fault: FaultEvent): void {
    if (this.healed) return
    this.active.delete(fault)
    if (fault.kind === "service-failure") {
      const node = this.nodes[fault.node]!
      if (node.core !== null && !this.serviceDown(node)) this.serviceRuns(node)
      return
    }
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
      if (node.core === null && !stillDown) this.start(node)
    }
  }

  private heal(): void {
    this.healed = true
    const serviceDown = this.nodes.filter((node) => node.core !== null && this.serviceDown(node))
    this.active.clear()
    for (const node of serviceDown) this.serviceRuns(node)
    this.failoverFrom = null
    this.trace.number(6)
    this.trace.number(this.nowUs)
    for (const node of this.nodes) node.vmm.calm()
    for (const node of this.nodes) if (node.core === null) this.start(node)
  }

  // ---- the monitor: election, leases, fencing, alarms --------------------------------------

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
        (peer.core !== null && !this.blocked(node.index, peer.index) && !this.blocked(peer.index, node.index))
      )
        count++
    }
    return count >= Math.floor(this.voters.length / 2) + 1
  }

  /** The primary wrote alarms: it must hold a lease; a raised one about a node that is up and connected is false. */
  private alarmsWritten(node: SimNode, changes: ReadonlyArray<AlarmChange>): void {
    if (node.leaseUntilUs <= this.nowUs) {
      this.violate("alarm", `${node.id} wrote alarms without a valid lease`)
    }
    for (const change of changes) {
      if (change.record.state !== "raised") continue
      this.alarmsRaised++
      if (change.record.subject.kind !== "node") continue
      // Ground truth at the moment of raising: is the subject really down or cut off?
      const subject = this.byId.get(change.record.subject.id)
      const real =
        subject === undefined ||
        subject.core === null ||
        subject.cutOffSinceUs !== null ||
        this.blocked(subject.index, node.index) ||
        this.blocked(node.index, subject.index)
      if (!real) this.falseAlarms++
    }
  }

  /** Ground truth: is there a majority of up nodes, every pair of which can talk both ways? */
  private majorityConnected(): boolean {
    const connected = (a: SimNode, b: SimNode) =>
      !this.blocked(a.index, b.index) && !this.blocked(b.index, a.index)
    const group = this.nodes.filter((node) => node.core !== null)
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
      if (node.core === null) continue
      for (const peer of this.nodes) {
        if (
          peer !== node &&
          peer.core !== null &&
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
      if (node.core === null || recent + 1 >= majority) {
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

  private primaryNow(): SimNode | undefined {
    return this.nodes.find((node) => node.leaseUntilUs > this.nowUs)
  }

  private health(): Health | null {
    const node = this.primaryNow() ?? this.nodes.find((candidate) => candidate.core !== null)
    return node?.core?.health(this.localMs(node)) ?? null
  }

  // ---- the hypervisor: systems on simulated hosts, HA, an operator -------------------------

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
      const spec = decodeValue<SystemSpecValue>(node.core?.store.get("system", system)?.value)
      if (spec?.ha === true && !this.healed)
        this.outages.set(system, { system, from: node.id, atUs: this.nowUs, sinceUs: this.nowUs })
    }
    node.vmm.hostCrashed()
  }

  /** A client's writes through a node (the operator's, the workload's), as the API makes them. */
  private clientWrite(node: SimNode, writes: ReadonlyArray<Omit<WriteOp, "requestId">>): void {
    this.step(node, { _tag: "Write", ticket: ++node.ticket, writes })
  }

  /** The operator creates the systems through a live node, placed by the scheduler; most are HA. */
  private createSystems(): void {
    const node = this.primaryNow() ?? this.nodes.find((candidate) => candidate.core !== null)
    if (node === undefined || node.core === null) return
    const nowMs = this.localMs(node)
    const existing = systemsIn(node.core.store)
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
      const decision = place(requestFor(id, spec), node.core.capacities(), placed, defaultSchedulerPolicy)
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
    this.clientWrite(node, writes)
    this.queue.push(this.nowUs + 1_000_000 + this.operator.below(3_000_000), { type: "operate" })
  }

  /** Every few seconds of the faulty phase, an operation on a system through a random live node. */
  private operate(): void {
    if (this.healed) return
    this.queue.push(this.nowUs + 1_000_000 + this.operator.below(3_000_000), { type: "operate" })
    const live = this.nodes.filter((node) => node.core !== null)
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
      spec: decodeValue<SystemSpecValue>(node.core!.store.get("system", system)?.value),
      operation,
      parameters: operation === "migrate" ? { to } : {},
      nowMs: this.localMs(node),
      nodes: this.members.map((member) => member.id),
      live: liveNodes(node.core!.capacities()),
    })
    if (!("task" in plan)) return
    this.operations++
    const id = `op-${this.operations}`
    this.clientWrite(node, [
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
      // A node whose hypervisor cannot start is alive and heard: nothing moves its HA systems
      // (the design has no promise for it yet), so its outages do not count while it lasts.
      const from = this.byId.get(outage.from)
      if (!connected || !lossless || (from !== undefined && this.serviceDown(from))) {
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
      const entry = node.core?.store.get("system", system)
      if (entry !== undefined && (best === undefined || compareVersions(entry.version, best.version) > 0))
        best = entry
    }
    return decodeValue<SystemSpecValue>(best?.value)
  }

  /**
   * Convergence for the hypervisor: every system as its spec says, on its node only (a system
   * whose starts all failed is excused: the hypervisor gave up on it, with a reason in its meta).
   */
  private unsettledSystems(core: NodeCore): ReadonlyArray<string> {
    const unsettled: Array<string> = []
    const known = new Set<string>()
    for (const entry of core.store.list("system")) {
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
    if (node.core === null) return
    const workload = this.scenario.workload
    const burst = workload.burstSize > 0 && this.load.chance(5) ? workload.burstSize : 1
    const writes: Array<Omit<WriteOp, "requestId">> = []
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
      writes.push({ op, kind: op === "meta" ? "service" : "record", id, value })
    }
    this.written += writes.length
    this.clientWrite(node, writes)
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
    own: ReadonlyArray<Change>,
  ): void {
    if (writes.length !== own.length) {
      this.violate("durability", `${node.id} acknowledged ${writes.length} writes but applied ${own.length}`)
      return
    }
    writes.forEach((write, index) => {
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
      if (node.core === null) continue
      for (const [origin, seq] of node.core.cdbCore.vector())
        best.set(origin, Math.max(best.get(origin) ?? 0, seq))
    }
    return this.nodes.map((node) => {
      if (node.core === null) return -1
      let lag = 0
      for (const [origin, seq] of best) lag += seq - node.core.cdbCore.appliedUpTo(origin)
      return lag
    })
  }

  private isConverged(): boolean {
    const first = this.nodes[0]!.core
    if (first === null) return false
    const fingerprint = first.cdbCore.fingerprint()
    if (!this.nodes.every((node) => node.core !== null && node.core.cdbCore.fingerprint() === fingerprint))
      return false
    const vector = JSON.stringify(first.cdbCore.vector())
    if (!this.nodes.every((node) => JSON.stringify(node.core!.cdbCore.vector()) === vector)) return false
    // The monitor too: one primary with a lease, nobody fenced, and every alarm cleared.
    return (
      this.primaryNow() !== undefined &&
      this.nodes.every((node) => !node.fenced) &&
      first.openAlarms().length === 0 &&
      (this.systems === 0 || this.unsettledSystems(first).length === 0)
    )
  }

  /** After convergence: every live node holds identical entries, and every acknowledged write survived. */
  private finalChecks(): void {
    const stores = this.nodes.map((node) => node.core!.cdbCore.allEntries())
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
        if (node.core === null) pending.push(`${node.id}: down`)
        else for (const gap of node.core.cdbCore.gapsReport()) pending.push(`${node.id} lacks ${gap}`)
      }
      const fingerprints = this.nodes.map(
        (node) => `${node.id}=${node.core?.cdbCore.fingerprint() ?? "down"}`,
      )
      pending.push(`fingerprints: ${fingerprints.join(" ")}`)
      const primary = this.primaryNow()
      pending.push(
        primary === undefined
          ? "no primary holds a lease"
          : `primary ${primary.id} (term ${primary.leaseTerm})`,
      )
      for (const node of this.nodes) if (node.fenced) pending.push(`${node.id} is fenced`)
      const first = this.nodes[0]!.core
      if (first !== null) {
        for (const alarm of first.openAlarms()) pending.push(`alarm ${alarm.id} is ${alarm.state}`)
        if (this.systems > 0) pending.push(...this.unsettledSystems(first))
      }
    }
    const counters = this.nodes.map((node) => node.core?.cdbCore.counters)
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
      serviceAlarmChecks: this.serviceAlarmChecks,
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

export { type Percentiles, percentiles }
