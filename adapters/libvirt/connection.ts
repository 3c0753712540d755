/**
 * What every libvirt adapter shares (the hypervisor's VMM port, the storage port): the library
 * loaded once through koffi with the types it registers process-wide, a connection opened in a
 * scope and closed with it, and calls on it serialised, each failure read back as libvirt's own
 * error (its `virErrorNumber` and message) inside the same lock.
 *
 * - Every call that can block runs on koffi's worker threads (`fn.async`), so the node's event
 *   loop keeps serving datagrams.
 * - libvirt keeps its last error per connection, and it is read right after the failing call,
 *   under the lock, so a second caller's error never stands in for the first's.
 * - Every string libvirt hands over is freed (`LibvirtString`: `koffi.disposable` with libc's
 *   `free`); borrowed strings (`virDomainGetName`, `virStorageVolGetName`) are declared
 *   `const char *` and not freed.
 * - libvirt's default error handler prints to stderr; it is replaced by one that does nothing,
 *   since each error comes back typed instead.
 * - `qemu:///embed?root=…` runs libvirt's QEMU driver inside this process, its state under that
 *   root (no daemon: each node of a local cluster has its own, its guests its own): the root is
 *   prepared and libvirt's event loop run, as the embedded driver needs.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Semaphore } from "effect"
import koffi from "koffi"
import { hasQemuAccount, qemuAccount } from "../host/packages.ts"

export type Fn = ReturnType<ReturnType<typeof koffi.load>["func"]>
export type Library = ReturnType<typeof koffi.load>

interface Shared {
  readonly lib: Library
  readonly free: Fn
  readonly open: Fn
  readonly close: Fn
  readonly lastError: Fn
  readonly errorType: ReturnType<typeof koffi.struct>
}

let shared: Shared | undefined

/** Loads libvirt once per process (throws where `libvirt.so.0` is missing). */
export const loadLibvirt = (): Shared => {
  if (shared !== undefined) return shared
  const lib = koffi.load("libvirt.so.0")
  const libc = koffi.load("libc.so.6")
  const free = libc.func("void free(void *ptr)")
  koffi.pointer("virConnect", koffi.opaque())
  const errorType = koffi.struct("virError", {
    code: "int",
    domain: "int",
    message: "const char *",
    level: "int",
    conn: "void *",
    dom: "void *",
    str1: "const char *",
    str2: "const char *",
    str3: "const char *",
    int1: "int",
    int2: "int",
    net: "void *",
  })
  koffi.disposable("LibvirtString", "str", free)
  const errorFunc = koffi.proto("void virErrorFunc(void *userData, void *error)")
  const setErrorFunc = lib.func("void virSetErrorFunc(void *userData, virErrorFunc *handler)")
  setErrorFunc(
    null,
    koffi.register(() => {}, koffi.pointer(errorFunc)),
  )
  shared = {
    lib,
    free,
    open: lib.func("virConnect *virConnectOpen(const char *name)"),
    close: lib.func("int virConnectClose(virConnect *conn)"),
    lastError: lib.func("virError *virConnGetLastError(virConnect *conn)"),
    errorType,
  }
  return shared
}

/** Runs a bound function on koffi's worker threads. */
export const call = <A>(fn: Fn, args: ReadonlyArray<unknown>): Promise<A> =>
  new Promise((resolve, reject) =>
    fn.async(...args, (error: unknown, result: A) => (error ? reject(error) : resolve(result))),
  )

/** libvirt's own account of a failed call (code 0: libvirt said nothing; -1: the FFI call itself threw). */
export interface LibvirtFailure {
  readonly code: number
  readonly message: string
}

export interface Connection {
  readonly pointer: unknown
  readonly free: Fn
  /** One call under the connection's lock; a `-1` or `null` result fails with the connection's last error. */
  readonly run: <A>(fn: Fn, args: ReadonlyArray<unknown>) => Effect.Effect<A, LibvirtFailure>
  /** Runs `effect` holding the lock (for synchronous calls that must not interleave with others). */
  readonly locked: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
}

