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
import { EventQueue, Prng, TraceHash } from "./prng.ts"
import { drawScenario, type FaultEvent, replayCommand, type Scenario, type SimOptions } from "./scenario.ts"

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
}

type Event =
  | {
      readonly type: "deliver"
      readonly to: number
      readonly bytes: Uint8Array
      readonly via: "domain" | "relay"
      readonly from: string
    }
  | { readonly type: "deadline"; readonly node: number }
  | { readonly type: "write"; readonly node: number }
  | { readonly type: "fault-start"; readonly fault: FaultEvent }
  | { readonly type: "fault-end"; readonly fault: FaultEvent }
  | { readonly type: "heal" }
  | { readonly type: "check" }

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
}

interface AcknowledgedWrite {
  readonly key: string
  readonly version: Version
  readonly node: string
  readonly atMs: number
}

const l2DelayUs = 150
const l3DelayUs = 2_000
const checkIntervalUs = 20_000
const safetyCheckers = new Set(["order", "duplicate", "durability", "decode", "canary", "crash"])

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
  private readonly members: ReadonlyArray<Member>
  private readonly config: Omit<CdbConfig, "self">
  private readonly active = new Set<FaultEvent>()
  private readonly violations: Array<Violation> = []
  private readonly acknowledged: Array<AcknowledgedWrite> = []
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

  constructor(options: SimOptions) {
    this.options = options
    this.scenario = drawScenario(options)
    const root = new Prng(options.seed)
    this.net = root.fork("network")
    this.load = root.fork("load")
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
    }))
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
        if (node.cdb === null) return
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
      case "check":
        this.check()
        this.queue.push(this.nowUs + checkIntervalUs, { type: "check" })
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
    node.lastApplied = new Map(node.image.vector)
    node.armedUs = Number.MAX_SAFE_INTEGER
    this.trace.number(2)
    this.trace.number(this.nowUs)
    this.trace.number(node.index)
    this.step(node, { _tag: "DeadlineReached" })
  }

  private crash(node: SimNode, lose: number): void {
    if (node.cdb === null) return
    node.cdb = null
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
    for (const output of outputs) this.carryOut(node, output)
    return outputs
  }

  private carryOut(node: SimNode, output: Output): void {
    switch (output._tag) {
      case "Persist":
      case "PersistSnapshot":
        applyPersist(node.image, output, node.id, this.config.retainChanges)
        return
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
      case "Multicast":
        this.hashSend(node, output.bytes)
        for (const peer of this.nodes) {
          if (peer.domain === node.domain && peer !== node)
            this.transmit(node, peer, output.bytes, "domain", l2DelayUs)
        }
        return
      case "Unicast": {
        this.hashSend(node, output.bytes)
        const peer = this.nodes.find((candidate) => candidate.id === output.to)
        if (peer !== undefined && peer.domain === node.domain)
          this.transmit(node, peer, output.bytes, "domain", l2DelayUs)
        return
      }
      case "Relay": {
        this.hashSend(node, output.bytes)
        const peer = this.nodes.find((candidate) => candidate.id === output.to)
        if (peer !== undefined) this.transmit(node, peer, output.bytes, "relay", l3DelayUs)
        return
      }
      case "ArmDeadline": {
        const atUs = Math.max(this.nowUs + 1, this.globalUs(node, output.atMs))
        if (atUs < node.armedUs) {
          node.armedUs = atUs
          this.queue.push(atUs, { type: "deadline", node: node.index })
        }
        return
      }
      case "Acknowledged":
      case "WriteRejected":
      case "MemberChanged":
        return
    }
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
    const copies = rates.duplicatePermille > 0 && this.net.chance(rates.duplicatePermille) ? 2 : 1
    for (let copy = 0; copy < copies; copy++) {
      const delayUs = baseUs + (rates.jitterUs > 0 ? this.net.below(rates.jitterUs) : this.net.below(50))
      this.queue.push(this.nowUs + delayUs, { type: "deliver", to: to.index, bytes, via, from: from.id })
    }
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
          break
      }
    }
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
    this.trace.number(6)
    this.trace.number(this.nowUs)
    for (const node of this.nodes) if (node.cdb === null) this.start(node)
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
      writes.push({ requestId: ++node.requestId, op, kind: op === "meta" ? "service" : "system", id, value })
    }
    this.written += writes.length
    const outputs = this.step(node, { _tag: "Write", writes })
    this.recordAcknowledged(node, writes, outputs)
    if (workload.statsStorm && this.load.chance(200)) {
      const values = Array.from({ length: 40 }, (_, index) => ({
        kind: "system",
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
    const vector = JSON.stringify(first.vector())
    return this.nodes.every(
      (node) =>
        node.cdb !== null &&
        node.cdb.fingerprint() === fingerprint &&
        JSON.stringify(node.cdb.vector()) === vector,
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
    }
    const counters = this.nodes.map((node) => node.cdb?.counters)
    return {
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
