/**
 * The hypervisor service on a real node. Its core runs inside the node's composition
 * (`core/hypervisor/service.ts`, the same object the simulator plugs in); here is its port: the
 * VMM executor that carries the core's driver calls out (each on its own fiber, so a slow QEMU
 * start never stalls the node) and answers with the domain's state, the console, and statistics:
 * each running system's (from the VMM) and the host's (from systeminformation).
 */
import { uptime } from "node:os"
import { Effect, Schedule } from "effect"
import si from "systeminformation"
import {
  type DriverCall,
  defaultHypervisorTimings,
  definitionOf,
  domainNameOf,
  type Observation,
} from "../../core/hypervisor/hypervisor.ts"
import { encodeValue as json } from "../../core/hypervisor/values.ts"
import { systemsIn } from "../../core/hypervisor/view.ts"
import { Vmm, type VmmError } from "../../core/ports/vmm.ts"
import type { RunningNode, ServiceExecutor } from "./node.ts"

export { decodeValue as parse, encodeValue as json } from "../../core/hypervisor/values.ts"

export interface HypervisorOptions {
  readonly self: string
  readonly volumeDir: string
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

export const systemsOf = (running: RunningNode) => systemsIn(running)

/** The VMM port's executor: a driver call, then the domain's state right after it; or the domain list. */
const executor = (vmm: Vmm["Service"]): ServiceExecutor<"hypervisor"> => {
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
  return (effect, answer) => {
    if (effect._tag === "Observe")
      return vmm.list.pipe(
        Effect.flatMap((domains) => answer({ _tag: "Observed", domains })),
        Effect.catch((error: VmmError) => Effect.logWarning("cannot list domains", { detail: error.detail })),
      )
    return Effect.gen(function* () {
      const error = yield* execute(effect.domain, effect.call).pipe(
        Effect.as(undefined),
        Effect.catch((error: VmmError) => Effect.succeed(error)),
      )
      if (error !== undefined)
        yield* Effect.logWarning("driver call failed", {
          system: effect.system,
          call: effect.call._tag,
          reason: error.reason,
          detail: error.detail,
        })
      const observed = yield* observedAfter(effect.domain)
      yield* answer({
        _tag: "CallDone",
        requestId: effect.requestId,
        observed,
        ...(error === undefined ? {} : { error: { reason: error.reason, detail: error.detail } }),
      })
    })
  }
}

/**
 * The hypervisor service's run: connects the VMM, plugs its executor into the node (the
 * composition runs the hypervisor core and, on the primary, HA), then publishes statistics until
 * it is stopped.
 */
export const runHypervisor = (running: RunningNode, options: HypervisorOptions, ready: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const vmm = yield* Vmm
    const capabilities = yield* vmm.capabilities
    yield* Effect.logInfo("hypervisor connected", {
      driver: capabilities.driver,
      host: capabilities.hostname,
    })
    const cpuCount = (yield* Effect.promise(() => si.cpu())).cores
    const cpuSeen = new Map<string, { cpuTimeNs: bigint; atMs: number }>()
    const definitionConfig = { ...defaultHypervisorTimings, self: options.self, volumeDir: options.volumeDir }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        running.attach("hypervisor", executor(vmm))
        running.console = (system, maxBytes) => vmm.console(domainNameOf(system), maxBytes)
        running.domains = vmm.list
      }),
      () =>
        Effect.sync(() => {
          running.attach("hypervisor", undefined)
          running.console = undefined
          running.domains = undefined
        }),
    )

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
        const io = yield* Effect.option(
          vmm.io(domain, definitionOf(definitionConfig, system.id, system.spec)),
        )
        const now = performance.now()
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

    yield* ready
    yield* statistics.pipe(Effect.repeat(Schedule.spaced("2 seconds")))
  })
