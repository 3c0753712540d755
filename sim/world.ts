/**
 * The simulated world's event loop. N nodes (each the real node's composition, `core/node/`)
 * on simulated hosts (`host.ts`) in L2 domains joined by relays, over a network that loses,
 * duplicates, delays and reorders datagrams (`network.ts`), under a fault schedule drawn from the
 * seed (`scenario.ts`, `faults.ts`), with a workload and an operator (`workload.ts`,
 * `operator.ts`), watched by the checkers (`checkers/`). Virtual time is in microseconds; every
 * draw comes from the seed, so a seed replays byte for byte.
 *
 * Two phases, as in TigerBeetle's VOPR: safety (faults and writes on, checkers on every step),
 * then liveness (heal everything, faults and writes off; the cluster must converge within a bound).
 */
import { type CdbConfig, defaultCdbConfig } from "../core/cdb/node.ts"
import { defaultElectionTimings } from "../core/monitor/election.ts"
import { percentiles } from "../core/percentile.ts"
import { AlarmChecker } from "./checkers/alarms.ts"
import { ConvergenceChecker } from "./checkers/convergence.ts"
import { DecisionChecker } from "./checkers/decisions.ts"
import { DigestChecker } from "./checkers/digest.ts"
import { DurabilityChecker } from "./checkers/durability.ts"
import { ElectionChecker } from "./checkers/election.ts"
import { checkFencing } from "./checkers/fencing.ts"
import { ModelChecker } from "./checkers/model.ts"
import { ServiceAlarmChecker } from "./checkers/service-alarm.ts"
import { StorageChecker } from "./checkers/storage.ts"
import { StreamChecker } from "./checkers/stream.ts"
import { VmChecker } from "./checkers/vm.ts"
import type { Event, Sim } from "./events.ts"
import { Faults } from "./faults.ts"
import { Hosts, isRelay, nodeName, SimNode } from "./host.ts"
import { Network, replayEveryUs } from "./network.ts"
import { Operator } from "./operator.ts"
import { EventQueue, Prng, TraceHash } from "./prng.ts"
import type { SimResult, Violation } from "./result.ts"
import {
  drawnTopology,
  drawScenario,
  type ElectionTimings,
  type FaultEvent,
  replayCommand,
  type Scenario,
  type SimOptions,
} from "./scenario.ts"
import { SimStorage } from "./storage.ts"
import { SimVmm } from "./vmm.ts"
import { Workload } from "./workload.ts"

export { type Percentiles, percentiles } from "../core/percentile.ts"
export { electionBoundMs } from "./checkers/election.ts"
export { haBoundMs } from "./checkers/vm.ts"
export { nodeName } from "./host.ts"
export { isSafetyViolation, type SimResult, type TimelineSample, type Violation } from "./result.ts"

const checkIntervalUs = 20_000
/** How many checks apart the services' views are compared with the store (`Hosts.checkViews`). */
const viewCheckEvery = 25
/**
 * The event budget: a run may take this many events per node and virtual second (a heavy
 * workload takes about 1,300). Beyond it something amplifies (a relay forwarding forever, a
 * deadline due again at once): the run stops with a liveness failure and its replay, never a hang.
 */
export const eventsPerNodeSecond = 20_000
/**
 * The delivery budget, checked as the run goes: datagrams delivered may not exceed this many
 * per node and virtual second plus this many per node and change written (a heavy run takes
 * about 130 and 3). A relay that forwards forever is stopped within two virtual seconds, with the
 * budget named, instead of spending the whole event budget first.
 */
export const deliveriesPerNodeSecond = 5_000
export const deliveriesPerNodeChange = 64

