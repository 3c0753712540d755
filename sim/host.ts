/**
 * Simulated hosts: each runs one node's composition (`core/node/`, the object a real node
 * drives) with a drifting clock, a durable store in memory (the image and the vote), and its
 * ports: the network (`network.ts`) and a VMM (`vmm.ts`). `Hosts` is the simulator's driver of
 * those compositions, step for step what `adapters/node/node.ts` does: a step's commit first (a
 * full disk refuses it, and the composition goes back to what is durable), then its outputs to
 * the network and the checkers, its effects to the VMM, and one timer at its next deadline.
 */
import { applyPersist, type DurableImage, emptyImage } from "../core/cdb/durable.ts"
import type { CdbConfig, WriteOp } from "../core/cdb/node.ts"
import { applyLogPersist } from "../core/decision/log.ts"
import type { DecidedState, DecisionCommand } from "../core/decision/state.ts"
import { hypervisorService } from "../core/hypervisor/service.ts"
import { encodeValue } from "../core/hypervisor/values.ts"
import { type StoreReader, viewIn } from "../core/hypervisor/view.ts"
import type { DurableVote } from "../core/monitor/election.ts"
import {
  type DurableDecisions,
  defaultNodeTimings,
  NodeCore,
  type Output,
  type ServiceEffect,
  type Step,
} from "../core/node/node.ts"
import type { ServiceFactory } from "../core/node/service.ts"
import { storageService } from "../core/storage/service.ts"
import type { StorageCall } from "../core/storage/storage.ts"
import { ReplayWindow, SealClock } from "../core/transport/replay.ts"
import type { AlarmChecker } from "./checkers/alarms.ts"
import type { DecisionChecker } from "./checkers/decisions.ts"
import type { DigestChecker } from "./checkers/digest.ts"
import type { DurabilityChecker } from "./checkers/durability.ts"
import type { ElectionChecker } from "./checkers/election.ts"
import type { ModelChecker } from "./checkers/model.ts"
import type { StorageChecker } from "./checkers/storage.ts"
import type { StreamChecker } from "./checkers/stream.ts"
import type { VmChecker } from "./checkers/vm.ts"
import type { Event, Sim } from "./events.ts"
import type { Faults } from "./faults.ts"
import type { Network } from "./network.ts"
import type { SimResult } from "./result.ts"
import type { ElectionTimings } from "./scenario.ts"
import type { SimStorage } from "./storage.ts"
import { callDone, type SimVmm } from "./vmm.ts"

export const nodeName = (index: number) => `n${index + 1}`

/** The first node of each L2 domain is its relay (node i is in domain i mod domains). */
export const isRelay = (index: number, domains: number): boolean => index < domains

/** The relay of a node's domain. */
export const relayOf = (
  sim: { readonly nodes: ReadonlyArray<SimNode>; readonly options: { readonly domains: number } },
  node: SimNode,
): SimNode | undefined =>
  sim.nodes.find((peer) => peer.domain === node.domain && isRelay(peer.index, sim.options.domains))

/** The hypervisor's view of a store and of the placements decided, serialised: two are equal when it would act the same on both. */
const viewKey = (self: string, store: StoreReader, decided: DecidedState): string =>
  JSON.stringify([viewIn(self, { list: store.list, metaOf: store.metaOf }), decided.placements])

/** Each simulated host's capacity, as its statistics report it (published at every start and every 2 s). */
const hostCpus = 16
const hostMemoryMiB = 32_768
const statsEveryUs = 2_000_000

