/**
 * The hypervisor service of one node as a sans-I/O state machine: it reads what the CDB wants
 * (systems placed on this node, tasks this node owns), what the VMM reports (domains and their
 * states) and whether this node may run highly available systems, and answers with driver calls
 * and CDB writes. The node driver carries the calls out through the VMM port; the simulator
 * through its simulated VMM. Same core, same decisions.
 *
 * Reconciliation is level-triggered: each step compares the desired state of a system with the
 * domain the driver last reported and issues at most one driver call per system at a time. The
 * system's `meta.state` moves only along the lifecycle table (a path is searched in the table,
 * so an unexpected observation — a guest that powered itself off — is still a legal move).
 *
 * Highly available systems and fencing: a node runs HA systems only while a primary with a
 * valid lease hears it (`leaderContactMs` within `haFenceMs`) and it is not fenced. Without
 * that it destroys them at once and holds them: it starts a held system again only for a newer
 * `spec.epoch`, which only the primary writes (when it moves the system, or releases the hold).
 * The primary waits out `haFenceMs` (see `ha.ts`) before it moves anything, so a system never
 * runs on two nodes.
 */
import { fnv1a32 } from "../hash.ts"
import { transition } from "../lifecycle/machine.ts"
import { type SystemEvent, type SystemState, systemLifecycle } from "../lifecycle/tables.ts"
import type { SystemMeta, SystemSpec } from "../model/compute.ts"
import type { TaskSpec } from "../model/operations.ts"
import type { DomainDefinition, DomainDisk, DomainState, VmmError } from "../ports/vmm.ts"

export type SystemSpecValue = typeof SystemSpec.Type
export type SystemMetaValue = typeof SystemMeta.Type
export type TaskSpecValue = typeof TaskSpec.Type

export interface HypervisorConfig {
  readonly self: string
  /**
   * Where a disk whose volume the store does not describe (no `storage-volume` object) is looked
   * for: `${volumeDir}/v.qcow2`. A volume the store describes is opened at the path its pool's
   * node published, once it is available there.
   */
  readonly volumeDir: string
  /** Where serial console logs are written, if the driver writes them. */
  readonly consoleDir?: string
  /** How long a graceful shutdown may take before the domain is destroyed. */
  readonly stopTimeoutMs: number
  /** How long without a leased primary's contact before HA systems are stopped. */
  readonly haFenceMs: number
  /** Wait after a failed driver call before the same system is tried again. */
  readonly retryMs: number
  /** Consecutive start failures after which a start task fails and the system rests. */
  readonly maxStartFailures: number
  /** A task that has not reached its goal after this long fails. */
  readonly taskTimeoutMs: number
  /** How often the driver is asked for the domains' states. */
  readonly observeEveryMs: number
}

export const defaultHypervisorTimings = {
  stopTimeoutMs: 30_000,
  haFenceMs: 4_000,
  retryMs: 1_000,
  maxStartFailures: 3,
  taskTimeoutMs: 120_000,
  observeEveryMs: 1_000,
} as const

export type DriverCall =
  | { readonly _tag: "define"; readonly definition: DomainDefinition }
  | { readonly _tag: "start" }
  | { readonly _tag: "shutdown" }
  | { readonly _tag: "destroy" }
  | { readonly _tag: "reboot" }
  | { readonly _tag: "suspend" }
  | { readonly _tag: "resume" }
  | { readonly _tag: "undefine" }
  | { readonly _tag: "attach"; readonly disk: DomainDisk }
  | { readonly _tag: "detach"; readonly disk: DomainDisk }

export type Observation = DomainState | "absent"

export interface Authority {
  /** When a leased primary that hears this node last pinged it (this node's clock). */
  readonly leaderContactMs: number
  /** The monitor's majority-based fence. */
  readonly fenced: boolean
  /**
   * Whether this node has applied the decision log as far as the primary's pings that give it
   * authority had committed it (`NodeDecisions.caughtUp`). An HA system starts only then: a node
   * back from a partition would otherwise act on a placement of its own (a release) that a later
   * decision it has not yet applied (a move elsewhere) undid. Absent: caught up.
   */
  readonly caughtUp?: boolean
}

/** A node's meta slot that says a system is active there (see `claimsOf`). */
export interface Claim {
  readonly node: string
  readonly state: string
}

/** Meta states in which a node may still have the system's domain running. */
const activeStates: ReadonlySet<string> = new Set(["starting", "running", "paused", "stopping", "migrating"])