export class World implements Sim {
  readonly options: SimOptions
  readonly scenario: Scenario
  readonly queue = new EventQueue<Event>()
  readonly trace = new TraceHash()
  readonly nodes: ReadonlyArray<SimNode>
  readonly byId: ReadonlyMap<string, SimNode>
  readonly voters: ReadonlyArray<string>
  readonly systems: number
  nowUs = 0
  healed = false
  private readonly violations: Array<Violation> = []
  private readonly electionTimings: ElectionTimings
  private readonly healAtUs: number
  private events = 0
  /** Which budget the run exceeded, if it did. */
  private overBudget: string | undefined
  private readonly faults: Faults
  private readonly network: Network
  private readonly hosts: Hosts
  private readonly workload: Workload
  private readonly operator: Operator
  private readonly stream: StreamChecker
  private readonly durability: DurabilityChecker
  private readonly model: ModelChecker
  private readonly decisionChecker = new DecisionChecker(this)
  private readonly storageChecker = new StorageChecker(this)
  /** Where inside a step a crash comes (its own generator: the seed's other draws stay as they were). */
  private readonly crashPoints: Prng
  private readonly storageCrashes: Prng
  private readonly digests: DigestChecker
  private readonly election: ElectionChecker
  private readonly alarms: AlarmChecker
  private readonly vm: VmChecker
  private readonly serviceAlarm: ServiceAlarmChecker
  private readonly convergence: ConvergenceChecker

  constructor(options: SimOptions) {
    this.options = options
    this.scenario = drawScenario(options)
    const root = new Prng(options.seed)
    const net = root.fork("network")
    const load = root.fork("load")
    const operator = root.fork("operator")
    const replays = root.fork("adversary")
    const guests = root.fork("guests")
    this.systems = options.systems ?? 0
    this.healAtUs = options.durationMs * 1000
    // Each host's disk: its capacity and faults from a generator of their own (the seed's other draws stay as they were).
    const disks = Prng.labelled(options.seed, "storage")
    const diskFaults = options.faults.includes("guest")
      ? { failurePermille: 20, slowPermille: 100, slowUs: 2_000_000 }
      : { failurePermille: 0, slowPermille: 0, slowUs: 0 }
    const members = Array.from({ length: options.nodes }, (_, index) => {
      const domain = `d${(index % options.domains) + 1}`
      return { id: nodeName(index), domain, relay: isRelay(index, options.domains) }
    })
    const config: Omit<CdbConfig, "self"> = {
      ...defaultCdbConfig,
      maxUnconfirmedChanges: this.scenario.flowWindow,
      retainChanges: this.scenario.retainChanges,
      ...options.timings,
      members,
    }
    this.voters = members.map((member) => member.id)
    this.electionTimings = options.electionTimings ?? defaultElectionTimings
    this.nodes = members.map(
      (member, index) =>
        new SimNode(
          member,
          index,
          this.scenario.schedule.driftPpm[index] ?? 0,
          new SimVmm(guests.fork(member.id), this.scenario.guests),
          new SimStorage(disks.fork(member.id), diskFaults, disks.pick([8, 16, 32]) * 1024 ** 3),
          options.nodes,
        ),
    )
    this.byId = new Map(this.nodes.map((node) => [node.id, node]))
    this.faults = new Faults(this)
    this.network = new Network(this, this.faults, net, replays, config.mtu)
    this.stream = new StreamChecker(this)
    this.durability = new DurabilityChecker(this)
    this.model = new ModelChecker(this)
    this.crashPoints = Prng.labelled(options.seed, "crash-points")
    this.storageCrashes = Prng.labelled(options.seed, "crash-in-storage-call")
    this.digests = new DigestChecker(this, config)
    this.election = new ElectionChecker(this, this.faults)
    this.alarms = new AlarmChecker(this, this.faults)
    this.vm = new VmChecker(this, this.faults, () => this.election.primaryChanges)
    this.serviceAlarm = new ServiceAlarmChecker(this, this.election)
    const sampleEveryUs = Math.max(
      checkIntervalUs,
      Math.floor((options.durationMs + options.livenessBoundMs) * 10),
    )
    this.convergence = new ConvergenceChecker(this, this.election, this.vm, this.faults, sampleEveryUs)
    const checkers = {
      stream: this.stream,
      durability: this.durability,
      model: this.model,
      digests: this.digests,
      election: this.election,
      alarms: this.alarms,
      vm: this.vm,
      decisions: this.decisionChecker,
      storage: this.storageChecker,
    }
    this.hosts = new Hosts(this, this.network, this.faults, checkers, config, this.electionTimings)
    this.workload = new Workload(
      this,
      this.hosts,
      load,
      this.healAtUs,
      Prng.labelled(options.seed, "decisions"),
    )
    this.operator = new Operator(this, this.hosts, this.election, this.faults, operator, this.storageChecker)
  }