export class SimNode {
  readonly id: string
  readonly index: number
  readonly domain: string
  /** Its clock's drift now, in parts per million (it changes only under "drift-beyond-bound"). */
  driftPpm: number
  /** Where the clock's current rate began: global µs, and the local µs it read then. */
  private anchorUs = 0
  private anchorLocalUs = 0
  /** The host's hypervisor (outlives the node process: a crash takes its domains, though). */
  readonly vmm: SimVmm
  /** The host's disk (outlives the node process, what it holds included). */
  readonly storage: SimStorage
  /** The node's composition; null while the node is down. */
  core: NodeCore | null = null
  /** What its store holds: the CDB's durable image and the election's vote. */
  image: DurableImage = emptyImage()
  vote: DurableVote = { term: 0, votedFor: null }
  /** And its decision log: snapshot and entries. */
  decisions: DurableDecisions = { snapshot: undefined, entries: [] }
  incarnation = 0
  /**
   * The lead of its seal clock over its wall clock as its store last took it (µs): a new process
   * seals, and takes datagrams, from its wall clock plus this on (as `recordStart` gives it).
   */
  sealLeadUs = 0
  /** The one timer, armed at the composition's next deadline (global µs). */
  armedUs = Number.MAX_SAFE_INTEGER
  /** Tickets of the workload's and the operator's writes. */
  ticket = 0
  /** Per origin, the last sequence number this node applied (order and duplicate checkers). */
  lastApplied = new Map<string, number>()
  /** Until when (global µs) this node holds a primary lease, as the checker sees it. */
  leaseUntilUs = 0
  leaseTerm = 0
  leaseFromUs = 0
  fenced = false
  /** Since when (global µs) the network has cut this node off from a majority, if it has. */
  cutOffSinceUs: number | null = null
  /** When (global µs) each node, by index, could last deliver to this one while both were up. */
  readonly lastConnectedUs: Array<number>
  /** Numbers the datagrams this node seals (with its incarnation: never confusable across runs). */
  sealClock = new SealClock(0)
  /** When (global µs) its transport last took a peer's datagram. */
  heardUs = 0
  /** When (global µs) its transport last took a datagram of each peer (since its process started). */
  readonly heardFromUs = new Map<string, number>()
  /** While a client's write is stepped: whether its store was caught up when the operation was checked. */
  writeInSync: boolean | undefined
  /**
   * Its seal clock's recent jumps forward (a peer's counter taken, its wall clock stepped ahead):
   * when (global µs) and by how much (µs), the last second's.
   */
  readonly jumps: Array<{ readonly atUs: number; us: number }> = []

  /** Its seal clock jumped forward by `us` at `atUs` (jumps within a millisecond are added up). */
  jumped(atUs: number, us: number): void {
    const last = this.jumps.at(-1)
    if (last !== undefined && atUs - last.atUs < 1_000) last.us += us
    else this.jumps.push({ atUs, us })
    let old = 0
    while (old < this.jumps.length && this.jumps[old]!.atUs < atUs - 1_000_000) old++
    if (old > 0) this.jumps.splice(0, old)
  }

  /**
   * How far its seal clock jumped forward, in all, since `sinceUs` (within the last second; a
   * millisecond's jumps that began just before it count too).
   */
  jumpedSince(sinceUs: number): number {
    let total = 0
    for (const jump of this.jumps) if (jump.atUs >= sinceUs - 1_000) total += jump.us
    return total
  }
  /**
   * How far its wall clock is stepped from its own (drifting) time, in ms (fault "clock-step"):
   * what the hybrid clocks and the seal read, never the monotonic clock leases run on.
   */
  wallStepMs = 0
  /** Its wall clock's step when its process started (the receiver's side of the freshness rule). */
  startedWallStepMs = 0
  /** The seal-clock lead its process started with (µs): its window takes datagrams from wall clock plus this on. */
  startedLeadUs = 0
  /** The anti-replay window of this node's transport (a process's: new at every start), and when it started (global µs). */
  replayWindow = new ReplayWindow()
  startedUs = 0
  /**
   * A crash due inside the node's next step (fault "crash"): after this share (per thousand) of
   * the step's commit and outputs, as a real process can die after any of them.
   */
  crashInStep: number | undefined
  /** Datagrams queued for the driver's next drain (scenario `driverBatchUs`), and whether one is due. */
  inbox: Array<Extract<Parameters<NodeCore["handleAll"]>[0][number], { _tag: "Datagram" }>> = []
  drainDue = false
  /** The view of the store its hypervisor last read (serialised), for the `view` checker. */
  hypervisorView: string | undefined

  constructor(
    member: { id: string; domain: string },
    index: number,
    driftPpm: number,
    vmm: SimVmm,
    storage: SimStorage,
    nodes: number,
  ) {
    this.id = member.id
    this.index = index
    this.domain = member.domain
    this.driftPpm = driftPpm
    this.vmm = vmm
    this.storage = storage
    this.lastConnectedUs = Array.from({ length: nodes }, () => 0)
  }