/** The root of an embedded QEMU driver's URI (`qemu:///embed?root=/path`), or undefined for any other. */
export const embedRootOf = (uri: string): string | undefined => {
  const match = /^qemu:\/\/\/embed\?(?:[^#]*&)?root=([^&#]+)/.exec(uri)
  return match === null ? undefined : decodeURIComponent(match[1]!)
}

let eventLoop = false

/**
 * libvirt's event loop, which an embedded driver needs in its process (it reads the QEMU monitor
 * through it): registered once, then one call of `virEventRunDefaultImpl` after another on
 * koffi's worker threads. At exit a one-shot timer (libvirt's own `virEventRemoveTimeout` as its
 * callback) wakes the loop, so the last call returns and the process is not left waiting on it.
 */
const runEventLoop = (b: Shared) => {
  if (eventLoop) return
  eventLoop = true
  const register = b.lib.func("int virEventRegisterDefaultImpl(void)")
  const runOnce = b.lib.func("int virEventRunDefaultImpl(void)")
  const callback = koffi.proto("void virEventTimeoutCallback(int timer, void *opaque)")
  const addTimeout = b.lib.func(
    "int virEventAddTimeout(int timeout, virEventTimeoutCallback *cb, void *opaque, void *ff)",
  )
  const removeTimeout = koffi.as(b.lib.func("int virEventRemoveTimeout(int timer)"), koffi.pointer(callback))
  register()
  let exiting = false
  const loop = () => {
    if (!exiting) runOnce.async(loop)
  }
  loop()
  process.once("exit", () => {
    exiting = true
    addTimeout(0, removeTimeout, null, null)
  })
}

/**
 * Makes an embedded driver's root ready: its `etc/qemu.conf` (written once, then the operator's)
 * runs guests as this process's own user and their stdio to files (no virtlogd: nothing else
 * runs). Fails, saying what to do, where the driver would refuse to start.
 */
const prepareEmbedded = (root: string): LibvirtFailure | undefined => {
  const privileged = process.getuid?.() === 0
  // Run by root, libvirt's QEMU driver parses its built-in user and group before its config,
  // whatever the config names: Debian's libvirt-daemon-system makes them.
  if (privileged && !hasQemuAccount())
    return {
      code: -1,
      message: `libvirt's QEMU driver needs the user and group ${qemuAccount} (acp setup --for qemu makes them)`,
    }
  const conf = join(root, "etc", "qemu.conf")
  if (!existsSync(conf)) {
    mkdirSync(join(root, "etc"), { recursive: true })
    const user = privileged ? 'user = "root"\ngroup = "root"\n' : ""
    writeFileSync(conf, `# Written by ACP for its embedded QEMU driver.\n${user}stdio_handler = "file"\n`)
  }
  return undefined
}

/**
 * Opens `uri` for the life of the scope. Fails with code -1 and the reason when libvirt cannot
 * be loaded or the connection cannot be made.
 */
export const openConnection = (uri: string) =>
  Effect.gen(function* () {
    const b = yield* Effect.try({
      try: loadLibvirt,
      catch: (error): LibvirtFailure => ({
        code: -1,
        message: `cannot load libvirt.so.0 (apt-get install libvirt0): ${error instanceof Error ? error.message : String(error)}`,
      }),
    })
    const root = embedRootOf(uri)
    if (root !== undefined) {
      const refused = prepareEmbedded(root)
      if (refused !== undefined) return yield* Effect.fail(refused)
      runEventLoop(b)
    }
    const lock = yield* Semaphore.make(1)
    const pointer = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => call<unknown>(b.open, [uri]),
        catch: (error): LibvirtFailure => ({ code: -1, message: String(error) }),
      }).pipe(
        Effect.flatMap((opened) =>
          opened === null
            ? Effect.fail<LibvirtFailure>({ code: -1, message: `cannot connect to ${uri}` })
            : Effect.succeed(opened),
        ),
      ),
      (opened) => Effect.sync(() => b.close(opened)),
    )
    const lastError = (): LibvirtFailure => {
      const error = b.lastError(pointer) as unknown
      const decoded =
        error === null
          ? undefined
          : (koffi.decode(error, b.errorType) as { code: number; message: string | null })
      return { code: decoded?.code ?? 0, message: decoded?.message ?? "libvirt reported no error" }
    }
    const run = <A>(fn: Fn, args: ReadonlyArray<unknown>) =>
      lock.withPermits(1)(
        Effect.tryPromise({
          try: () => call<A>(fn, args),
          catch: (error): LibvirtFailure => ({ code: -1, message: String(error) }),
        }).pipe(
          Effect.flatMap((result) =>
            result === null || result === -1 ? Effect.fail(lastError()) : Effect.succeed(result),
          ),
        ),
      )
    return {
      pointer,
      free: b.free,
      run,
      locked: lock.withPermits(1),
    } satisfies Connection
  })