  violate(checker: string, message: string): void {
    this.violations.push({ checker, message, atMs: Math.floor(this.nowUs / 1000) })
    if (checker === this.options.stopAt) this.stopped = true
  }

  private checks = 0

  /** A violation of the checker `stopAt` names came: the run ends there. */
  private stopped = false

  run(): SimResult {
    for (const node of this.nodes) this.hosts.start(node)
    for (const fault of this.scenario.schedule.events) {
      this.queue.push(fault.atMs * 1000, { type: "fault-start", fault })
      this.queue.push((fault.atMs + fault.durationMs) * 1000, { type: "fault-end", fault })
    }
    if (this.options.writesPerSec > 0) for (const node of this.nodes) this.workload.schedule(node)
    if (this.options.writesPerSec > 0) this.workload.scheduleDecision()
    this.queue.push(this.healAtUs, { type: "heal" })
    this.queue.push(checkIntervalUs, { type: "check" })
    if (this.network.adversary) this.queue.push(replayEveryUs, { type: "replay" })
    if (this.systems > 0) {
      // Systems are created once a primary is likely (the election takes a few hundred ms).
      this.queue.push(Math.min(1_500_000, Math.floor(this.healAtUs / 2)), { type: "create-systems" })
    }
    const endUs = this.healAtUs + this.options.livenessBoundMs * 1000
    const perNodeSecond = this.options.eventBudget ?? eventsPerNodeSecond
    const budget = Math.ceil(((endUs / 1_000_000) * this.options.nodes + 1) * perNodeSecond)
    while (this.queue.size > 0 && this.queue.peekTime() <= endUs && this.convergence.convergedAtUs === null) {
      const next = this.queue.pop()!
      this.nowUs = next.timeUs
      this.events++
      this.dispatch(next.item)
      if (this.violations.length > 50 || this.overBudget !== undefined || this.stopped) break
      if (this.events >= budget) {
        this.overBudget = `the event budget: ${budget} events (${perNodeSecond} per node and virtual second) by ${Math.floor(this.nowUs / 1000)} ms`
        break
      }
    }
    return this.result()
  }

  private dispatch(event: Event): void {
    switch (event.type) {
      case "deliver": {
        const node = this.nodes[event.to]!
        if (node.core === null || !this.network.unsealed(node, event)) return
        this.trace.number(1)
        this.trace.number(this.nowUs)
        this.trace.number(event.to)
        this.network.delivered++
        const datagram = { _tag: "Datagram" as const, bytes: event.bytes, via: event.via, from: event.from }
        const batchUs = this.scenario.driverBatchUs
        if (batchUs === 0) {
          this.hosts.step(node, datagram)
          return
        }
        node.inbox.push(datagram)
        if (!node.drainDue) {
          node.drainDue = true
          this.queue.push(this.nowUs + batchUs, {
            type: "drain",
            node: event.to,
            incarnation: node.incarnation,
          })
        }
        return
      }
      case "drain": {
        const node = this.nodes[event.node]!
        // A drain for an earlier run of the node (it crashed since): the new run has its own.
        if (node.core === null || node.incarnation !== event.incarnation) return
        node.drainDue = false
        const inputs = node.inbox
        node.inbox = []
        this.trace.number(11)
        this.trace.number(this.nowUs)
        this.trace.number(event.node)
        this.hosts.stepAll(node, inputs)
        return
      }
      case "monitor-deliver": {
        const node = this.nodes[event.to]!
        if (node.core === null || !this.network.unsealed(node, event)) return
        this.trace.number(8)
        this.trace.number(this.nowUs)
        this.trace.number(event.to)
        this.trace.text(event.message._tag)
        this.hosts.step(node, { _tag: "MonitorMessage", message: event.message })
        return
      }
      case "deadline": {
        const node = this.nodes[event.node]!
        if (node.core === null || node.armedUs !== this.nowUs) return
        node.armedUs = Number.MAX_SAFE_INTEGER
        this.hosts.step(node, { _tag: "DeadlineReached" })
        return
      }
      case "write":
        this.workload.write(this.nodes[event.node]!)
        return
      case "decide":
        this.workload.decide()
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
        this.network.replay()
        return
      case "check":
        this.check()
        this.queue.push(this.nowUs + checkIntervalUs, { type: "check" })
        return
      case "service-input":
        this.hosts.serviceInput(event)
        return
      case "stats": {
        const node = this.nodes[event.node]!
        if (node.core === null || node.incarnation !== event.incarnation) return
        this.hosts.publishStats(node)
        return
      }
      case "service-alarm-check":
        this.serviceAlarm.check(event.fault)
        return
      case "create-systems":
        this.operator.createSystems()
        return
      case "operate":
        this.operator.operate()
        return
      case "operate-storage":
        this.operator.operateStorage()
        return
      case "crash-now": {
        const node = this.nodes[event.node]!
        if (this.healed || node.incarnation !== event.incarnation) return
        if (event.waited === true) {
          if (this.hosts.crashInStorageCall === undefined) return
          this.hosts.crashInStorageCall = undefined
        }
        this.hosts.crash(node, 0)
        this.queue.push(this.nowUs + event.downMs * 1000, {
          type: "restart-now",
          node: node.index,
          incarnation: node.incarnation,
        })
        return
      }
      case "restart-now": {
        const node = this.nodes[event.node]!
        if (
          !this.healed &&
          node.core === null &&
          node.incarnation === event.incarnation &&
          !this.faults.isLost(node)
        )
          this.hosts.start(node)
        return
      }
      case "operate-snapshots":
        this.operator.operateSnapshots()
        return
    }
  }

