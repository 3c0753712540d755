/**
 * The VMM port on libvirt, through koffi (FFI; no native module of our own to build).
 *
 * - The library, the connection, the lock that serialises calls on it and the reading of
 *   libvirt's last error are shared with the storage adapter (`adapters/libvirt/connection.ts`).
 * - Every domain handle is freed, list arrays are freed after their elements; borrowed strings
 *   (`virDomainGetName`) are not.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs"
import { dirname } from "node:path"
import { Effect, Layer } from "effect"
import koffi from "koffi"
import {
  type DomainDefinition,
  type DomainDisk,
  type DomainIo,
  type DomainState,
  Vmm,
  VmmError,
} from "../../core/ports/vmm.ts"
import { type Fn, loadLibvirt, openConnection } from "../libvirt/connection.ts"
import {
  type DomainType,
  disksOf,
  diskXml,
  domainTypeOf,
  domainXml,
  interfaceDevices,
  serialLogOf,
  withDisks,
} from "./domain-xml.ts"

interface Bindings {
  readonly getType: Fn
  readonly getHostname: Fn
  readonly listAll: Fn
  readonly getName: Fn
  readonly lookup: Fn
  readonly domainFree: Fn
  readonly define: Fn
  readonly create: Fn
  readonly shutdown: Fn
  readonly destroy: Fn
  readonly reboot: Fn
  readonly suspend: Fn
  readonly resume: Fn
  readonly undefine: Fn
  readonly getState: Fn
  readonly getInfo: Fn
  readonly getXml: Fn
  readonly blockStats: Fn
  readonly interfaceStats: Fn
  readonly attach: Fn
  readonly detach: Fn
  readonly free: Fn
  readonly blockStatsSize: number
  readonly interfaceStatsSize: number
}

let bindings: Bindings | undefined

/** Loads libvirt once per process; the types koffi registers are process-wide. */
const loadBindings = (): Bindings => {
  if (bindings !== undefined) return bindings
  const { lib, free } = loadLibvirt()
  koffi.pointer("virDomain", koffi.opaque())
  koffi.struct("virDomainInfo", {
    state: "uint8",
    maxMem: "ulong",
    memory: "ulong",
    nrVirtCpu: "ushort",
    cpuTime: "ulonglong",
  })
  const blockStats = koffi.struct("virDomainBlockStatsStruct", {
    rd_req: "int64",
    rd_bytes: "int64",
    wr_req: "int64",
    wr_bytes: "int64",
    errs: "int64",
  })
  const interfaceStats = koffi.struct("virDomainInterfaceStatsStruct", {
    rx_bytes: "int64",
    rx_packets: "int64",
    rx_errs: "int64",
    rx_drop: "int64",
    tx_bytes: "int64",
    tx_packets: "int64",
    tx_errs: "int64",
    tx_drop: "int64",
  })
  bindings = {
    getType: lib.func("const char *virConnectGetType(virConnect *conn)"),
    getHostname: lib.func("LibvirtString virConnectGetHostname(virConnect *conn)"),
    listAll: lib.func(
      "int virConnectListAllDomains(virConnect *conn, _Out_ virDomain ***domains, unsigned int flags)",
    ),
    getName: lib.func("const char *virDomainGetName(virDomain *dom)"),
    lookup: lib.func("virDomain *virDomainLookupByName(virConnect *conn, const char *name)"),
    domainFree: lib.func("int virDomainFree(virDomain *dom)"),
    define: lib.func("virDomain *virDomainDefineXML(virConnect *conn, const char *xml)"),
    create: lib.func("int virDomainCreate(virDomain *dom)"),
    shutdown: lib.func("int virDomainShutdown(virDomain *dom)"),
    destroy: lib.func("int virDomainDestroy(virDomain *dom)"),
    reboot: lib.func("int virDomainReboot(virDomain *dom, unsigned int flags)"),
    suspend: lib.func("int virDomainSuspend(virDomain *dom)"),
    resume: lib.func("int virDomainResume(virDomain *dom)"),
    undefine: lib.func("int virDomainUndefine(virDomain *dom)"),
    getState: lib.func(
      "int virDomainGetState(virDomain *dom, _Out_ int *state, _Out_ int *reason, unsigned int flags)",
    ),
    getInfo: lib.func("int virDomainGetInfo(virDomain *dom, _Out_ virDomainInfo *info)"),
    getXml: lib.func("LibvirtString virDomainGetXMLDesc(virDomain *dom, unsigned int flags)"),
    blockStats: lib.func(
      "int virDomainBlockStats(virDomain *dom, const char *disk, _Out_ virDomainBlockStatsStruct *stats, size_t size)",
    ),
    interfaceStats: lib.func(
      "int virDomainInterfaceStats(virDomain *dom, const char *dev, _Out_ virDomainInterfaceStatsStruct *stats, size_t size)",
    ),
    attach: lib.func("int virDomainAttachDeviceFlags(virDomain *dom, const char *xml, unsigned int flags)"),
    detach: lib.func("int virDomainDetachDeviceFlags(virDomain *dom, const char *xml, unsigned int flags)"),
    free,
    blockStatsSize: koffi.sizeof(blockStats),
    interfaceStatsSize: koffi.sizeof(interfaceStats),
  }
  return bindings
}

