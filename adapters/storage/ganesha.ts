/**
 * NFS shares served by nfs-ganesha (userspace: this kernel has no NFS server), NFSv4 over TCP
 * only, so it needs no rpcbind. The node's one `ganesha.nfsd` serves exactly the shares it was
 * last given: each apply writes its configuration (one EXPORT per share, `/<id>` as the pseudo
 * path, only the listed clients allowed, root not squashed) and restarts it by process id, or
 * stops it when no share is left. Needs `nfs-ganesha` and `nfs-ganesha-vfs`; without them an
 * apply fails as `unsupported`, naming the packages.
 */
import { execFile } from "node:child_process"
import { readFile, rm, stat, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { type ShareDefinition, ShareServer } from "../../core/ports/storage.ts"
import { fail, io, makeDirectory } from "./common.ts"

export interface GaneshaOptions {
  /** Where its configuration, pid file and log live. */
  readonly runDir: string
  /** The address it listens on (default: every address of its network namespace). */
  readonly bind?: string
  readonly port?: number
  /** The network namespace to run it in (`ip netns exec`), for tests. */
  readonly netns?: string
}

const quote = (text: string) => `"${text.replace(/["\\]/g, "")}"`
/** A client as ganesha's configuration takes it, bare: an address, a network (CIDR) or a host name. */
const clientPattern = /^[A-Za-z0-9.:*/_-]+$/

/** The configuration for these shares: the server's core settings, then one EXPORT each. */
export const ganeshaConfig = (shares: ReadonlyArray<ShareDefinition>, options: GaneshaOptions): string =>
  [
    `NFS_CORE_PARAM { Protocols = 4; NFS_Port = ${options.port ?? 2049};${options.bind === undefined ? "" : ` Bind_addr = ${options.bind};`} Enable_RQUOTA = false; Enable_NLM = false; }`,
    "NFSV4 { Graceless = true; RecoveryBackend = fs; }",
    "NFS_KRB5 { Active_krb5 = false; }",
    ...[...shares]
      .sort((left, right) => (left.id < right.id ? -1 : 1))
      .map(
        (share, index) =>
          `EXPORT { Export_Id = ${index + 1}; Path = ${quote(share.path)}; Pseudo = ${quote(`/${share.id}`)}; Access_Type = None; Squash = No_Root_Squash; Protocols = 4; Transports = TCP; SecType = sys; FSAL { Name = VFS; } CLIENT { Clients = ${share.clients.join(", ")}; Access_Type = ${share.access === "rw" ? "RW" : "RO"}; } }`,
      ),
    "",
  ].join("\n")

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export const makeGaneshaShares = (options: GaneshaOptions) => {
  const config = join(options.runDir, "ganesha.conf")
  const pidFile = join(options.runDir, "ganesha.pid")
  const log = join(options.runDir, "ganesha.log")

  const running = io("share", "ganesha", async () => {
    const pid = Number.parseInt(await readFile(pidFile, "utf8").catch(() => ""), 10)
    return Number.isInteger(pid) && pid > 1 && alive(pid) ? pid : undefined
  })

  /** Stops the server by its pid and waits (up to 5 s) until it is gone. */
  const stop = running.pipe(
    Effect.flatMap((pid) =>
      pid === undefined
        ? Effect.void
        : Effect.promise(async () => {
            process.kill(pid, "SIGTERM")
            for (let waited = 0; waited < 5_000 && alive(pid); waited += 50)
              await new Promise((resolve) => setTimeout(resolve, 50))
            if (alive(pid)) process.kill(pid, "SIGKILL")
          }),
    ),
  )

  const start = Effect.callback<void, ReturnType<typeof fail>>((resume) => {
    const argv = ["-f", config, "-L", log, "-p", pidFile, "-N", "NIV_EVENT"]
    const [program, args] =
      options.netns === undefined
        ? ["ganesha.nfsd", argv]
        : ["ip", ["netns", "exec", options.netns, "ganesha.nfsd", ...argv]]
    execFile(program, args, (error, _stdout, stderr) => {
      if (error === null) return resume(Effect.void)
      const missing =
        (error as { code?: unknown }).code === "ENOENT" || /ganesha.nfsd.*No such file/.test(stderr)
      resume(
        Effect.fail(
          fail(
            "share",
            "ganesha",
            missing ? "unsupported" : "failed",
            missing
              ? "ganesha.nfsd is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)"
              : `ganesha.nfsd: ${(stderr || error.message).trim()}`,
          ),
        ),
      )
    })
  })

  /** Ganesha forks into the background: ready once it is alive and its log says it serves. */
  const ready = Effect.gen(function* () {
    for (let tries = 0; tries < 200; tries++) {
      const text = yield* io("share", "ganesha", () => readFile(log, "utf8").catch(() => ""))
      if ((yield* running) !== undefined && text.includes("NFS SERVER INITIALIZED")) {
        // It starts even with an export it could not read: that is a failure here.
        const errors = text.split("\n").filter((line) => line.includes("CONFIG :CRIT"))
        if (errors.length === 0) return
        return yield* Effect.fail(
          fail(
            "share",
            "ganesha",
            "invalid",
            `ganesha.nfsd refused its configuration: ${errors[0]!.split(": ").slice(-2).join(": ")}`,
          ),
        )
      }
      yield* Effect.sleep("50 millis")
    }
    const tail = yield* io("share", "ganesha", () => readFile(log, "utf8").catch(() => ""))
    return yield* Effect.fail(
      fail(
        "share",
        "ganesha",
        "failed",
        `ganesha.nfsd did not start: ${tail.trim().split("\n").slice(-3).join(" | ")}`,
      ),
    )
  })

  return ShareServer.of({
    apply: (shares) =>
      Effect.gen(function* () {
        for (const share of shares) {
          const found = yield* io("share", share.id, () => stat(share.path)).pipe(Effect.option)
          if (found._tag === "None" || !found.value.isDirectory())
            return yield* Effect.fail(
              fail("share", share.id, "invalid", `share ${share.id}: ${share.path} is not a directory`),
            )
          if (share.clients.length === 0)
            return yield* Effect.fail(fail("share", share.id, "invalid", `share ${share.id} names no client`))
          const bad = share.clients.find((each) => !clientPattern.test(each))
          if (bad !== undefined)
            return yield* Effect.fail(
              fail(
                "share",
                share.id,
                "invalid",
                `share ${share.id}: "${bad}" is not an address, network or host name`,
              ),
            )
        }
        yield* stop
        if (shares.length === 0) return yield* io("share", "ganesha", () => rm(config, { force: true }))
        yield* io("share", "ganesha", async () => {
          await makeDirectory(options.runDir)
          await writeFile(config, ganeshaConfig(shares, options))
          await rm(pidFile, { force: true })
          await rm(log, { force: true })
        })
        yield* start
        yield* ready
      }),
    stop,
  })
}

export const GaneshaSharesLayer = (options: GaneshaOptions) =>
  Layer.effect(
    ShareServer,
    Effect.acquireRelease(
      Effect.sync(() => makeGaneshaShares(options)),
      (server) => Effect.ignore(server.stop),
    ),
  )