  private faultStart(fault: FaultEvent): void {
    if (this.healed) return
    this.trace.number(5)
    this.trace.number(this.nowUs)
    this.trace.text(fault.kind)
    if (fault.kind === "crash" && this.crashPoints.chance(500) && this.nodes[fault.node]!.core !== null) {
      // Half the crashes come inside the node's next step, after a part of it drawn here.
      this.nodes[fault.node]!.crashInStep = this.crashPoints.below(1000)
      return
    }
    const node = fault.kind === "crash" ? this.nodes[fault.node] : undefined
    if (node !== undefined && node.core !== null && this.storageCrashes.chance(500)) {
      // Half the others on the host that next begins a create, snapshot or revert, while it runs
      // on the disk: that host stays down as long from then. With none within 5 s, this node goes.
      // Half of them wait for a create (rarer than snapshots and reverts, and the one that leaves
      // a half-made image behind), half for whichever of the three comes first.
      this.hosts.crashInStorageCall = {
        downMs: fault.durationMs,
        calls: this.storageCrashes.chance(500)
          ? ["createVolume"]
          : ["createVolume", "createSnapshot", "revertSnapshot"],
      }
      this.queue.push(this.nowUs + 5_000_000, {
        type: "crash-now",
        node: node.index,
        incarnation: node.incarnation,
        downMs: fault.durationMs,
        waited: true,
      })
      return
    }
    if (fault.kind === "crash" || fault.kind === "fsync-lie") {
      this.hosts.crash(this.nodes[fault.node]!, fault.kind === "fsync-lie" ? fault.lose : 0)
      return
    }
    if (fault.kind === "stay-down") {
      this.faults.lost.add(fault.node)
      this.hosts.crash(this.nodes[fault.node]!, 0)
      return
    }
    this.faults.active.add(fault)
    if (fault.kind === "clock-step") {
      this.stepWall(this.nodes[fault.node]!, fault.stepMs)
      return
    }
    if (fault.kind === "drift-beyond-bound") {
      // The primary of the moment runs 30% slow, every other node 30% fast, and the primary is
      // cut off: its lease outlasts, in true time, the promises its voters made.
      const primary = this.election.primaryNow()
      if (primary === undefined) return
      this.faults.slewed.set(fault, primary.index)
      for (const node of this.nodes) node.changeDrift(this.nowUs, node === primary ? -300_000 : 300_000)
      this.election.primaryGone(primary)
      return
    }
    if (fault.kind === "service-failure") {
      // The host restarts; its node comes back with a hypervisor service that cannot start.
      const node = this.nodes[fault.node]!
      if (node.core === null) return
      this.hosts.crash(node, 0)
      this.hosts.start(node)
      this.serviceAlarm.scheduleFor(fault)
      return
    }
    for (const node of this.nodes)
      if (node.core !== null && !this.faults.reachesMajority(node)) this.election.primaryGone(node)
  }

