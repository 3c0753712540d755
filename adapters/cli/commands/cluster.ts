/**
 * `acp cluster up|down|status`: a local cluster on this machine, one process per node on
 * loopback (separate ports and data directories, one multicast group), and `acp object`,
 * `acp health`, `acp monitor status`, `acp alarm list` against it.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs"
import { dirname, join, resolve } from "node:path"
import { Console, Effect, Option, Schedule } from "effect"
import { Command, Flag } from "effect/cli"
import { runRequirements } from "../../host/packages.ts"
import { embedRootOf } from "../../libvirt/connection.ts"
import { loadConfig, type NodeConfig } from "../../node/config.ts"
import { progressOn } from "../progress.ts"
import { ensurePackages, ensureQemu } from "./setup.ts"

type NodeConfigFile = (typeof NodeConfig)["Encoded"]

import { newApiKey } from "../../agent/keys.ts"
import { ensureCa, issue, type PkiError } from "../../agent/pki.ts"
import {
  CliError,
  type ClusterNode,
  type ClusterState,
  localApiKey,
  readState,
  statePath,
  withClient,
} from "../client.ts"
import { renderTable } from "../render.ts"
import { dirFlag, dirOf, jsonFlag } from "../target.ts"

/** The pid a node wrote in its data directory (it may have been restarted by hand), else the one we started. */
const pidOf = (node: ClusterNode): number => {
  try {
    return Number(readFileSync(join(dirname(node.configPath), "node.pid"), "utf8").trim()) || node.pid
  } catch {
    return node.pid
  }
}