/** libvirt's `virErrorNumber`s that say which kind of failure it was. */
const reasonOf = (code: number, operation: string): VmmError["reason"] => {
  switch (code) {
    case 42: // VIR_ERR_NO_DOMAIN
      return "no-such-system"
    case 55: // VIR_ERR_OPERATION_INVALID
      return "invalid-state"
    case 27: // VIR_ERR_XML_ERROR
    case 35: // VIR_ERR_XML_DETAIL
    case 67: // VIR_ERR_CONFIG_UNSUPPORTED
      return "invalid-definition"
    case 8: // VIR_ERR_INVALID_ARG
      return operation === "define" ? "invalid-definition" : "failed"
    case 3: // VIR_ERR_NO_SUPPORT
    case 84: // VIR_ERR_OPERATION_UNSUPPORTED
      return "unsupported"
    case 5: // VIR_ERR_NO_CONNECT
    case 45: // VIR_ERR_AUTH_FAILED
      return "connection"
    default:
      return "failed"
  }
}

/** libvirt's `virDomainState` in the port's words. */
const stateOf = (state: number): DomainState => {
  switch (state) {
    case 1: // RUNNING
    case 2: // BLOCKED
      return "running"
    case 3: // PAUSED
    case 7: // PMSUSPENDED
      return "paused"
    case 4: // SHUTDOWN: being shut down
      return "shutting-down"
    case 6: // CRASHED
      return "crashed"
    default: // NOSTATE, SHUTOFF
      return "shutoff"
  }
}

export interface LibvirtOptions {
  /** `test:///default`, `qemu:///session`, `qemu:///system`, … */
  readonly uri: string
  /** The `<domain type>` to define; by default `test` for the test driver and `qemu` otherwise. */
  readonly domainType?: DomainType
}