  private faultEnd(fault: FaultEvent): void {
    if (this.healed) return
    this.faults.active.delete(fault)
    if (fault.kind === "clock-step") {
      this.stepWall(this.nodes[fault.node]!, -fault.stepMs)
      return
    }
    if (fault.kind === "drift-beyond-bound") {
      if (this.faults.slewed.delete(fault)) this.restoreDrift()
      return
    }
    if (fault.kind === "service-failure") {
      const node = this.nodes[fault.node]!
      if (node.core !== null && !this.faults.serviceDown(node)) this.hosts.serviceRuns(node)
      return
    }
    if (fault.kind === "crash" || fault.kind === "fsync-lie") {
      const node = this.nodes[fault.node]!
      // A crash due inside a step that never came (the node took none in the window) comes now.
      if (node.crashInStep !== undefined) {
        node.crashInStep = undefined
        this.hosts.crash(node, 0)
      }
      const stillDown = [...this.scenario.schedule.events].some(
        (other) =>
          other !== fault &&
          (other.kind === "crash" || other.kind === "fsync-lie") &&
          other.node === fault.node &&
          other.atMs * 1000 <= this.nowUs &&
          (other.atMs + other.durationMs) * 1000 > this.nowUs,
      )
      if (node.core === null && !stillDown && !this.faults.isLost(node)) this.hosts.start(node)
    }
  }

  /** A node's wall clock stepped (its monotonic clock does not move); a step forwards is a jump of its seals. */
  private stepWall(node: SimNode, stepMs: number): void {
    node.wallStepMs += stepMs
    if (stepMs > 0) node.jumped(this.nowUs, stepMs * 1000)
  }

  /** Every clock back at the rate the schedule drew for it. */
  private restoreDrift(): void {
    for (const node of this.nodes)
      node.changeDrift(this.nowUs, this.scenario.schedule.driftPpm[node.index] ?? 0)
  }

  private heal(): void {
    this.healed = true
    if (this.faults.slewed.size > 0) {
      this.faults.slewed.clear()
      this.restoreDrift()
    }
    const serviceDown = this.nodes.filter((node) => node.core !== null && this.faults.serviceDown(node))
    // Every wall clock set right again.
    for (const node of this.nodes) this.stepWall(node, -node.wallStepMs)
    this.faults.active.clear()
    for (const node of serviceDown) this.hosts.serviceRuns(node)
    this.election.healed()
    this.trace.number(6)
    this.trace.number(this.nowUs)
    for (const node of this.nodes) node.vmm.calm()
    for (const node of this.nodes) if (node.core === null && !this.faults.isLost(node)) this.hosts.start(node)
  }

  private check(): void {
    const nodes = this.options.nodes
    const deliveryCeiling =
      deliveriesPerNodeSecond * nodes * (this.nowUs / 1_000_000 + 1) +
      deliveriesPerNodeChange * nodes * (this.workload.written + 1)
    if (this.network.delivered > deliveryCeiling && this.overBudget === undefined)
      this.overBudget = `the delivery budget: ${this.network.delivered} datagrams delivered by ${Math.floor(this.nowUs / 1000)} ms for ${this.workload.written} changes written (at most ${deliveriesPerNodeSecond} per node and virtual second and ${deliveriesPerNodeChange} per node and change)`
    if (this.systems > 0) {
      for (const node of this.nodes) node.vmm.advance(this.nowUs, checkIntervalUs)
      this.vm.checkHaLiveness()
      // Every 25th check (each 500 ms): computing a view is the costly part.
      if (++this.checks % viewCheckEvery === 0) this.hosts.checkViews()
    }
    this.election.checkLiveness()
    if (!this.healed) checkFencing(this, this.faults, this.electionTimings)
    this.convergence.check()
  }

  /** The result of a run that threw: what was seen so far, and the crash. */
  crashed(message: string): SimResult {
    this.violate("crash", message)
    this.convergence.convergedAtUs = null
    return { ...this.result(), converged: false }
  }

