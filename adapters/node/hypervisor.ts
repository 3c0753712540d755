/**
 * The hypervisor service on a real node: feeds the hypervisor core what the CDB holds and what
 * the VMM reports, carries its driver calls out through the VMM port (each on its own fiber, so
 * a slow QEMU start never stalls the node), writes its meta, tasks and hand-overs to the CDB,
 * and publishes statistics: each running system's (from the VMM) and the host's (from
 * systeminformation). On the primary it also runs the HA decisions.
 */
import { uptime } from "node:os"
import { Effect, Schedule, Semaphore } from "effect"
import si from "systeminformation"
import { haActions, storeInSync } from "../../core/hypervisor/ha.ts"
import {
  type DriverCall,
  defaultHypervisorTimings,
  definitionOf,
  domainNameOf,
  HypervisorNode,
  type Input,
  type Observation,
  type Output,
  type SystemMetaValue,
} from "../../core/hypervisor/hypervisor.ts"
import { PendingWrites, type ServiceWrite } from "../../core/hypervisor/pending.ts"
import { defaultSchedulerPolicy, type NodeCapacity } from "../../core/hypervisor/scheduler.ts"
import { encodeValue as json, decodeValue as parse } from "../../core/hypervisor/values.ts"
import { systemsIn, viewIn } from "../../core/hypervisor/view.ts"
import { Vmm, type VmmError } from "../../core/ports/vmm.ts"
import type { RunningNode } from "./node.ts"

export { decodeValue as parse, encodeValue as json } from "../../core/hypervisor/values.ts"

/** How long the hypervisor waits before writing again what its node refused. */
const serviceRetryMs = 500

/** How recent a majority's digests must be for this node to start an HA system (3 CDB heartbeats). */
const caughtUpWindowMs = 600

export interface HypervisorOptions {
  readonly self: string
  /** Every member of the cluster, this node included (majorities for the store's freshness). */
  readonly members: ReadonlyArray<string>
  readonly volumeDir: string
  readonly consoleDir?: string
  readonly haFenceMs?: number
  readonly stopTimeoutMs?: number
  /** Extra wait the primary adds to the fence bound: message delay, drift, a tick. */
  readonly haMarginMs?: number
}

/** The host's statistics, in the node kind's stats schema (the CPU count is read once). */
const hostStats = (cpuCount: number) =>
  Effect.tryPromise(async () => {
    // Not si.time(): it runs `date` with execSync on every call, stalling the event loop (and
    // every datagram behind it) for milliseconds every 2 s; os.uptime() is the same figure.
    const [memory, load] = await Promise.all([si.mem(), si.currentLoad()])
    return {
      cpuCount,
      cpuUsage: Math.round(load.currentLoad * 100),
      memoryTotalBytes: memory.total,
      memoryUsedBytes: memory.active,
      load1Hundredths: Math.round((load.avgLoad ?? 0) * 100),
      uptimeMs: Math.round(uptime() * 1000),
    }
  })

/** The nodes as the scheduler sees them: membership from the monitor, capacity from each node's stats. */
export const nodeCapacities = (running: RunningNode): ReadonlyArray<NodeCapacity> => {
  const status = running.status()
  return status.members.map((member) => {
    const stats = parse<{ cpuCount: number; memoryTotalBytes: number; cpuUsage: number }>(
      running.statsOf("node", member.id).find((slot) => slot.node === member.id)?.value,
    )
    const service = parse<{ state: string; reason?: string }>(
      running.metaOf("service", `${member.id}.hypervisor`).find((slot) => slot.node === member.id)?.value,
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
      fenced: member.id === status.node && status.fenced,
      roles: [],
      cpuCount: stats?.cpuCount ?? 0,
      memoryMiB: Math.floor((stats?.memoryTotalBytes ?? 0) / 1024 / 1024),
      cpuUsageHundredths: stats?.cpuUsage ?? 0,
    }
  })
}

export const systemsOf = (running: RunningNode) => systemsIn(running)