/** From every live node's meta slot for a system, the nodes that say it is (or may be) active there. */
export const claimsOf = (
  slots: ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>,
  decode: (bytes: Uint8Array) => { readonly state?: unknown } | undefined,
): ReadonlyArray<Claim> =>
  slots.flatMap((slot) => {
    const state = decode(slot.value)?.state
    return typeof state === "string" && activeStates.has(state) ? [{ node: slot.node, state }] : []
  })

export interface View {
  /**
   * Every system in the CDB (a deleted one is simply absent), with the live nodes whose meta
   * says it is active there. A node starts a system only when no other node claims it: a
   * placement written from a stale view (a hand-over racing an HA move, say) then waits until
   * the other node has stopped it, instead of running it twice.
   */
  readonly systems: ReadonlyArray<{
    readonly id: string
    readonly spec: SystemSpecValue
    readonly claims?: ReadonlyArray<Claim>
  }>
  /** Tasks this node owns that are queued or running. */
  readonly tasks: ReadonlyArray<{ readonly id: string; readonly spec: TaskSpecValue }>
  /** The storage volumes the store describes, as this node can open them (`view.ts`). */
  readonly volumes?: ReadonlyArray<VolumeLocation>
}

/** Where a node finds a volume, and whether it may open it now. */
export interface VolumeLocation {
  readonly id: string
  readonly format: "qcow2" | "raw"
  /** Set once the volume is available where this node can reach it (its pool's node, or a shared pool). */
  readonly path?: string
  /** Why it is not ready ("creating on n2", "its pool p1 is on n2"), when it is not. */
  readonly waiting?: string
}

export type Input =
  | { readonly _tag: "ViewChanged"; readonly view: View }
  | {
      readonly _tag: "Observed"
      readonly domains: ReadonlyArray<{ readonly name: string; readonly state: DomainState }>
    }
  | {
      readonly _tag: "CallDone"
      readonly requestId: number
      /** The domain's state right after the call. */
      readonly observed: Observation
      readonly error?: { readonly reason: VmmError["reason"]; readonly detail: string }
    }
  | { readonly _tag: "DeadlineReached" }

export type Output =
  | {
      readonly _tag: "Call"
      readonly requestId: number
      readonly system: string
      readonly domain: string
      readonly call: DriverCall
    }
  /** Ask the driver for every domain's state (answered with `Observed`). */
  | { readonly _tag: "Observe" }
  | { readonly _tag: "WriteMeta"; readonly system: string; readonly meta: SystemMetaValue }
  | { readonly _tag: "WriteTask"; readonly id: string; readonly spec: TaskSpecValue }
  /** The system's new placement, written by the node that hands it over (cold migration). */
  | { readonly _tag: "WriteSpec"; readonly system: string; readonly spec: SystemSpecValue }
  | { readonly _tag: "ArmDeadline"; readonly atMs: number }

export const domainNameOf = (system: string): string => `acp-${system}`
const systemOfDomain = (domain: string): string | undefined =>
  domain.startsWith("acp-") ? domain.slice(4) : undefined

/** FNV-1a of a string with a seed: stable MACs and UUIDs from ids, no randomness. */
const hash32 = (text: string, seed: number): number => fnv1a32(0x811c9dc5 ^ seed, text)
const hex = (value: number, digits: number) => value.toString(16).padStart(8, "0").slice(-digits)

export const uuidOf = (system: string): string => {
  const [a, b, c, d] = [1, 2, 3, 4].map((seed) => hex(hash32(system, seed), 8))
  return `${a}-${b!.slice(0, 4)}-4${b!.slice(5, 8)}-8${c!.slice(1, 4)}-${c!.slice(4, 8)}${d}`
}
export const macOf = (system: string, index: number): string => {
  const value = hash32(`${system}/${index}`, 7)
  return `52:54:00:${hex((value >>> 16) & 0xff, 2)}:${hex((value >>> 8) & 0xff, 2)}:${hex(value & 0xff, 2)}`
}

type Volumes = ReadonlyMap<string, VolumeLocation>
const noVolumes: Volumes = new Map()

const diskTargets = "bcdefghijklmnopqrstuvwxyz"
export const diskOf = (
  config: Pick<HypervisorConfig, "volumeDir">,
  volume: string,
  index: number,
  volumes: Volumes = noVolumes,
): DomainDisk => {
  const known = volumes.get(volume)
  return {
    target: `vd${index === 0 ? "a" : (diskTargets[index - 1] ?? "z")}`,
    path: known?.path ?? `${config.volumeDir}/${volume}.qcow2`,
    bus: "virtio",
    format: known?.format ?? "qcow2",
    readonly: false,
  }
}