  private result(): SimResult {
    this.decisionChecker.final()
    const convergedAtUs = this.convergence.convergedAtUs
    const converged =
      convergedAtUs !== null && !this.violations.some((violation) => violation.checker === "crash")
    if (converged) {
      this.convergence.final()
      this.model.final()
      const survivors = this.nodes.filter((node) => !this.faults.isLost(node))
      this.storageChecker.final(survivors[0]!, survivors)
    }
    const pending: Array<string> = []
    if (!converged) {
      if (this.overBudget !== undefined) {
        this.violate("budget", `stopped: over ${this.overBudget}`)
        pending.push(`over ${this.overBudget}`)
      } else this.violate("liveness", `not converged ${this.options.livenessBoundMs} ms after the heal`)
      pending.push(...this.model.compare(5).map((line) => `model: ${line}`))
      pending.push(...this.convergence.pending())
    }
    const counters = this.nodes.map((node) => node.core?.cdbCore.counters)
    const primary = this.election.primaryNow() ?? this.nodes.find((candidate) => candidate.core !== null)
    return {
      primaryChanges: this.election.primaryChanges,
      failoverSamplesMs: this.election.failovers,
      failoverMs: percentiles(this.election.failovers),
      storage: {
        calls: this.storageChecker.calls,
        revertsChecked: this.storageChecker.revertsChecked,
        brokenOff: this.nodes.reduce((sum, node) => sum + node.storage.brokenOff, 0),
        crashesInCall: this.hosts.crashesInStorageCall,
        attaches: this.storageChecker.attaches,
        volumes: this.nodes.reduce(
          (sum, node) =>
            sum + [...node.storage.pools.values()].reduce((count, pool) => count + pool.files.size, 0),
          0,
        ),
      },
      hypervisor: {
        systems: this.systems,
        created: this.operator.created,
        driverCalls: this.hosts.driverCalls,
        haActions: this.hosts.haMoves,
        moves: this.hosts.moves,
        placements: this.decisionChecker.placements,
        failoverSamplesMs: this.vm.failovers,
        failoverMs: percentiles(this.vm.failovers),
        restartedInPlace: this.vm.restartedInPlace,
      },
      alarmsRaised: this.alarms.raised,
      falseAlarms: this.alarms.falseAlarms,
      fences: this.election.fences,
      primaries: this.election.primaries(),
      health: primary?.core?.health(primary.localMs(this.nowUs)) ?? null,
      seed: this.options.seed,
      nodes: this.options.nodes,
      domains: this.options.domains,
      virtualMs: Math.floor(this.nowUs / 1000),
      events: this.events,
      datagramsDelivered: this.network.delivered,
      datagramsDropped: this.network.dropped,
      changesWritten: this.workload.written,
      changesApplied: counters.reduce((sum, counter) => sum + (counter?.changesApplied ?? 0), 0),
      acknowledgedWrites: this.durability.count,
      commitsRefused: this.stream.commitsRefused,
      crashesInStep: this.hosts.crashesInStep,
      serviceAlarmChecks: this.serviceAlarm.checks,
      replays: { sent: this.network.replaysSent, dropped: this.network.replaysDropped },
      acknowledgedByNode: this.nodes.map((node) => this.durability.byNode(node.id)),
      snapshotsInstalled: counters.reduce((sum, counter) => sum + (counter?.snapshotsInstalled ?? 0), 0),
      nacksSent: counters.reduce((sum, counter) => sum + (counter?.nacksSent ?? 0), 0),
      traceHash: this.trace.hex(),
      converged,
      convergenceMs: converged ? Math.floor((convergedAtUs! - this.healAtUs) / 1000) : null,
      violations: this.violations,
      pending,
      replay: replayCommand(this.options),
      scenario: this.scenario,
      timeline: this.convergence.timeline,
      faultWindows: this.scenario.schedule.events,
      healAtMs: Math.floor(this.healAtUs / 1000),
    }
  }
}

/** Runs one simulation; a crash of the simulator itself (a failed assertion) is reported as a `crash` violation. */
export const simulate = (options: SimOptions): SimResult => {
  const world = new World(drawnTopology(options))
  try {
    return world.run()
  } catch (error) {
    return world.crashed(error instanceof Error ? (error.stack ?? error.message) : String(error))
  }
}