/** Whether a process with this id exists (signal 0). */
export const alive = (pid: number) => {
  // 0 and below name a process group, not a node: a node never started (a joined one whose pid
  // is not known yet) is not alive, and is never signalled (kill(0) would stop this CLI's group).
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A node's status, or undefined while it does not answer (it may be starting, or down). */
const statusOf = (node: ClusterNode) =>
  withClient(node, (client) => client.status()).pipe(Effect.orElseSucceed(() => undefined))

// ---- up ------------------------------------------------------------------------------------------

interface HostLayout {
  readonly id: string
  readonly address: string
  readonly domain: string
  readonly relay: boolean
  readonly relayPort: number
  readonly port: number
  readonly apiPort: number
  readonly agentPort: number
  /** Where its NFS server listens (absent: the default, 2049 on every address). */
  readonly nfsPort?: number
  /** Where the node's files will be on its host (its config names paths there). */
  readonly dataDir: string
  /** The libvirt its hypervisor drives (absent: the built-in test driver). */
  readonly hypervisorUri?: string
}

interface ClusterLayout {
  /** Where the files are written: pki/ and one directory per node, each ready to copy to its host. */
  readonly home: string
  readonly cluster: number
  readonly group: string | null
  readonly groupPort: number
  readonly encrypt: boolean
  readonly hosts: ReadonlyArray<HostLayout>
}

/**
 * Writes a cluster's CA, each node's certificate and key, an admin client certificate, and each
 * node's config (validated by the node at start), under `home`: `<id>/config.json` and
 * `<id>/pki/{ca.crt,<id>.crt,<id>.key}`, so a node's directory is all its host needs.
 */
const writeCluster = (layout: ClusterLayout) =>
  Effect.gen(function* () {
    const pki = join(layout.home, "pki")
    const pkiFailed = (error: PkiError) => new CliError({ message: `${error.step}: ${error.message}` })
    yield* ensureCa(pki, String(layout.cluster)).pipe(Effect.mapError(pkiFailed))
    yield* issue(pki, "admin", { kind: "client" }).pipe(Effect.mapError(pkiFailed))
    const key = randomBytes(32).toString("hex")
    const internal = newApiKey("cluster-internal", "admin")
    // The operator's first key: its hash in every config (each node stores it), the key itself
    // only in a 0600 file beside the CA, which the CLI reads to call the nodes' APIs.
    const admin = newApiKey("admin", "admin")
    writeFileSync(join(layout.home, "admin.key"), `${admin.key}\n`, { mode: 0o600 })
    const members = layout.hosts.map((host) => ({
      agentPort: host.agentPort,
      id: host.id,
      address: host.address,
      port: host.port,
      domain: host.domain,
      relay: host.relay,
      ...(host.relay ? { relayPort: host.relayPort } : {}),
    }))
    const configPaths: Array<string> = []
    for (const host of layout.hosts) {
      yield* issue(pki, host.id, { kind: "node", address: host.address }).pipe(Effect.mapError(pkiFailed))
      const local = join(layout.home, host.id)
      mkdirSync(join(local, "pki"), { recursive: true, mode: 0o700 })
      for (const file of ["ca.crt", `${host.id}.crt`, `${host.id}.key`])
        copyFileSync(join(pki, file), join(local, "pki", file))
      chmodSync(join(local, "pki", `${host.id}.key`), 0o600)
      const config: NodeConfigFile = {
        id: host.id,
        cluster: layout.cluster,
        domain: host.domain,
        relay: host.relay,
        address: host.address,
        port: host.port,
        group: layout.group,
        groupPort: layout.groupPort,
        apiPort: host.apiPort,
        dataDir: host.dataDir,
        keyHex: key,
        encrypt: layout.encrypt,
        keys: [{ id: admin.id, record: admin.record }],
        mtu: 1400,
        synchronous: "FULL",
        members,
        ...(host.nfsPort === undefined ? {} : { storage: { nfsBind: host.address, nfsPort: host.nfsPort } }),
        ...(host.hypervisorUri === undefined ? {} : { hypervisor: { uri: host.hypervisorUri } }),
        agent: {
          port: host.agentPort,
          certFile: join(host.dataDir, "pki", `${host.id}.crt`),
          keyFile: join(host.dataDir, "pki", `${host.id}.key`),
          caFile: join(host.dataDir, "pki", "ca.crt"),
          internalKey: internal.key,
          internalKeySalt: internal.record.salt,
        },
      }
      const configPath = join(local, "config.json")
      writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
      configPaths.push(configPath)
    }
    return configPaths
  })

/** What an existing local cluster in `home` is made of: its nodes' configs, in id order. */
const existingCluster = (home: string) =>
  Effect.gen(function* () {
    if (!existsSync(join(home, "pki", "ca.crt"))) return undefined
    const ids = readdirSync(home, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && existsSync(join(home, entry.name, "config.json")))
      .map((entry) => entry.name)
      .sort((left, right) => left.localeCompare(right, "en", { numeric: true }))
    const configs = yield* Effect.forEach(ids, (id) =>
      loadConfig(join(home, id, "config.json")).pipe(
        Effect.mapError(
          (error) => new CliError({ message: `${error.message} (acp cluster up --fresh starts over)` }),
        ),
      ),
    )
    // A node's directory is named after it; a copy beside it (n2.old, say) is no node.
    const nodes = configs.filter((config, index) => config.id === ids[index])
    return nodes.length === 0 ? undefined : nodes
  })

/** Everything `--fresh` removes, named, so the command can say what it deletes. */
const removeCluster = (home: string, configs: ReadonlyArray<NodeConfig>) => {
  const removed = ["pki", ...configs.map((config) => config.id), "admin.key", "cluster.json"]
  for (const entry of removed) rmSync(join(home, entry), { recursive: true, force: true })
  return removed
}

const up = Command.make(
  "up",
  {
    nodes: Flag.Int("nodes").pipe(Flag.withDescription("How many nodes (default 3)"), Flag.optional),
    basePort: Flag.Int("base-port").pipe(
      Flag.withDescription("First of the ports the cluster uses (default 17400)"),
      Flag.optional,
    ),
    dir: dirFlag,
    unicast: Flag.Boolean("unicast").pipe(
      Flag.withDescription("A unicast peer list instead of multicast"),
      Flag.withDefault(false),
    ),
    encrypt: Flag.Boolean("encrypt").pipe(
      Flag.withDescription("Encrypt datagrams (AES-256-GCM), not only authenticate them"),
      Flag.withDefault(false),
    ),
    fresh: Flag.Boolean("fresh").pipe(
      Flag.withDescription("Start over: delete this directory's cluster (CA, keys, every node's data) first"),
      Flag.withDefault(false),
    ),
    skipSetup: Flag.Boolean("skip-setup").pipe(
      Flag.withDescription("Do not install missing Debian packages (libvirt0, qemu-utils) first"),
      Flag.withDefault(false),
    ),
    hypervisor: Flag.Literals("hypervisor", ["test", "qemu"]).pipe(
      Flag.withDescription(
        "test: libvirt's test driver (no guest runs; the default); qemu: real QEMU guests (TCG without KVM), libvirt's QEMU driver embedded in each node",
      ),
      Flag.optional,
    ),
  },
  (args) =>
    Effect.gen(function* () {
      const home = dirOf(args.dir)
      const running = yield* Effect.option(readState(home))
      if (Option.isSome(running) && running.value.nodes.some((node) => alive(pidOf(node)))) {
        return yield* new CliError({
          message: `a local cluster is already running in ${home}: \`acp cluster down\` first`,
        })
      }
      if (!args.skipSetup) {
        // A node without libvirt0 (or qemu-utils) runs, but cannot run systems (or make volumes): install them now, or say so.
        const qemu = Option.getOrUndefined(args.hypervisor) === "qemu"
        const setup = yield* Effect.result(qemu ? ensureQemu() : ensurePackages(runRequirements))
        if (setup._tag === "Failure")
          yield* Console.error(`acp cluster up: ${setup.failure.message}; systems cannot run until then`)
      }
      let existing = yield* existingCluster(home)
      if (existing !== undefined && args.fresh) {
        const removed = removeCluster(home, existing)
        yield* Console.log(
          `starting over: removed cluster ${existing[0]!.cluster} from ${home} (${removed.join(", ")})`,
        )
        existing = undefined
      }
      const configPaths =
        existing === undefined
          ? yield* makeLocalCluster(home, args)
          : yield* Effect.as(
              sameSettings(home, existing, args),
              existing.map((config) => join(home, config.id, "config.json")),
            )
      const configs = yield* Effect.forEach(configPaths, (path) =>
        loadConfig(path).pipe(Effect.mapError((error) => new CliError({ message: error.message }))),
      )
      const first = configs[0]!
      yield* Console.log(
        `${existing === undefined ? "starting" : "restarting"} ${configs.length} node(s) of cluster ${first.cluster} in ${home} (${first.group === null ? "unicast" : `multicast ${first.group}:${first.groupPort}`})`,
      )
      const entry = process.argv[1]!
      const started: Array<ClusterNode> = []
      for (const [index, config] of configs.entries()) {
        const logPath = join(config.dataDir, "node.log")
        const log = openSync(logPath, "a")
        const child = spawn(process.execPath, [entry, "node", "run", "--config", configPaths[index]!], {
          detached: true,
          stdio: ["ignore", log, log],
        })
        closeSync(log)
        child.unref()
        started.push({
          id: config.id,
          pid: child.pid!,
          apiPort: config.apiPort,
          configPath: configPaths[index]!,
          logPath,
        })
        yield* Console.log(
          `  ${config.id}: pid ${child.pid}, api 127.0.0.1:${config.apiPort}, log ${logPath}`,
        )
      }
      const state: ClusterState = { dir: home, cluster: first.cluster, nodes: started }
      writeFileSync(statePath(home), `${JSON.stringify(state, null, 2)}\n`)
      // The key stays out of cluster.json (which is not 0600): the CLI reads it from admin.key.
      const apiKey = localApiKey(home)
      yield* awaitPrimary(started.map((node) => ({ ...node, apiKey })))
      const agents = configs.map((config) => config.agent?.port).filter((port) => port !== undefined)
      yield* Console.log(
        `agents: TLS 1.3 with client certificates on 127.0.0.1:${agents.join(",")}; admin key and certificate in ${home}`,
      )
      yield* Console.log(
        `cluster up: ${configs.length} node(s). Try: acp system create web-1 --memory 256 --ha, acp cluster status, acp cluster down`,
      )
    }),
).pipe(
  Command.withDescription(
    "Start a local cluster on this machine (loopback), with progress; after `down`, the same cluster again",
  ),
)

/** What `cluster up`'s flags ask of a cluster's layout. */
interface LayoutFlags {
  readonly hypervisor: Option.Option<"test" | "qemu">
  readonly nodes: Option.Option<number>
  readonly basePort: Option.Option<number>
  readonly unicast: boolean
  readonly encrypt: boolean
}

/** Which hypervisor a node of a local cluster drives. */
const hypervisorOf = (config: NodeConfig): "test" | "qemu" =>
  config.hypervisor?.uri.startsWith("qemu:///embed") === true ? "qemu" : "test"

/**
 * Stops the guests a node's embedded QEMU driver left running (they outlive the node process,
 * as guests outlive a restarted libvirtd), by the pid files under its root.
 */
const stopGuests = (configPath: string): number => {
  let stopped = 0
  try {
    const config = JSON.parse(readFileSync(configPath, "utf8")) as { hypervisor?: { uri?: string } }
    const root = embedRootOf(config.hypervisor?.uri ?? "")
    if (root === undefined) return 0
    const run = join(root, "run", "qemu")
    if (!existsSync(run)) return 0
    // A guest's pid file sits beside its live state (`<domain>.xml`); driver.pid is the node's own.
    const files = readdirSync(run)
    for (const file of files.filter(
      (name) => name.endsWith(".pid") && files.includes(`${name.slice(0, -4)}.xml`),
    )) {
      const pid = Number.parseInt(readFileSync(join(run, file), "utf8"), 10)
      if (Number.isInteger(pid) && pid > 1 && alive(pid)) {
        process.kill(pid, "SIGKILL")
        stopped++
      }
    }
  } catch {
    // a node whose config is gone left nothing to stop
  }
  return stopped
}

/** A restart keeps the cluster's settings; a flag that asks for others is refused, not ignored. */
const sameSettings = (home: string, existing: ReadonlyArray<NodeConfig>, args: LayoutFlags) => {
  const first = existing[0]!
  const differs = [
    Option.isSome(args.nodes) && args.nodes.value !== existing.length
      ? `--nodes ${args.nodes.value} (it has ${existing.length})`
      : undefined,
    Option.isSome(args.basePort) && args.basePort.value !== first.groupPort
      ? `--base-port ${args.basePort.value} (it uses ${first.groupPort})`
      : undefined,
    args.unicast && first.group !== null ? "--unicast (it uses multicast)" : undefined,
    args.encrypt && !first.encrypt ? "--encrypt (its datagrams are authenticated only)" : undefined,
    Option.isSome(args.hypervisor) && args.hypervisor.value !== hypervisorOf(first)
      ? `--hypervisor ${args.hypervisor.value} (it uses ${hypervisorOf(first)})`
      : undefined,
  ].filter((difference) => difference !== undefined)
  return differs.length === 0
    ? Effect.void
    : Effect.fail(
        new CliError({
          message: `${home} holds cluster ${first.cluster}, which a restart keeps as it is: ${differs.join(", ")}; \`acp cluster up --fresh\` starts over (it deletes that cluster's data)`,
        }),
      )
}

/** A new cluster's CA, certificates and configs under `home`; returns the configs' paths. */
const makeLocalCluster = (home: string, args: LayoutFlags) =>
  Effect.gen(function* () {
    const nodes = Option.getOrElse(args.nodes, () => 3)
    const basePort = Option.getOrElse(args.basePort, () => 17400)
    if (nodes < 1 || nodes > 50) return yield* new CliError({ message: `--nodes ${nodes}: expected 1..50` })
    mkdirSync(home, { recursive: true })
    const cluster = randomBytes(4).readUInt32BE(0) || 1
    const group = `239.255.${(cluster >>> 8) & 0xff}.${cluster & 0xff}`
    yield* Console.log(`making a new cluster's CA, certificates and configs in ${home}`)
    return yield* writeCluster({
      home,
      cluster,
      group: args.unicast ? null : group,
      groupPort: basePort,
      encrypt: args.encrypt,
      hosts: Array.from({ length: nodes }, (_, index) => {
        const id = `n${index + 1}`
        return {
          id,
          address: "127.0.0.1",
          port: basePort + 1 + index,
          domain: "local",
          relay: false,
          relayPort: basePort + 301 + index,
          apiPort: basePort + 101 + index,
          agentPort: basePort + 201 + index,
          nfsPort: basePort + 401 + index,
          dataDir: join(home, id),
          ...(Option.getOrUndefined(args.hypervisor) === "qemu"
            ? { hypervisorUri: `qemu:///embed?root=${join(home, id, "qemu")}` }
            : {}),
        }
      }),
    })
  })

/** Waits, with progress, until every node answers and they agree on one primary (30 s at most). */
const awaitPrimary = (started: ReadonlyArray<ClusterNode>) =>
  Effect.gen(function* () {
    const progress = progressOn(process.stdout)
    const poll = Effect.gen(function* () {
      const statuses = yield* Effect.forEach(started, (node) => statusOf(node))
      const answering = statuses.filter((status) => status !== undefined)
      const primaries = new Set(
        answering.map((status) => status.primary).filter((primary) => primary !== null),
      )
      progress.update(
        `  ${answering.length}/${started.length} nodes answering, primary: ${primaries.size === 1 ? [...primaries][0] : "electing"}`,
      )
      const dead = started.filter((node) => !alive(node.pid))
      if (dead.length > 0)
        return yield* new CliError({
          message: `node(s) ${dead.map((node) => node.id).join(", ")} exited; see ${dead[0]!.logPath}`,
        })
      return answering.length === started.length && primaries.size === 1
    })
    const ready = yield* poll.pipe(
      Effect.repeat({ schedule: Schedule.spaced("200 millis"), until: (done) => done, times: 150 }),
      Effect.ensuring(Effect.sync(() => progress.done())),
    )
    if (!ready)
      return yield* new CliError({ message: "the cluster did not come up within 30 s; see the node logs" })
  })

// ---- init ----------------------------------------------------------------------------------------

const init = Command.make(
  "init",
  {
    hosts: Flag.String("hosts").pipe(
      Flag.withDescription("The nodes and their addresses: n1=198.18.0.11,n2=198.18.0.12,..."),
    ),
    dir: Flag.String("dir").pipe(
      Flag.withDescription("Where to write the CA and one directory per node"),
      Flag.withDefault("acp-cluster"),
    ),
    dataDir: Flag.String("data-dir").pipe(
      Flag.withDescription("Each node's data directory on its host ({id} becomes the node's id)"),
      Flag.withDefault("/var/lib/acp"),
    ),
    basePort: Flag.Int("base-port").pipe(
      Flag.withDescription("Multicast port; node, API and agent ports follow it"),
      Flag.withDefault(7400),
    ),
    unicast: Flag.Boolean("unicast").pipe(
      Flag.withDescription("A unicast peer list instead of multicast"),
      Flag.withDefault(false),
    ),
    encrypt: Flag.Boolean("encrypt").pipe(
      Flag.withDescription("Encrypt datagrams, not only authenticate them"),
      Flag.withDefault(false),
    ),
  },
  ({ hosts, dir, dataDir, basePort, unicast, encrypt }) =>
    Effect.gen(function* () {
      // id=address, optionally /domain and /relay: n1=198.18.1.11/d1/relay
      const pattern =
        /^([a-z0-9][a-z0-9._-]{0,62})=(\d{1,3}(?:\.\d{1,3}){3})(?:\/([a-z0-9][a-z0-9._-]{0,62}))?(\/relay)?$/
      const entries = hosts
        .split(",")
        .map((text) => ({ text: text.trim(), match: pattern.exec(text.trim()) }))
      const bad = entries.find((entry) => entry.match === null)
      if (bad !== undefined) {
        return yield* new CliError({
          message: `--hosts: "${bad.text}" is not id=IPv4[/domain][/relay] (e.g. n1=198.18.0.11 or n1=198.18.1.11/d1/relay)`,
        })
      }
      const parsed = entries.map((entry) => {
        const [, id, address, domain, relay] = entry.match!
        return { id: id!, address: address!, domain: domain ?? "default", relay: relay !== undefined }
      })
      const home = resolve(dir)
      if (existsSync(join(home, "pki", "ca.key")))
        return yield* new CliError({ message: `${home} already holds a cluster CA; choose another --dir` })
      mkdirSync(home, { recursive: true, mode: 0o700 })
      const cluster = randomBytes(4).readUInt32BE(0) || 1
      yield* writeCluster({
        home,
        cluster,
        group: unicast ? null : `239.255.${(cluster >>> 8) & 0xff}.${cluster & 0xff}`,
        groupPort: basePort,
        encrypt,
        hosts: parsed.map(({ id, address, domain, relay }) => ({
          id,
          address,
          domain,
          relay,
          relayPort: basePort + 300,
          port: basePort + 1,
          apiPort: basePort + 100,
          agentPort: basePort + 200,
          dataDir: dataDir.replaceAll("{id}", id),
        })),
      })
      yield* Console.log(`cluster ${cluster}: CA and admin certificate in ${join(home, "pki")}`)
      for (const { id, address } of parsed) {
        yield* Console.log(
          `  ${id} (${address}): copy ${join(home, id)}/ to ${dataDir.replaceAll("{id}", id)}/ on that host, then run: acp node run --config ${join(dataDir.replaceAll("{id}", id), "config.json")}`,
        )
      }
      yield* Console.log(
        "then, on any node: acp key create --name admin --role admin (the local API is trusted; the key is printed once)",
      )
    }),
).pipe(
  Command.withDescription("Make a cluster for real hosts: its CA, node certificates and one config per node"),
)

// ---- down ----------------------------------------------------------------------------------------

const down = Command.make(
  "down",
  {
    dir: dirFlag,
    purge: Flag.Boolean("purge").pipe(
      Flag.withDescription("Also delete the data directories"),
      Flag.withDefault(false),
    ),
  },
  ({ dir, purge }) =>
    Effect.gen(function* () {
      const home = dirOf(dir)
      const state = yield* readState(home)
      // Each pid read once: the file may go between two reads (a node removes it as it exits).
      for (const pid of state.nodes.map(pidOf)) if (alive(pid)) process.kill(pid, "SIGTERM")
      const stopped = yield* Effect.sync(() => state.nodes.every((node) => !alive(pidOf(node)))).pipe(
        Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (done) => done, times: 50 }),
      )
      if (!stopped) {
        for (const pid of state.nodes.map(pidOf)) if (alive(pid)) process.kill(pid, "SIGKILL")
        yield* Console.log("some nodes ignored SIGTERM for 5 s and were killed")
      }
      const guests = state.nodes.reduce((sum, node) => sum + stopGuests(node.configPath), 0)
      if (guests > 0) yield* Console.log(`stopped ${guests} QEMU guest(s) the nodes left running`)
      // The cluster's identity (CA, configs, keys) and data stay: `up` restarts this same cluster.
      rmSync(statePath(home), { force: true })
      for (const node of state.nodes) rmSync(join(dirname(node.configPath), "node.pid"), { force: true })
      if (purge) for (const node of state.nodes) rmSync(join(home, node.id), { recursive: true, force: true })
      yield* Console.log(
        `cluster down: ${state.nodes.length} node(s) stopped${purge ? ", data deleted" : `; \`acp cluster up\` restarts cluster ${state.cluster}, \`--fresh\` starts over`}`,
      )
    }),
).pipe(Command.withDescription("Stop the local cluster; nothing is left running"))

// ---- status --------------------------------------------------------------------------------------

const status = Command.make("status", { dir: dirFlag, json: jsonFlag }, ({ dir, json }) =>
  Effect.gen(function* () {
    const state = yield* readState(dirOf(dir))
    const rows = yield* Effect.forEach(state.nodes, (node) =>
      Effect.map(statusOf(node), (view) => ({ node, view })),
    )
    if (json)
      return yield* Console.log(
        JSON.stringify(
          rows.map(({ node, view }) => ({
            id: node.id,
            pid: pidOf(node),
            up: view !== undefined,
            status: view ?? null,
          })),
        ),
      )
    yield* Console.log(
      renderTable(
        ["NODE", "PID", "STATE", "PRIMARY", "TERM", "OBJECTS", "HEALTH"],
        rows.map(({ node, view }) => [
          node.id,
          String(pidOf(node)),
          view === undefined ? "down" : view.fenced ? "fenced" : "up",
          view?.isPrimary ? "yes" : view === undefined ? "-" : `(${view.primary ?? "none"})`,
          view === undefined ? "-" : String(view.term),
          view === undefined ? "-" : String(view.entries),
          view === undefined ? "-" : String(view.health.cluster.score),
        ]),
      ),
    )
  }),
).pipe(Command.withDescription("Show every node of the local cluster: up, primary, term, objects, health"))

export const clusterCommand = Command.make("cluster").pipe(
  Command.withDescription("A local cluster on this machine: up, down, status"),
  Command.withSubcommands([init, up, down, status]),
)

// ---- object, health, monitor, alarm ---------------------------------------------------------------