export const makeLibvirtVmm = (options: LibvirtOptions) =>
  Effect.gen(function* () {
    const b = yield* Effect.try({
      try: loadBindings,
      catch: (error) =>
        new VmmError({
          reason: "connection",
          operation: "load",
          system: "",
          detail: `cannot load libvirt.so.0 (apt-get install libvirt0): ${error instanceof Error ? error.message : String(error)}`,
        }),
    })
    const domainType: DomainType = options.domainType ?? (options.uri.startsWith("test:") ? "test" : "qemu")
    const connection = yield* openConnection(options.uri).pipe(
      Effect.mapError(
        (failure) =>
          new VmmError({
            reason: "connection",
            operation: "open",
            system: options.uri,
            detail: failure.message,
          }),
      ),
    )
    const conn = connection.pointer

    /** Runs one libvirt call under the lock; a failure becomes a `VmmError` with libvirt's code and message. */
    const run = <A>(operation: string, system: string, fn: Fn, args: ReadonlyArray<unknown>) =>
      connection.run<A>(fn, args).pipe(
        Effect.mapError(
          (failure) =>
            new VmmError({
              reason: reasonOf(failure.code, operation),
              operation,
              system,
              detail: failure.message,
              ...(failure.code === -1 ? {} : { code: failure.code }),
            }),
        ),
      )

    /** Looks a domain up by name, runs `f` on it, and frees the handle whatever happens. */
    const withDomain = <A>(
      operation: string,
      name: string,
      f: (domain: unknown) => Effect.Effect<A, VmmError>,
    ): Effect.Effect<A, VmmError> =>
      Effect.acquireUseRelease(run<unknown>(operation, name, b.lookup, [conn, name]), f, (domain) =>
        Effect.sync(() => b.domainFree(domain)),
      )

    const stateNow = (name: string, domain: unknown) =>
      Effect.gen(function* () {
        const state = [0]
        const reason = [0]
        yield* run("state", name, b.getState, [domain, state, reason, 0])
        return stateOf(state[0] ?? 0)
      })

    /** Fails with `invalid-state` unless the domain is in one of `allowed`, the same way on every driver. */
    const requireState = (
      operation: string,
      name: string,
      domain: unknown,
      allowed: ReadonlyArray<DomainState>,
    ) =>
      Effect.gen(function* () {
        const state = yield* stateNow(name, domain)
        if (!allowed.includes(state))
          return yield* Effect.fail(
            new VmmError({
              reason: "invalid-state",
              operation,
              system: name,
              detail: `the domain is ${state}; ${operation} needs ${allowed.join(" or ")}`,
            }),
          )
      })

    const simple =
      (operation: string, fn: Fn, allowed: ReadonlyArray<DomainState>, extra: ReadonlyArray<unknown> = []) =>
      (name: string) =>
        withDomain(operation, name, (domain) =>
          requireState(operation, name, domain, allowed).pipe(
            Effect.andThen(run(operation, name, fn, [domain, ...extra])),
            Effect.asVoid,
          ),
        )

    const xmlOf = (name: string, domain: unknown) => run<string>("xml", name, b.getXml, [domain, 0])

    const io = (name: string, definition: DomainDefinition) =>
      withDomain("io", name, (domain) =>
        Effect.gen(function* () {
          let diskReadBytes = 0n
          let diskWriteBytes = 0n
          for (const disk of definition.disks) {
            const stats: Record<string, number> = {}
            yield* run("io", name, b.blockStats, [domain, disk.target, stats, b.blockStatsSize])
            diskReadBytes += BigInt(Math.max(0, stats.rd_bytes ?? 0))
            diskWriteBytes += BigInt(Math.max(0, stats.wr_bytes ?? 0))
          }
          let netRxBytes = 0n
          let netTxBytes = 0n
          for (const device of interfaceDevices(yield* xmlOf(name, domain))) {
            const stats: Record<string, number> = {}
            yield* run("io", name, b.interfaceStats, [domain, device, stats, b.interfaceStatsSize])
            netRxBytes += BigInt(Math.max(0, stats.rx_bytes ?? 0))
            netTxBytes += BigInt(Math.max(0, stats.tx_bytes ?? 0))
          }
          return { diskReadBytes, diskWriteBytes, netRxBytes, netTxBytes } satisfies DomainIo
        }),
      )

    /**
     * A running domain changes live and in its definition; a stopped one by redefinition, which
     * every driver can do (libvirt's test driver cannot hot-plug at all: that is `unsupported`).
     */
    const deviceChange = (operation: "attach" | "detach", fn: Fn) => (name: string, disk: DomainDisk) =>
      withDomain(operation, name, (domain) =>
        Effect.gen(function* () {
          const state = yield* stateNow(name, domain)
          if (state === "shutoff" || state === "crashed") {
            const xml = yield* run<string>(operation, name, b.getXml, [domain, 2]) // VIR_DOMAIN_XML_INACTIVE
            const present = disksOf(xml).some((existing) => existing.target === disk.target)
            if (present === (operation === "attach"))
              return yield* Effect.fail(
                new VmmError({
                  reason: "invalid-state",
                  operation,
                  system: name,
                  detail: present ? `a disk is already on ${disk.target}` : `no disk is on ${disk.target}`,
                }),
              )
            const next = withDisks(xml, operation === "attach" ? { add: disk } : { remove: disk.target })
            const redefined = yield* run<unknown>(operation, name, b.define, [conn, next])
            b.domainFree(redefined)
            return
          }
          // VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG
          yield* run(operation, name, fn, [domain, diskXml(disk), 3]).pipe(
            Effect.mapError((error) =>
              error.reason === "unsupported"
                ? new VmmError({
                    ...error,
                    detail: `${error.detail}; this driver cannot hot-plug: stop the system, then ${operation} the disk`,
                  })
                : error,
            ),
          )
        }),
      )

    return Vmm.of({
      capabilities: connection.locked(
        Effect.sync(() => ({
          driver: String(b.getType(conn) ?? "unknown"),
          hostname: String(b.getHostname(conn) ?? ""),
          liveMigration: false,
          console: domainType !== "test",
        })),
      ),
      list: Effect.gen(function* () {
        const out: Array<unknown> = [null]
        const count = yield* run<number>("list", "", b.listAll, [conn, out, 0])
        // The handles are this call's own: reading and freeing them needs only the lock.
        return yield* connection.locked(
          Effect.sync(() => {
            const pointers = count === 0 ? [] : (koffi.decode(out[0], "virDomain *", count) as Array<unknown>)
            const domains = pointers.map((pointer) => {
              const name = String(b.getName(pointer))
              const state = [0]
              const reason = [0]
              b.getState(pointer, state, reason, 0)
              b.domainFree(pointer)
              return { name, state: stateOf(state[0] ?? 0) }
            })
            if (out[0] !== null) b.free(out[0])
            return domains
          }),
        )
      }),
      define: (definition) =>
        Effect.try({
          // QEMU writes the serial console to this file; its directory must be there.
          try: () => {
            if (definition.consoleLog !== undefined && domainType !== "test")
              mkdirSync(dirname(definition.consoleLog), { recursive: true })
          },
          catch: (error) =>
            new VmmError({
              reason: "failed",
              operation: "define",
              system: definition.name,
              detail: `cannot make the console's directory: ${error instanceof Error ? error.message : String(error)}`,
            }),
        }).pipe(
          Effect.andThen(
            run<unknown>("define", definition.name, b.define, [conn, domainXml(definition, domainType)]),
          ),
          Effect.flatMap((domain) => Effect.sync(() => b.domainFree(domain))),
          Effect.asVoid,
        ),
      start: simple("start", b.create, ["shutoff", "crashed"]),
      shutdown: simple("shutdown", b.shutdown, ["running", "paused", "shutting-down"]),
      destroy: (name) =>
        withDomain("destroy", name, (domain) => run("destroy", name, b.destroy, [domain])).pipe(
          Effect.asVoid,
        ),
      reboot: simple("reboot", b.reboot, ["running"], [0]),
      suspend: simple("suspend", b.suspend, ["running"]),
      resume: simple("resume", b.resume, ["paused"]),
      undefine: simple("undefine", b.undefine, ["shutoff", "crashed"]),
      info: (name) =>
        withDomain("info", name, (domain) =>
          Effect.gen(function* () {
            const info: Record<string, number | bigint> = {}
            yield* run("info", name, b.getInfo, [domain, info])
            return {
              name,
              state: stateOf(Number(info.state ?? 0)),
              cpus: Number(info.nrVirtCpu ?? 0),
              memoryKiB: Number(info.memory ?? 0),
              maxMemoryKiB: Number(info.maxMem ?? 0),
              cpuTimeNs: BigInt(info.cpuTime ?? 0),
            }
          }),
        ),
      io,
      // What the guest has while it runs (a disk hot-plugged into it too), its definition otherwise.
      disks: (name) =>
        withDomain("disks", name, (domain) =>
          stateNow(name, domain).pipe(
            Effect.flatMap((state) =>
              run<string>("disks", name, b.getXml, [
                domain,
                state === "running" || state === "paused" ? 0 : 2, // 2: VIR_DOMAIN_XML_INACTIVE
              ]),
            ),
            Effect.map(disksOf),
          ),
        ),
      attachDisk: deviceChange("attach", b.attach),
      detachDisk: deviceChange("detach", b.detach),
      console: (name, maxBytes) =>
        withDomain("console", name, (domain) =>
          Effect.gen(function* () {
            const xml = yield* xmlOf(name, domain)
            const path = domainTypeOf(xml) === "test" ? undefined : serialLogOf(xml)
            if (path === undefined)
              return yield* Effect.fail(
                new VmmError({
                  reason: "unsupported",
                  operation: "console",
                  system: name,
                  detail:
                    domainType === "test"
                      ? "libvirt's test driver runs no guest, so there is no serial console to read"
                      : "the domain has no serial console written to a file",
                }),
              )
            return yield* Effect.try({
              try: () => {
                const size = statSync(path).size
                const text = readFileSync(path)
                return text.subarray(Math.max(0, size - maxBytes)).toString("utf8")
              },
              catch: (error) =>
                new VmmError({
                  reason: "failed",
                  operation: "console",
                  system: name,
                  detail: `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`,
                }),
            })
          }),
        ),
    })
  })

export const LibvirtVmmLayer = (options: LibvirtOptions) => Layer.effect(Vmm, makeLibvirtVmm(options))