  /** This host's clock (its drift applied) at global time `nowUs`. */
  localMs(nowUs: number): number {
    return Math.floor(
      (this.anchorLocalUs + Math.floor(((nowUs - this.anchorUs) * (1_000_000 + this.driftPpm)) / 1_000_000)) /
        1000,
    )
  }

  /** This host's wall clock at global time `nowUs`: its clock, stepped (fault "clock-step"). */
  wallMs(nowUs: number): number {
    return this.localMs(nowUs) + this.wallStepMs
  }

  /** The global µs at which this host's clock reads `localMs` (from its current rate on). */
  globalUs(localMs: number): number {
    return (
      this.anchorUs +
      Math.ceil(((localMs * 1000 - this.anchorLocalUs) * 1_000_000) / (1_000_000 + this.driftPpm))
    )
  }

  /** From global time `nowUs` on, the clock runs at another rate (it never jumps). */
  changeDrift(nowUs: number, driftPpm: number): void {
    this.anchorLocalUs += Math.floor(((nowUs - this.anchorUs) * (1_000_000 + this.driftPpm)) / 1_000_000)
    this.anchorUs = nowUs
    this.driftPpm = driftPpm
  }
}

export interface Checkers {
  readonly stream: StreamChecker
  readonly durability: DurabilityChecker
  readonly model: ModelChecker
  readonly digests: DigestChecker
  readonly election: ElectionChecker
  readonly alarms: AlarmChecker
  readonly vm: VmChecker
  readonly decisions: DecisionChecker
  readonly storage: StorageChecker
}

export class Hosts {
  private readonly sim: Sim
  private readonly network: Network
  private readonly faults: Faults
  private readonly checkers: Checkers
  private readonly config: Omit<CdbConfig, "self">
  private readonly electionTimings: ElectionTimings
  driverCalls = 0
  haMoves = 0
  readonly moves: Array<SimResult["hypervisor"]["moves"][number]> = []
  /** Crashes that came inside a step (fault "crash", half of them). */
  crashesInStep = 0
  /** Crashes that came while a create, snapshot or revert ran on the host's disk (fault "crash"). */
  crashesInStorageCall = 0
  /**
   * A crash due on whichever host next begins a create, snapshot or revert (fault "crash"), and
   * how long that host then stays down.
   */
  crashInStorageCall:
    | { readonly downMs: number; readonly calls: ReadonlyArray<StorageCall["_tag"]> }
    | undefined

  constructor(
    sim: Sim,
    network: Network,
    faults: Faults,
    checkers: Checkers,
    config: Omit<CdbConfig, "self">,
    electionTimings: ElectionTimings,
  ) {
    this.sim = sim
    this.network = network
    this.faults = faults
    this.checkers = checkers
    this.config = config
    this.electionTimings = electionTimings
  }

  private localMs(node: SimNode): number {
    return node.localMs(this.sim.nowUs)
  }

  private wallMs(node: SimNode): number {
    return node.wallMs(this.sim.nowUs)
  }

  /** A new process on the host, from what its store holds. */
  start(node: SimNode): void {
    const sim = this.sim
    // A new process: its quorum window (and so the fence checker's clock) starts over.
    node.cutOffSinceUs = null
    this.network.started(node, this.wallMs(node))
    node.lastApplied = new Map(node.image.vector)
    this.checkers.model.started(node)
    this.checkers.decisions.started(node)
    node.armedUs = Number.MAX_SAFE_INTEGER
    node.fenced = false
    node.core = new NodeCore(
      {
        self: node.id,
        cdb: { ...this.config, self: node.id },
        election: { ...this.electionTimings, self: node.id, voters: sim.voters },
        incarnation: node.incarnation,
        timings: defaultNodeTimings,
        ...(sim.options.faults.includes("no-service-alarm") ? { ignoreServices: true } : {}),
        services:
          sim.systems === 0
            ? {}
            : {
                hypervisor: this.watched(
                  node,
                  hypervisorService({
                    volumeDir: "/var/lib/acp/volumes",
                    // The unsafe fault "no-fence" takes the fence away: the host believes it always has a primary.
                    withoutFence: sim.options.faults.includes("no-fence"),
                  }),
                ),
                storage: storageService({ poolRoot: "/var/lib/acp/pools" }),
              },
      },
      { image: node.image, vote: node.vote, decisions: node.decisions },
      this.localMs(node),
      this.wallMs(node),
    )
    sim.trace.number(2)
    sim.trace.number(sim.nowUs)
    sim.trace.number(node.index)
    this.step(node, { _tag: "DeadlineReached" })
    if (sim.systems > 0) {
      // As a real node: its supervisor reports the hypervisor running (or backing off, fault
      // "service-failure"), and the host publishes its capacity.
      if (this.faults.serviceDown(node))
        this.step(node, {
          _tag: "ServiceState",
          name: "hypervisor",
          state: "backing-off",
          restarts: 1,
          lastError: "cannot load libvirt.so.0 (simulated)",
        })
      else this.serviceRuns(node)
      this.storageRuns(node)
      this.publishStats(node)
    }
  }