/** Why a system's disks cannot be opened yet (the first volume not ready), or undefined when they can. */
export const disksWaiting = (spec: SystemSpecValue, volumes: Volumes): string | undefined => {
  for (const disk of spec.disks) {
    const known = volumes.get(disk.volume)
    if (known !== undefined && known.path === undefined)
      return `waiting: volume ${disk.volume} ${known.waiting ?? "is not available"}`
  }
  return undefined
}

export const definitionOf = (
  config: Pick<HypervisorConfig, "volumeDir" | "consoleDir">,
  system: string,
  spec: SystemSpecValue,
  volumes: Volumes = noVolumes,
): DomainDefinition => ({
  name: domainNameOf(system),
  uuid: uuidOf(system),
  cpus: spec.cpus,
  memoryMiB: spec.memoryMiB,
  disks: spec.disks.map((disk, index) => ({
    ...diskOf(config, disk.volume, index, volumes),
    bus: disk.bus,
    ...(disk.boot ? { boot: true } : {}),
  })),
  nics: spec.nics.map((nic, index) => ({ mac: nic.mac ?? macOf(system, index), model: nic.model })),
  ...(config.consoleDir === undefined
    ? {}
    : { consoleLog: `${config.consoleDir}/${domainNameOf(system)}.log` }),
})

/** The lifecycle state a domain's observed state corresponds to. */
const stateFor = (observed: Observation, current: SystemState): SystemState => {
  switch (observed) {
    case "running":
      return "running"
    case "paused":
      return "paused"
    case "shutting-down":
      return "stopping"
    case "crashed":
      return "crashed"
    case "shutoff":
    case "absent":
      return current === "defined" ? "defined" : "stopped"
  }
}

/** The shortest path of legal events from `from` to `to` in the system lifecycle (breadth first, in table order). */
export const pathBetween = (from: SystemState, to: SystemState): ReadonlyArray<SystemState> => {
  if (from === to) return []
  const previous = new Map<SystemState, SystemState>([[from, from]])
  const queue: Array<SystemState> = [from]
  for (let index = 0; index < queue.length; index++) {
    const state = queue[index]!
    for (const event of systemLifecycle.events) {
      const next = systemLifecycle.table[state][event]
      if (next === undefined || previous.has(next)) continue
      previous.set(next, state)
      if (next === to) {
        const path: Array<SystemState> = [to]
        let cursor = state
        while (cursor !== from) {
          path.unshift(cursor)
          cursor = previous.get(cursor)!
        }
        return path
      }
      queue.push(next)
    }
  }
  return []
}

type TaskGoal = "running" | "stopped" | "paused" | "absent" | "once"

interface ActiveTask {
  readonly id: string
  spec: TaskSpecValue
  readonly goal: TaskGoal
  /** For one-shot tasks (reboot, attach, detach): the call, once issued. */
  issued: boolean
}

interface Local {
  readonly id: string
  readonly domain: string
  observed: Observation | undefined
  state: SystemState
  sinceMs: number
  inflight:
    | {
        readonly requestId: number
        readonly call: DriverCall["_tag"]
        readonly task?: string
        readonly disks?: ReadonlyArray<DomainDisk>
      }
    | undefined
  /** The disks the driver was last given (defined, attached, detached): published in meta. */
  disks: ReadonlyArray<DomainDisk> | undefined
  stopDeadlineMs: number | undefined
  retryAtMs: number
  startFailures: number
  /** The epoch at which HA fencing held the system; released by a newer spec epoch. */
  heldAtEpoch: number | undefined
  /** The definition last given to the driver, to redefine when the spec changes. */
  defined: string | undefined
  /** A cold migration in progress: the node to hand over to once the domain is gone. */
  migratingTo: string | undefined
  /** The spec epoch at which an HA system was handed to the primary for placement elsewhere. */
  handedOverAtEpoch: number | undefined
  detail: string | undefined
  lastMeta: string | undefined
}

const neverMs = Number.MAX_SAFE_INTEGER
const maxLogLines = 64

export class HypervisorNode {
  readonly config: HypervisorConfig
  private systems = new Map<string, SystemSpecValue>()
  private claims = new Map<string, ReadonlyArray<Claim>>()
  private volumes: Volumes = noVolumes
  private readonly locals = new Map<string, Local>()
  private readonly tasks = new Map<string, ActiveTask>()
  private readonly requests = new Map<number, string>()
  private requestId = 0
  private nextObserveMs: number
  private observing = false
  private haAllowed = false
  /** When HA authority runs out unless a primary's ping renews it (this node's clock). */
  private fenceAtMs = neverMs
  private outputs: Array<Output> = []