export const runHypervisor = (running: RunningNode, options: HypervisorOptions, ready: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const vmm = yield* Vmm
    const capabilities = yield* vmm.capabilities
    yield* Effect.logInfo("hypervisor connected", {
      driver: capabilities.driver,
      host: capabilities.hostname,
    })
    const config = {
      ...defaultHypervisorTimings,
      self: options.self,
      volumeDir: options.volumeDir,
      ...(options.consoleDir === undefined ? {} : { consoleDir: options.consoleDir }),
      ...(options.haFenceMs === undefined ? {} : { haFenceMs: options.haFenceMs }),
      ...(options.stopTimeoutMs === undefined ? {} : { stopTimeoutMs: options.stopTimeoutMs }),
    }
    const core = new HypervisorNode(config, Date.now())
    const lock = yield* Semaphore.make(1)
    let deadlineMs = 0
    let seenRevision = -1
    const cpuCount = (yield* Effect.promise(() => si.cpu())).cores
    const cpuSeen = new Map<string, { cpuTimeNs: bigint; atMs: number }>()

    const observedAfter = (domain: string) =>
      vmm.info(domain).pipe(
        Effect.map((info): Observation => info.state),
        Effect.catch((error: VmmError) =>
          Effect.succeed<Observation>(error.reason === "no-such-system" ? "absent" : "crashed"),
        ),
      )

    const execute = (domain: string, call: DriverCall): Effect.Effect<void, VmmError> => {
      switch (call._tag) {
        case "define":
          return vmm.define(call.definition)
        case "start":
          return vmm.start(domain)
        case "shutdown":
          return vmm.shutdown(domain)
        case "destroy":
          return vmm.destroy(domain)
        case "reboot":
          return vmm.reboot(domain)
        case "suspend":
          return vmm.suspend(domain)
        case "resume":
          return vmm.resume(domain)
        case "undefine":
          return vmm.undefine(domain)
        case "attach":
          return vmm.attachDisk(domain, call.disk)
        case "detach":
          return vmm.detachDisk(domain, call.disk)
      }
    }

    // What the node refuses (a full disk, a busy stream) is written again, newest per key.
    const pending = new PendingWrites(serviceRetryMs)
    const write = (writes: ReadonlyArray<ServiceWrite>) =>
      running.write(writes).pipe(
        Effect.andThen(Effect.sync(() => pending.accepted(writes))),
        Effect.catch((error) =>
          Effect.sync(() => pending.refused(writes, Date.now())).pipe(
            Effect.andThen(
              Effect.logWarning("hypervisor write refused; it is written again", {
                reason: error.reason,
                detail: error.message,
              }),
            ),
          ),
        ),
      )

    const carryOut = (outputs: ReadonlyArray<Output>): Effect.Effect<void> =>
      Effect.forEach(
        outputs,
        (output) => {
          switch (output._tag) {
            case "Call":
              return Effect.gen(function* () {
                const error = yield* execute(output.domain, output.call).pipe(
                  Effect.as(undefined),
                  Effect.catch((error: VmmError) => Effect.succeed(error)),
                )
                if (error !== undefined)
                  yield* Effect.logWarning("driver call failed", {
                    system: output.system,
                    call: output.call._tag,
                    reason: error.reason,
                    detail: error.detail,
                  })
                const observed = yield* observedAfter(output.domain)
                yield* step({
                  _tag: "CallDone",
                  requestId: output.requestId,
                  observed,
                  ...(error === undefined ? {} : { error: { reason: error.reason, detail: error.detail } }),
                })
              }).pipe(Effect.forkDetach, Effect.asVoid)
            case "Observe":
              return vmm.list.pipe(
                Effect.catch((error: VmmError) =>
                  Effect.logWarning("cannot list domains", { detail: error.detail }).pipe(
                    Effect.as(undefined),
                  ),
                ),
                Effect.flatMap((domains) =>
                  domains === undefined ? Effect.void : step({ _tag: "Observed", domains }),
                ),
                Effect.forkDetach,
                Effect.asVoid,
              )
            case "WriteMeta":
              return write([{ op: "meta", kind: "system", id: output.system, value: json(output.meta) }])
            case "WriteTask":
              return write([{ op: "put", kind: "task", id: output.id, value: json(output.spec) }])
            case "WriteSpec":
              return Effect.logInfo("system spec updated by its node", {
                system: output.system,
                to: output.spec.node,
              }).pipe(
                Effect.andThen(
                  write([{ op: "put", kind: "system", id: output.system, value: json(output.spec) }]),
                ),
              )
            case "ArmDeadline":
              return Effect.sync(() => {
                deadlineMs = output.atMs
              })
          }
        },
        { discard: true },
      )

    const step = (input: Input): Effect.Effect<void> =>
      lock.withPermits(1)(
        Effect.suspend(() => {
          const authority = running.authority()
          const caughtUp = storeInSync({
            self: options.self,
            members: options.members,
            sinceMs: authority.nowMs - caughtUpWindowMs,
            ...running.syncState(),
          })
          const retry = pending.due(authority.nowMs)
          return carryOut(core.handle(input, authority.nowMs, { ...authority, caughtUp })).pipe(
            Effect.andThen(retry.length === 0 ? Effect.void : write(retry)),
          )
        }),
      )

    const view = () => viewIn(options.self, running)

    const tick = Effect.gen(function* () {
      const revision = running.revision()
      if (revision !== seenRevision) {
        seenRevision = revision
        yield* step({ _tag: "ViewChanged", view: view() })
      } else if (Date.now() >= deadlineMs) yield* step({ _tag: "DeadlineReached" })
    })

    /** On the primary: move the HA systems of nodes that have certainly stopped them, release holds. */
    const highAvailability = Effect.gen(function* () {
      const authority = running.authority()
      if (!authority.isPrimary) return
      const inSync = storeInSync({
        self: options.self,
        members: options.members,
        sinceMs: authority.primarySinceMs,
        ...running.syncState(),
      })
      if (!inSync) return
      const actions = haActions({
        nowMs: authority.nowMs,
        self: options.self,
        primarySinceMs: authority.primarySinceMs,
        systems: systemsOf(running),
        metaOf: (system, node) =>
          parse<SystemMetaValue>(running.metaOf("system", system).find((slot) => slot.node === node)?.value),
        lastHeardMs: running.lastHeardMs,
        nodes: nodeCapacities(running),
        timings: {
          haFenceMs: config.haFenceMs,
          quorumWindowMs: authority.quorumWindowMs,
          marginMs: options.haMarginMs ?? 500,
        },
        policy: defaultSchedulerPolicy,
      })
      for (const action of actions) {
        if (action._tag === "Stranded") {
          yield* Effect.logWarning("HA system stranded", {
            system: action.system,
            from: action.from,
            reason: action.reason,
          })
          continue
        }
        yield* Effect.logWarning(
          action._tag === "Move" ? "HA: restarting system elsewhere" : "HA: releasing held system",
          {
            system: action.system,
            ...(action._tag === "Move"
              ? { from: action.from, to: action.to, reason: action.reason }
              : { node: action.node }),
          },
        )
        yield* write([{ op: "put", kind: "system", id: action.system, value: json(action.spec) }])
      }
    })

    /** Statistics: the host's, and each running system's from the VMM. */
    const statistics = Effect.gen(function* () {
      const host = yield* Effect.option(hostStats(cpuCount))
      const values: Array<{ kind: string; id: string; value: Uint8Array }> = []
      if (host._tag === "Some") values.push({ kind: "node", id: options.self, value: json(host.value) })
      for (const system of systemsOf(running)) {
        if (system.spec.node !== options.self) continue
        const domain = domainNameOf(system.id)
        const info = yield* Effect.option(vmm.info(domain))
        if (info._tag === "None" || info.value.state !== "running") continue
        const io = yield* Effect.option(vmm.io(domain, definitionOf(config, system.id, system.spec)))
        const now = Date.now()
        const previous = cpuSeen.get(system.id)
        cpuSeen.set(system.id, { cpuTimeNs: info.value.cpuTimeNs, atMs: now })
        const cpuUsage =
          previous === undefined || now <= previous.atMs || info.value.cpuTimeNs < previous.cpuTimeNs
            ? 0
            : Math.min(
                10_000 * info.value.cpus,
                Math.round(Number(info.value.cpuTimeNs - previous.cpuTimeNs) / ((now - previous.atMs) * 100)),
              )
        const counters = io._tag === "Some" ? io.value : undefined
        values.push({
          kind: "system",
          id: system.id,
          value: json({
            cpuUsage: Math.min(cpuUsage, 10_000),
            memoryUsedBytes: info.value.memoryKiB * 1024,
            diskReadBytes: Number(counters?.diskReadBytes ?? 0n),
            diskWriteBytes: Number(counters?.diskWriteBytes ?? 0n),
            netRxBytes: Number(counters?.netRxBytes ?? 0n),
            netTxBytes: Number(counters?.netTxBytes ?? 0n),
          }),
        })
      }
      if (values.length > 0) yield* running.setStats(values)
    })

    running.console = (system, maxBytes) => vmm.console(domainNameOf(system), maxBytes)
    yield* tick
    yield* ready
    yield* Effect.all(
      [
        tick.pipe(Effect.repeat(Schedule.spaced("50 millis"))),
        highAvailability.pipe(Effect.repeat(Schedule.spaced("250 millis"))),
        statistics.pipe(Effect.repeat(Schedule.spaced("2 seconds"))),
      ],
      { concurrency: "unbounded", discard: true },
    )
  })