  /** The host goes down with its node; with `lose`, its disk forgets its last own changes (fsync-lie). */
  crash(node: SimNode, lose: number): void {
    if (node.core === null) return
    node.crashInStep = undefined
    node.inbox = []
    node.drainDue = false
    this.checkers.election.primaryGone(node)
    this.checkers.election.endLease(node)
    if (this.sim.systems > 0) {
      this.checkers.vm.hostCrashed(node)
      node.vmm.hostCrashed()
    }
    node.storage.hostCrashed(this.sim.nowUs)
    this.checkers.storage.hostCrashed(node)
    node.core = null
    node.incarnation++
    if (lose > 0) this.loseDurableWrites(node, lose)
    this.sim.trace.number(3)
    this.sim.trace.number(this.sim.nowUs)
    this.sim.trace.number(node.index)
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

  serviceRuns(node: SimNode): void {
    this.step(node, { _tag: "ServiceState", name: "hypervisor", state: "running", restarts: 0 })
  }

  /** The storage service runs from the node's start (its driver is the host's disk). */
  storageRuns(node: SimNode): void {
    this.step(node, { _tag: "ServiceState", name: "storage", state: "running", restarts: 0 })
  }

  /** The host's statistics, every 2 s as a real node's hypervisor service publishes them. */
  publishStats(node: SimNode): void {
    const stats = { cpuCount: hostCpus, memoryTotalBytes: hostMemoryMiB * 1024 * 1024, cpuUsage: 0 }
    this.step(node, { _tag: "SetStats", values: [{ kind: "node", id: node.id, value: encodeValue(stats) }] })
    this.sim.queue.push(this.sim.nowUs + statsEveryUs, {
      type: "stats",
      node: node.index,
      incarnation: node.incarnation,
    })
  }

  /**
   * A client's writes through a node (the operator's, the workload's), as the API makes them;
   * `inSync`: what the operation found of the node's store when it was checked.
   */
  clientWrite(node: SimNode, writes: ReadonlyArray<Omit<WriteOp, "requestId">>, inSync?: boolean): void {
    node.writeInSync = inSync
    this.step(node, { _tag: "Write", ticket: ++node.ticket, writes })
    node.writeInSync = undefined
  }

  /** A VMM's answer (or the time to list its domains) for the run of the service it was for. */
  serviceInput(event: Extract<Event, { type: "service-input" }>): void {
    const node = this.sim.nodes[event.node]!
    if (node.core === null || node.incarnation !== event.incarnation) return
    if (event.service === "storage") {
      if (node.core.serviceRun("storage") !== event.run) return
      const input =
        event.input === "observe"
          ? { _tag: "Observed" as const, pools: node.storage.observe(event.pools, this.sim.nowUs) }
          : event.input
      this.step(node, { _tag: "ServiceInput", service: "storage", run: event.run, input })
      return
    }
    if (node.core.serviceRun("hypervisor") !== event.run) return
    let input = event.input
    if (input === "observe") {
      node.vmm.advance(this.sim.nowUs, 0)
      input = { _tag: "Observed", domains: node.vmm.list() }
    }
    this.step(node, { _tag: "ServiceInput", service: "hypervisor", run: event.run, input })
  }

  /** The hypervisor service as it is, noting the view of the store it reads at each read. */
  private watched(node: SimNode, factory: ServiceFactory<"hypervisor">): ServiceFactory<"hypervisor"> {
    node.hypervisorView = undefined
    return (self, startMs) => {
      const core = factory(self, startMs)
      return {
        ...core,
        step: (input, context) => {
          if (input._tag === "ViewChanged")
            node.hypervisorView = viewKey(self, context.store, context.decided)
          return core.step(input, context)
        },
      }
    }
  }

  /**
   * The composition's promise to its services: one that has no read of the store due holds the
   * view the store gives now (what it reads changed: it reads again, soon). A member's death
   * changes it too (its claims stop counting): a node kept waiting on a dead node's claim.
   */
  checkViews(): void {
    for (const node of this.sim.nodes) {
      const core = node.core
      if (core === null || node.hypervisorView === undefined || core.serviceRun("hypervisor") === undefined)
        continue
      if (core.readPending("hypervisor") || this.staleView.has(node.id)) continue
      const now = viewKey(node.id, core.store, core.decided())
      if (now === node.hypervisorView) continue
      this.staleView.add(node.id)
      const [heldStore, heldPlacements] = JSON.parse(node.hypervisorView) as [unknown, unknown]
      const [nowStore, nowPlacements] = JSON.parse(now) as [unknown, unknown]
      const what = [
        ...(JSON.stringify(heldStore) === JSON.stringify(nowStore) ? [] : ["the store's"]),
        ...(JSON.stringify(heldPlacements) === JSON.stringify(nowPlacements)
          ? []
          : ["the decided placements'"]),
      ].join(" and ")
      this.sim.violate(
        "view",
        `${node.id}: its hypervisor holds a view of ${what} that is no longer so, and no read is due`,
      )
    }
  }

  private readonly staleView = new Set<string>()

  /** A client's proposal, for the linearizability check of the decisions' history. */
  decisionProposed(node: SimNode, ticket: number, command: DecisionCommand): void {
    this.checkers.decisions.proposed(node, ticket, command)
  }

  /** One input into the node's composition, and its step carried out as the real driver does. */
  step(node: SimNode, input: Parameters<NodeCore["handle"]>[0]): void {
    // A crash inside an earlier step of the same instant may have taken the node down.
    if (node.core === null) return
    this.carry(node, node.core.handle(input, this.localMs(node), this.wallMs(node)))
  }

  /** Datagrams that queued up, taken in one step (one commit), as the real driver drains its socket. */
  stepAll(node: SimNode, inputs: Parameters<NodeCore["handleAll"]>[0]): void {
    if (node.core === null || inputs.length === 0) return
    this.carry(node, node.core.handleAll(inputs, this.localMs(node), this.wallMs(node)))
  }

  /**
   * As the real driver (adapters/node/node.ts): the step's commit first; if the store refuses it
   * (fault "disk-full"), nothing of its outputs is carried out and the composition goes back to
   * what is durable. The writes it refused are remembered: none may ever become visible.
   */
  private carry(node: SimNode, step: Step): void {
    const core = node.core!
    let outputs = step.outputs
    // A crash inside the step: after `prefix` of its parts (the commit, then each output), the
    // process is gone; what its store holds is what the commit left. The driver's promise (the
    // commit before any acknowledgement or datagram) is then what the checkers see kept or not.
    const parts = (step.commit === undefined ? 0 : 1) + outputs.length
    const prefix =
      node.crashInStep === undefined
        ? Number.POSITIVE_INFINITY
        : Math.floor((node.crashInStep * (parts + 1)) / 1000)
    if (prefix === 0) {
      this.crashInStep(node)
      return
    }
    if (step.commit !== undefined) {
      if (this.faults.diskFull(node)) {
        this.checkers.stream.noteRefused(node, step.outputs)
        if (!this.sim.options.faults.includes("ignore-refused-commit")) {
          const refused = core.handle(
            {
              _tag: "CommitRefused",
              error: { reason: "disk-full", detail: "no space left on device (simulated)" },
              durable: { image: node.image, vote: node.vote, decisions: node.decisions },
            },
            this.localMs(node),
            this.wallMs(node),
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
        for (const persist of step.commit.decisions ?? [])
          node.decisions = applyLogPersist(node.decisions, persist)
        const recovered = core.committed()
        if (recovered.length > 0) outputs = [...outputs, ...recovered]
      }
    }
    const carried = step.commit === undefined ? 0 : 1
    for (const [index, output] of outputs.entries()) {
      if (carried + index >= prefix) {
        this.crashInStep(node)
        return
      }
      this.carryOut(node, output)
    }
    if (node.crashInStep !== undefined) {
      this.crashInStep(node)
      return
    }
    for (const effect of step.effects) this.execute(node, effect)
    this.arm(node, step.deadlineMs)
    // The composition's promise to its services: none is left waiting for a caught-up store it
    // has (an HA system waits on it to start; found missing by HA liveness only after 35 s).
    for (const service of core.servicesNotWoken()) {
      if (this.notWoken.has(`${node.id} ${service}`)) continue
      this.notWoken.add(`${node.id} ${service}`)
      this.sim.violate(
        "wake",
        `${node.id}: its ${service} waits for a caught-up store, which the store is, and was not woken in the step`,
      )
    }
  }

  /** The services already reported left waiting (`servicesNotWoken`), once each. */
  private readonly notWoken = new Set<string>()

  private crashInStep(node: SimNode): void {
    node.crashInStep = undefined
    this.crashesInStep++
    this.crash(node, 0)
  }

  private carryOut(node: SimNode, output: Output): void {
    const { stream, durability, model, digests, election, alarms, vm } = this.checkers
    switch (output._tag) {
      case "Applied":
        stream.applied(node, output.changes)
        model.applied(node, output.changes)
        vm.changed(node, output.changes)
        return
      case "SnapshotInstalled":
        stream.snapshotInstalled(node, output.vector)
        return
      case "Rejected":
        this.sim.violate(
          "decode",
          `${node.id} rejected a datagram from a correct peer: ${output.rejection.reason}: ${output.rejection.detail}`,
        )
        return
      case "Send":
        digests.sent(node, output.bytes, output.to)
        this.network.send(node, output)
        return
      case "SendMessage":
        this.network.sendMessage(node, output)
        return
      case "Written":
        durability.record(node, output.writes, output.changes)
        model.written(node, output.changes)
        vm.written(node, output.changes, output.source)
        vm.changed(node, output.changes)
        digests.written(node, output.changes, output.source)
        return
      case "BecamePrimary":
        election.becamePrimary(node, output.term)
        return
      case "DecisionApplied":
        this.checkers.decisions.decision(node, output.index, output.command, output.answer)
        if (output.ticket !== undefined) this.checkers.decisions.answered(node, output.ticket, output.answer)
        return
      case "DecisionRefused":
        this.checkers.decisions.refused(node, output.ticket)
        return
      case "DecisionProposed":
        this.checkers.decisions.proposed(node, output.ticket, output.command)
        return
      case "LeaseRenewed":
        election.leaseRenewed(node, output.term, node.globalUs(output.leaseUntilMs))
        return
      case "SteppedDown":
        election.endLease(node)
        return
      case "Fence":
        node.fenced = true
        election.fences++
        return
      case "Unfence":
        node.fenced = false
        return
      case "Alarms":
        alarms.written(node, output.changes)
        return
      case "ServiceEvent":
        if (output.event.kind !== "ha-move") return
        this.haMoves++
        if (output.event.detail.to !== undefined)
          this.moves.push({
            atMs: Math.floor(this.sim.nowUs / 1000),
            by: node.id,
            system: String(output.event.detail.system),
            from: String(output.event.detail.from),
            to: String(output.event.detail.to),
          })
        this.sim.trace.number(10)
        this.sim.trace.number(this.sim.nowUs)
        this.sim.trace.text(String(output.event.detail.system))
        return
      case "WriteRefused":
        digests.refused(node, output.source, output.reason)
        return
      case "MemberChanged":
      case "StoreFailing":
      case "StoreRecovered":
        return
    }
  }

  /** Carries out a service's effect through the simulated VMM; its answer comes back as an event. */
  private execute(node: SimNode, carried: ServiceEffect): void {
    if (carried.service === "storage") {
      this.executeStorage(node, carried)
      return
    }
    const { run, effect } = carried
    const sim = this.sim
    if (effect._tag === "Observe") {
      sim.queue.push(sim.nowUs + 1_000, {
        type: "service-input",
        node: node.index,
        incarnation: node.incarnation,
        run,
        input: "observe",
      })
      return
    }
    const result = node.vmm.execute(effect.domain, effect.call, sim.nowUs)
    this.driverCalls++
    sim.trace.number(9)
    sim.trace.number(sim.nowUs)
    sim.trace.number(node.index)
    sim.trace.text(effect.domain)
    sim.trace.text(effect.call._tag)
    sim.trace.text(result.error?.reason ?? "ok")
    if (result.error === undefined && (result.observed === "running" || result.observed === "paused")) {
      this.checkers.vm.systemActive(effect.system, node)
      this.checkers.storage.domainActive(effect.domain, node)
    }
    sim.queue.push(sim.nowUs + Math.max(1_000, result.latencyUs), {
      type: "service-input",
      node: node.index,
      incarnation: node.incarnation,
      run,
      input: callDone(effect.requestId, result),
    })
  }

  /** Carries out a storage effect on the host's disk; its answer comes back as an event. */
  private executeStorage(
    node: SimNode,
    { run, effect }: Extract<ServiceEffect, { readonly service: "storage" }>,
  ): void {
    const sim = this.sim
    const base = {
      type: "service-input" as const,
      service: "storage" as const,
      node: node.index,
      incarnation: node.incarnation,
      run,
    }
    if (effect._tag === "Observe") {
      sim.queue.push(sim.nowUs + 1_000, { ...base, input: "observe", pools: effect.pools })
      return
    }
    if (effect._tag === "ApplyShares") {
      // The simulated host serves whatever it is given (no NFS in the simulator).
      sim.queue.push(sim.nowUs + 1_000, {
        ...base,
        pools: [],
        input: { _tag: "SharesApplied", requestId: effect.requestId },
      })
      return
    }
    if (effect._tag === "ObserveDevices") {
      sim.queue.push(sim.nowUs + 1_000, {
        ...base,
        pools: [],
        input: { _tag: "DevicesObserved", devices: node.storage.devices() },
      })
      return
    }
    const result = node.storage.execute(effect.call, sim.nowUs)
    this.checkers.storage.executed(node, effect.call, result.error !== undefined)
    const { _tag } = effect.call
    const due = this.crashInStorageCall
    if (due !== undefined && result.error === undefined && due.calls.includes(_tag)) {
      // The host goes down half-way through the call (its answer is due in a millisecond at the
      // soonest): what its node did as it began the call has happened, the answer has not come.
      this.crashInStorageCall = undefined
      this.crashesInStorageCall++
      sim.queue.push(sim.nowUs + Math.floor(Math.max(1_000, result.latencyUs) / 2), {
        type: "crash-now",
        node: node.index,
        incarnation: node.incarnation,
        downMs: due.downMs,
      })
    }
    sim.trace.number(10)
    sim.trace.number(sim.nowUs)
    sim.trace.number(node.index)
    sim.trace.text(effect.target)
    sim.trace.text(effect.call._tag)
    sim.trace.text(result.error?.reason ?? "ok")
    sim.queue.push(sim.nowUs + Math.max(1_000, result.latencyUs), {
      ...base,
      pools: [],
      input: {
        _tag: "CallDone",
        requestId: effect.requestId,
        ...(result.pool === undefined ? {} : { pool: result.pool }),
        ...(result.volume === undefined ? {} : { volume: result.volume }),
        ...(result.error === undefined ? {} : { error: result.error }),
      },
    })
  }

  /** Arms the node's one timer at the composition's next deadline (its local ms), keeping only the earliest. */
  private arm(node: SimNode, atMs: number): void {
    if (!Number.isFinite(atMs)) return
    const atUs = Math.max(this.sim.nowUs + 1, node.globalUs(atMs))
    if (atUs >= node.armedUs) return
    node.armedUs = atUs
    this.sim.queue.push(atUs, { type: "deadline", node: node.index })
  }
}