  constructor(config: HypervisorConfig, nowMs: number) {
    this.config = config
    this.nextObserveMs = nowMs
  }

  /** Whether this node may run HA systems now. */
  mayRunHa(nowMs: number, authority: Authority): boolean {
    return !authority.fenced && nowMs - authority.leaderContactMs <= this.config.haFenceMs
  }

  handle(input: Input, nowMs: number, authority: Authority): ReadonlyArray<Output> {
    switch (input._tag) {
      case "ViewChanged":
        this.onView(input.view, nowMs)
        break
      case "Observed":
        this.onObserved(input.domains, nowMs)
        break
      case "CallDone":
        this.onCallDone(input, nowMs)
        break
      case "DeadlineReached":
        break
    }
    this.fence(nowMs, authority)
    if (!this.observing && nowMs >= this.nextObserveMs) {
      this.observing = true
      this.outputs.push({ _tag: "Observe" })
    }
    for (const local of [...this.locals.values()]) this.reconcile(local, nowMs, authority)
    for (const task of [...this.tasks.values()]) this.progressTask(task, nowMs)
    for (const local of this.locals.values()) this.publishMeta(local)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  // ---- inputs ------------------------------------------------------------------------------

  private onView(view: View, nowMs: number): void {
    this.systems = new Map(view.systems.map((system) => [system.id, system.spec]))
    this.claims = new Map(view.systems.map((system) => [system.id, system.claims ?? []]))
    this.volumes = new Map((view.volumes ?? []).map((volume) => [volume.id, volume]))
    for (const [id, spec] of this.systems) {
      // Ours, or ours once (this node's own meta still claims it, from before a restart, say).
      const claimed = this.claims.get(id)!.some((claim) => claim.node === this.config.self)
      if ((spec.node === this.config.self || claimed) && !this.locals.has(id)) this.track(id, nowMs)
    }
    for (const { id, spec } of view.tasks) {
      const known = this.tasks.get(id)
      if (known !== undefined) continue
      if (spec.owner !== this.config.self || (spec.state !== "queued" && spec.state !== "running")) continue
      const goal = goalOf(spec)
      if (goal === undefined) {
        this.tasks.set(id, { id, spec, goal: "once", issued: true })
        this.finishTask(id, "failed", nowMs, `unknown operation ${spec.operation}`)
        continue
      }
      const task: ActiveTask = { id, spec, goal, issued: false }
      this.tasks.set(id, task)
      if (spec.state === "queued") {
        task.spec = { ...spec, state: "running" }
        this.log(task, nowMs, `started on ${this.config.self}`)
      }
      if (spec.operation === "hypervisor.migrate") {
        const local = this.locals.get(spec.target.id)
        const to = spec.parameters.to
        if (local !== undefined && to !== undefined && to !== this.config.self) local.migratingTo = to
      }
    }
  }

  private track(id: string, nowMs: number): Local {
    const local: Local = {
      id,
      domain: domainNameOf(id),
      observed: undefined,
      state: "defined",
      sinceMs: nowMs,
      inflight: undefined,
      stopDeadlineMs: undefined,
      retryAtMs: -neverMs,
      startFailures: 0,
      heldAtEpoch: undefined,
      defined: undefined,
      migratingTo: undefined,
      handedOverAtEpoch: undefined,
      detail: undefined,
      lastMeta: undefined,
      disks: undefined,
    }
    this.locals.set(id, local)
    return local
  }

  private onObserved(
    domains: ReadonlyArray<{ readonly name: string; readonly state: DomainState }>,
    nowMs: number,
  ) {
    this.observing = false
    this.nextObserveMs = nowMs + this.config.observeEveryMs
    const seen = new Set<string>()
    for (const domain of domains) {
      const id = systemOfDomain(domain.name)
      if (id === undefined) continue
      seen.add(id)
      // A domain of ours that the CDB does not place here (an orphan): tracked so it is removed.
      const local = this.locals.get(id) ?? this.track(id, nowMs)
      if (local.inflight === undefined) this.observe(local, domain.state, nowMs)
    }
    for (const local of this.locals.values())
      if (!seen.has(local.id) && local.inflight === undefined) this.observe(local, "absent", nowMs)
  }

  private onCallDone(input: Input & { readonly _tag: "CallDone" }, nowMs: number): void {
    const id = this.requests.get(input.requestId)
    this.requests.delete(input.requestId)
    const local = id === undefined ? undefined : this.locals.get(id)
    if (local === undefined || local.inflight?.requestId !== input.requestId) return
    const { call, task: taskId, disks } = local.inflight
    local.inflight = undefined
    const task = taskId === undefined ? undefined : this.tasks.get(taskId)
    if (input.error === undefined) {
      if (call === "start") local.startFailures = 0
      if (call === "define") {
        local.defined = this.definitionKey(local)
        local.disks = disks
      }
      if (call === "undefine") {
        local.defined = undefined
        local.disks = undefined
      }
      if (call === "attach") local.disks = [...(local.disks ?? []), ...(disks ?? [])]
      if (call === "detach")
        local.disks = (local.disks ?? []).filter(
          (disk) => !(disks ?? []).some((gone) => gone.target === disk.target),
        )
      if (task !== undefined) this.log(task, nowMs, `${call}: ok`)
      if (call === "detach" && task !== undefined) this.dropDisk(local.id, task.spec.parameters.volume)
      if (task !== undefined && task.goal === "once" && task.issued)
        this.finishTask(task.id, "succeeded", nowMs)
      local.detail = undefined
    } else {
      local.retryAtMs = nowMs + this.config.retryMs
      local.detail = `${call} failed: ${input.error.reason}: ${input.error.detail}`
      if (call === "start") {
        local.startFailures++
        // A start that failed leaves the system stopped (the table's start-failed).
        if (local.state === "starting") this.move(local, "stopped", nowMs)
      }
      if (task !== undefined) {
        this.log(task, nowMs, local.detail)
        if (call === "attach") this.dropDisk(local.id, task.spec.parameters.volume)
        if (task.goal === "once") this.finishTask(task.id, "failed", nowMs, local.detail)
        else if (call === "start" && local.startFailures >= this.config.maxStartFailures)
          this.finishTask(
            task.id,
            "failed",
            nowMs,
            `${local.startFailures} starts failed; last: ${local.detail}`,
          )
      }
    }
    this.observe(local, input.observed, nowMs)
  }

  /** The disk leaves the spec once the node has detached it, or when attaching it failed. */
  private dropDisk(system: string, volume: string | undefined): undefined {
    const spec = this.systems.get(system)
    if (spec === undefined || volume === undefined || !spec.disks.some((disk) => disk.volume === volume))
      return
    const next = { ...spec, disks: spec.disks.filter((disk) => disk.volume !== volume) }
    this.systems.set(system, next)
    this.outputs.push({ _tag: "WriteSpec", system, spec: next })
  }

  private observe(local: Local, observed: Observation, nowMs: number): void {
    local.observed = observed
    const stopping = observed === "running" || observed === "shutting-down"
    if (!stopping) local.stopDeadlineMs = undefined
    // A guest asked to shut down may keep running a while (or ignore it): it is stopping.
    const target =
      stopping && local.stopDeadlineMs !== undefined ? "stopping" : stateFor(observed, local.state)
    this.move(local, target, nowMs)
  }

  /** Asks the guest to shut down once, then destroys the domain when `stopTimeoutMs` has passed. */
  private stopGracefully(local: Local, nowMs: number): undefined {
    if (local.stopDeadlineMs === undefined) {
      local.stopDeadlineMs = nowMs + this.config.stopTimeoutMs
      return this.call(local, { _tag: "shutdown" }, nowMs, "stop")
    }
    if (nowMs < local.stopDeadlineMs) return
    const task = this.activeTaskFor(local.id)
    if (task !== undefined) this.log(task, nowMs, "the guest did not shut down in time: destroying it")
    return this.call(local, { _tag: "destroy" }, nowMs, "kill")
  }

  // ---- fencing -------------------------------------------------------------------------------

  private fence(nowMs: number, authority: Authority): void {
    const allowed = this.mayRunHa(nowMs, authority)
    if (allowed) {
      this.haAllowed = true
      // Woken at that instant: the primary's fence bound counts on HA systems stopping on time.
      this.fenceAtMs = authority.leaderContactMs + this.config.haFenceMs + 1
      return
    }
    this.fenceAtMs = neverMs
    // Without authority, every HA system here is held (also at boot, before any contact).
    for (const local of this.locals.values()) {
      const spec = this.systems.get(local.id)
      if (spec === undefined || !spec.ha || spec.node !== this.config.self || local.heldAtEpoch !== undefined)
        continue
      local.heldAtEpoch = spec.epoch ?? 0
      local.detail = this.haAllowed
        ? `held: no primary has heard this node for ${this.config.haFenceMs} ms (fenced)`
        : "held: started without a primary's contact; the primary releases it"
    }
    this.haAllowed = false
  }

  // ---- reconciliation ------------------------------------------------------------------------

  private definitionKey(local: Local): string | undefined {
    const spec = this.systems.get(local.id)
    return spec === undefined
      ? undefined
      : JSON.stringify(definitionOf(this.config, local.id, spec, this.volumes))
  }

  private activeTaskFor(system: string): ActiveTask | undefined {
    for (const task of this.tasks.values()) if (task.spec.target.id === system) return task
    return undefined
  }

  private call(local: Local, call: DriverCall, nowMs: number, event?: SystemEvent): undefined {
    const requestId = ++this.requestId
    const task = this.activeTaskFor(local.id)
    const disks =
      call._tag === "define"
        ? call.definition.disks
        : call._tag === "attach" || call._tag === "detach"
          ? [call.disk]
          : undefined
    local.inflight = {
      requestId,
      call: call._tag,
      ...(task === undefined ? {} : { task: task.id }),
      ...(disks === undefined ? {} : { disks }),
    }
    this.requests.set(requestId, local.id)
    if (event !== undefined) {
      const moved = transition(systemLifecycle, local.id, local.state, event)
      if (moved._tag === "Moved") {
        local.state = moved.to
        local.sinceMs = nowMs
      }
    }
    if (task !== undefined) this.log(task, nowMs, `${call._tag} ${local.domain}`)
    this.outputs.push({ _tag: "Call", requestId, system: local.id, domain: local.domain, call })
  }

  private reconcile(local: Local, nowMs: number, authority: Authority): undefined {
    if (local.inflight !== undefined || local.observed === undefined) return
    const spec = this.systems.get(local.id)
    const mine = spec !== undefined && spec.node === this.config.self
    if (mine && local.heldAtEpoch !== undefined && (spec.epoch ?? 0) > local.heldAtEpoch) {
      local.heldAtEpoch = undefined
      local.detail = undefined
    }
    // A handed-over HA system placed here again by the primary (a newer epoch): ours to run again.
    if (mine && local.handedOverAtEpoch !== undefined && (spec.epoch ?? 0) > local.handedOverAtEpoch) {
      local.handedOverAtEpoch = undefined
      local.migratingTo = undefined
    }
    const held = mine && spec.ha && local.heldAtEpoch !== undefined
    const observed = local.observed
    const active = observed === "running" || observed === "paused" || observed === "shutting-down"
    // Fenced HA systems go at once; nothing else waits for a retry.
    if (held && active) return this.call(local, { _tag: "destroy" }, nowMs, "kill")
    if (nowMs < local.retryAtMs) return
    const leaving = !mine || local.migratingTo !== undefined
    if (leaving) {
      if (active) {
        // A system handed over by migration stops gracefully; one that is simply not ours any more, at once.
        if (local.migratingTo !== undefined && observed !== "paused") return this.stopGracefully(local, nowMs)
        return this.call(local, { _tag: "destroy" }, nowMs, "kill")
      }
      if (observed !== "absent") return this.call(local, { _tag: "undefine" }, nowMs)
      if (
        local.migratingTo !== undefined &&
        spec !== undefined &&
        spec.node === this.config.self &&
        spec.ha
      ) {
        // HA: only the primary places it (it may have moved it already, if it lost this node);
        // this node says it has let go, in its meta, and waits for the new placement.
        if (local.handedOverAtEpoch !== undefined) return
        local.handedOverAtEpoch = spec.epoch ?? 0
        const task = this.activeTaskFor(local.id)
        if (task !== undefined)
          this.finishTask(
            task.id,
            "succeeded",
            nowMs,
            undefined,
            `stopped and handed to the primary, which places it on ${local.migratingTo}`,
          )
        return
      }
      if (local.migratingTo !== undefined && spec !== undefined && spec.node === this.config.self) {
        const to = local.migratingTo
        local.migratingTo = undefined
        this.publishMeta(local)
        this.outputs.push({
          _tag: "WriteSpec",
          system: local.id,
          spec: { ...spec, node: to as typeof spec.node & string, epoch: (spec.epoch ?? 0) + 1 },
        })
        const task = this.activeTaskFor(local.id)
        if (task !== undefined)
          this.finishTask(task.id, "succeeded", nowMs, undefined, `handed over to ${to}, which starts it`)
        return
      }
      if (!mine) {
        this.publishMeta(local)
        this.locals.delete(local.id)
        const task = this.activeTaskFor(local.id)
        if (task?.goal === "absent") this.finishTask(task.id, "succeeded", nowMs)
      }
      return
    }
    // The definition is compared (serialised) only when it could be rewritten: the domain is off.
    // It is written once every volume it names is available here (one being made waits).
    if (
      observed === "absent" ||
      ((observed === "shutoff" || observed === "crashed") && local.defined !== this.definitionKey(local))
    ) {
      const waiting = disksWaiting(spec!, this.volumes)
      if (waiting !== undefined) {
        local.detail = waiting
        return
      }
      if (local.detail?.startsWith("waiting: volume") === true) local.detail = undefined
      return this.call(
        local,
        { _tag: "define", definition: definitionOf(this.config, local.id, spec!, this.volumes) },
        nowMs,
      )
    }
    const desired = held ? "stopped" : spec!.desired
    const claimedElsewhere = (this.claims.get(local.id) ?? []).find(
      (claim) => claim.node !== this.config.self,
    )
    if (claimedElsewhere !== undefined && (desired === "running" || desired === "paused")) {
      if (observed === "shutoff" || observed === "crashed")
        local.detail = `waiting: ${claimedElsewhere.node} still reports it ${claimedElsewhere.state}`
      return
    }
    const mayStart = !spec!.ha || (this.mayRunHa(nowMs, authority) && authority.caughtUp !== false)
    const task = this.activeTaskFor(local.id)
    if (task !== undefined && !task.issued && task.goal === "once") {
      const operation = task.spec.operation
      if (operation === "hypervisor.reboot") {
        task.issued = true
        if (observed !== "running")
          return this.finishTask(task.id, "failed", nowMs, `the system is ${local.state}`)
        return this.call(local, { _tag: "reboot" }, nowMs, "reboot")
      }
      if (operation === "hypervisor.attach" || operation === "hypervisor.detach") {
        const volume = task.spec.parameters.volume ?? ""
        const known = this.volumes.get(volume)
        if (operation === "hypervisor.attach" && active && known !== undefined && known.path === undefined) {
          local.detail = `waiting: volume ${volume} ${known.waiting ?? "is not available"}`
          return
        }
        task.issued = true
        if (!active) {
          // A stopped domain's disks follow its definition, which the reconciliation above
          // has already rewritten from the spec (attach); detach takes the disk out of the spec.
          if (operation === "hypervisor.detach") this.dropDisk(local.id, volume)
          return this.finishTask(
            task.id,
            "succeeded",
            nowMs,
            undefined,
            "changed in the definition; the system is stopped",
          )
        }
        const index = spec!.disks.findIndex((disk) => disk.volume === volume)
        const disk = diskOf(this.config, volume, index < 0 ? spec!.disks.length : index, this.volumes)
        const target = task.spec.parameters.target
        const call = operation === "hypervisor.attach" ? "attach" : "detach"
        return this.call(
          local,
          { _tag: call, disk: target === undefined ? disk : { ...disk, target } },
          nowMs,
        )
      }
    }
    switch (desired) {
      case "running":
        if (observed === "shutoff" || observed === "crashed") {
          if (!mayStart) {
            local.detail = "waiting: no primary hears this node, so it may not start an HA system"
            return
          }
          if (local.startFailures >= this.config.maxStartFailures && task === undefined) return
          return this.call(local, { _tag: "start" }, nowMs, "start")
        }
        if (observed === "paused") return this.call(local, { _tag: "resume" }, nowMs, "resume")
        return
      case "paused":
        if (observed === "running") return this.call(local, { _tag: "suspend" }, nowMs, "pause")
        if ((observed === "shutoff" || observed === "crashed") && mayStart) {
          if (local.startFailures >= this.config.maxStartFailures && task === undefined) return
          return this.call(local, { _tag: "start" }, nowMs, "start")
        }
        return
      case "stopped":
        if (observed === "running" || observed === "shutting-down") return this.stopGracefully(local, nowMs)
        if (observed === "paused") return this.call(local, { _tag: "destroy" }, nowMs, "kill")
        return
    }
  }

  /** Moves the lifecycle state to `to` along legal events only. */
  private move(local: Local, to: SystemState, nowMs: number): undefined {
    if (local.state === to || pathBetween(local.state, to).length === 0) return
    local.state = to
    local.sinceMs = nowMs
  }

  // ---- tasks ---------------------------------------------------------------------------------

  private progressTask(task: ActiveTask, nowMs: number): undefined {
    if (!this.tasks.has(task.id)) return
    const local = this.locals.get(task.spec.target.id)
    const spec = this.systems.get(task.spec.target.id)
    if (nowMs - task.spec.createdMs > this.config.taskTimeoutMs)
      return this.finishTask(
        task.id,
        "failed",
        nowMs,
        `timed out after ${this.config.taskTimeoutMs} ms; ${local?.detail ?? ""}`.trim(),
      )
    switch (task.goal) {
      case "absent":
        if (spec === undefined && local === undefined) this.finishTask(task.id, "succeeded", nowMs)
        return
      case "once":
        if (spec === undefined || spec.node !== this.config.self)
          if (task.spec.operation !== "hypervisor.migrate")
            this.finishTask(task.id, "failed", nowMs, "the system is not on this node")
        return
      default: {
        if (spec === undefined) return this.finishTask(task.id, "cancelled", nowMs, "the system was deleted")
        if (spec.desired !== task.goal)
          return this.finishTask(
            task.id,
            "cancelled",
            nowMs,
            `superseded: the system is now wanted ${spec.desired}`,
          )
        if (local?.inflight === undefined && local?.observed !== undefined) {
          const reached =
            (task.goal === "running" && local.observed === "running") ||
            (task.goal === "paused" && local.observed === "paused") ||
            (task.goal === "stopped" && (local.observed === "shutoff" || local.observed === "crashed"))
          if (reached) this.finishTask(task.id, "succeeded", nowMs)
        }
      }
    }
  }

  private log(task: ActiveTask, nowMs: number, line: string): undefined {
    const log = [...task.spec.log, { atMs: nowMs, line }].slice(-maxLogLines)
    task.spec = { ...task.spec, log }
    this.outputs.push({ _tag: "WriteTask", id: task.id, spec: task.spec })
  }

  private finishTask(
    id: string,
    state: "succeeded" | "failed" | "cancelled",
    nowMs: number,
    error?: string,
    note?: string,
  ): undefined {
    const task = this.tasks.get(id)
    if (task === undefined) return
    this.tasks.delete(id)
    const line = state === "succeeded" ? (note ?? "succeeded") : `${state}: ${error ?? ""}`
    task.spec = {
      ...task.spec,
      state,
      log: [...task.spec.log, { atMs: nowMs, line }].slice(-maxLogLines),
      ...(error === undefined ? {} : { error }),
    }
    this.outputs.push({ _tag: "WriteTask", id, spec: task.spec })
  }

  // ---- meta ------------------------------------------------------------------------------------

  /** This node's meta slot for a system it runs, or is leaving (so others see when it has stopped). */
  private publishMeta(local: Local): void {
    const spec = this.systems.get(local.id)
    if (spec === undefined) return
    const meta: SystemMetaValue = {
      state: local.state,
      sinceMs: local.sinceMs,
      domainName: local.domain,
      epoch: spec.epoch ?? 0,
      ...(local.heldAtEpoch === undefined ? {} : { held: true }),
      // Set together with migratingTo, and cleared with it.
      ...(local.handedOverAtEpoch === undefined
        ? {}
        : { handoverTo: local.migratingTo as NonNullable<SystemMetaValue["handoverTo"]> }),
      ...(local.detail === undefined ? {} : { detail: local.detail }),
      ...(local.disks === undefined
        ? {}
        : { disks: local.disks.map((disk) => ({ target: disk.target, path: disk.path })) }),
    }
    const key = JSON.stringify(meta)
    if (key === local.lastMeta) return
    local.lastMeta = key
    this.outputs.push({ _tag: "WriteMeta", system: local.id, meta })
  }

  private nextDeadline(nowMs: number): number {
    let next = this.observing ? nowMs + this.config.observeEveryMs : this.nextObserveMs
    if (this.fenceAtMs > nowMs) next = Math.min(next, this.fenceAtMs)
    for (const local of this.locals.values()) {
      if (local.retryAtMs > nowMs) next = Math.min(next, local.retryAtMs)
      if (local.stopDeadlineMs !== undefined && local.stopDeadlineMs > nowMs)
        next = Math.min(next, local.stopDeadlineMs)
    }
    for (const task of this.tasks.values())
      next = Math.min(next, task.spec.createdMs + this.config.taskTimeoutMs + 1)
    return Math.max(next, nowMs + 1)
  }
}

const goalOf = (spec: TaskSpecValue): TaskGoal | undefined => {
  switch (spec.operation) {
    case "hypervisor.create":
    case "hypervisor.start":
    case "hypervisor.resume":
      return spec.operation === "hypervisor.create" && spec.parameters.desired === "stopped"
        ? "stopped"
        : "running"
    case "hypervisor.stop":
      return "stopped"
    case "hypervisor.suspend":
      return "paused"
    case "hypervisor.destroy":
      return "absent"
    case "hypervisor.reboot":
    case "hypervisor.attach":
    case "hypervisor.detach":
    case "hypervisor.migrate":
      return "once"
    default:
      return undefined
  }
}
