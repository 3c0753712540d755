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
import { Argument, Command, Flag } from "effect/cli"
import { runRequirements } from "../../host/packages.ts"
import { loadConfig, type NodeConfig } from "../../node/config.ts"
import { progressOn } from "../progress.ts"
import { ensurePackages } from "./setup.ts"

type NodeConfigFile = (typeof NodeConfig)["Encoded"]

import { newApiKey } from "../../agent/keys.ts"
import { ensureCa, issue, type PkiError } from "../../agent/pki.ts"
import {
  CliError,
  type ClusterNode,
  type ClusterState,
  call,
  defaultClusterDir,
  describeError,
  pickNode,
  readState,
  remoteFromEnvironment,
  statePath,
} from "../client.ts"
import { renderTable } from "../render.ts"

export const dirFlag = Flag.String("dir").pipe(
  Flag.withDescription("Where the local cluster keeps its state (default .acp, or $ACP_HOME)"),
  Flag.optional,
)
export const nodeFlag = Flag.String("node").pipe(
  Flag.withDescription("Which node to ask (default: the first)"),
  Flag.optional,
)
export const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDescription("Print JSON instead of a table"),
  Flag.withDefault(false),
)

const dirOf = (dir: Option.Option<string>) => Option.getOrElse(dir, defaultClusterDir)

/** The pid a node wrote in its data directory (it may have been restarted by hand), else the one we started. */
const pidOf = (node: ClusterNode): number => {
  try {
    return Number(readFileSync(join(dirname(node.configPath), "node.pid"), "utf8").trim()) || node.pid
  } catch {
    return node.pid
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

interface StatusView {
  readonly incarnation: number
  readonly node: string
  readonly primary: string | null
  readonly isPrimary: boolean
  readonly term: number
  readonly fenced: boolean
  readonly entries: number
  readonly members: ReadonlyArray<{ id: string; state: string }>
  readonly health: { cluster: { score: number; reasons: ReadonlyArray<{ points: number; reason: string }> } }
  readonly alarms: ReadonlyArray<{
    id: string
    severity: string
    state: string
    message: string
    raisedBy: string
  }>
}

const statusOf = (node: ClusterNode) =>
  Effect.map(call(node, "GET", "/v1/status"), (response) =>
    response.status === 200 ? (response.body as StatusView) : undefined,
  )

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
  /** Where the node's files will be on its host (its config names paths there). */
  readonly dataDir: string
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
        mtu: 1400,
        synchronous: "FULL",
        members,
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
    return configs.length === 0 ? undefined : configs
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
      Flag.withDescription("Do not install missing Debian packages (libvirt0) first"),
      Flag.withDefault(false),
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
        // A node without libvirt0 runs, but cannot run systems: install it now, or say so.
        const setup = yield* Effect.result(ensurePackages(runRequirements))
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
      yield* awaitPrimary(started)
      // The first admin key: its hash goes into the CDB, the key itself only into a 0600 file.
      const adminKeyPath = join(home, "admin.key")
      if (!existsSync(adminKeyPath)) {
        const admin = newApiKey("admin", "admin")
        const stored = yield* call(started[0]!, "PUT", `/v1/objects/api-key/${admin.id}`, admin.record)
        if (stored.status !== 200)
          return yield* new CliError({ message: `storing the admin key: ${describeError(stored)}` })
        writeFileSync(adminKeyPath, `${admin.key}\n`, { mode: 0o600 })
      }
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

/** A restart keeps the cluster's settings; a flag that asks for others is refused, not ignored. */
const sameSettings = (
  home: string,
  existing: ReadonlyArray<NodeConfig>,
  args: {
    readonly nodes: Option.Option<number>
    readonly basePort: Option.Option<number>
    readonly unicast: boolean
    readonly encrypt: boolean
  },
) => {
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
const makeLocalCluster = (
  home: string,
  args: {
    readonly nodes: Option.Option<number>
    readonly basePort: Option.Option<number>
    readonly unicast: boolean
    readonly encrypt: boolean
  },
) =>
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
          dataDir: join(home, id),
        }
      }),
    })
  })

/** Waits, with progress, until every node answers and they agree on one primary (30 s at most). */
const awaitPrimary = (started: ReadonlyArray<ClusterNode>) =>
  Effect.gen(function* () {
    const progress = progressOn(process.stdout)
    const poll = Effect.gen(function* () {
      const statuses = yield* Effect.forEach(started, (node) =>
        Effect.orElseSucceed(statusOf(node), () => undefined),
      )
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

// ---- join ----------------------------------------------------------------------------------------

export const nodeJoin = Command.make(
  "join",
  {
    dir: Flag.String("dir").pipe(
      Flag.withDescription("The directory `acp cluster init` wrote (it holds the CA)"),
      Flag.withDefault("acp-cluster"),
    ),
    id: Flag.String("id").pipe(Flag.withDescription("The new node's id")),
    address: Flag.String("address").pipe(Flag.withDescription("The new node's IPv4 address")),
    domain: Flag.String("domain").pipe(
      Flag.withDescription("Its L2 domain (default: the first node's)"),
      Flag.optional,
    ),
    relay: Flag.Boolean("relay").pipe(
      Flag.withDescription("It relays for its domain"),
      Flag.withDefault(false),
    ),
    dataDir: Flag.String("data-dir").pipe(
      Flag.withDescription("Its data directory on its host ({id} becomes its id)"),
      Flag.withDefault("/var/lib/acp"),
    ),
  },
  ({ dir, id, address, domain, relay, dataDir }) =>
    Effect.gen(function* () {
      const home = resolve(dir)
      if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(id))
        return yield* new CliError({ message: `--id ${id}: expected 1-63 of a-z, 0-9, '.', '_', '-'` })
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address))
        return yield* new CliError({ message: `--address ${address}: expected an IPv4 address` })
      if (!existsSync(join(home, "pki", "ca.key")))
        return yield* new CliError({
          message: `${home} holds no cluster CA: give the directory \`acp cluster init\` wrote`,
        })
      const existing = readdirSync(home, { withFileTypes: true })
        .filter((entry) => entry.isDirectory() && existsSync(join(home, entry.name, "config.json")))
        .map((entry) => join(home, entry.name, "config.json"))
      const configs = existing.map((path) => ({
        path,
        config: JSON.parse(readFileSync(path, "utf8")) as NodeConfigFile,
      }))
      const first = configs[0]?.config
      if (first === undefined) return yield* new CliError({ message: `${home} has no node configs` })
      if (first.members.some((member) => member.id === id))
        return yield* new CliError({ message: `${id} is already a member` })
      const pkiFailed = (error: PkiError) => new CliError({ message: `${error.step}: ${error.message}` })
      yield* issue(join(home, "pki"), id, { kind: "node", address }).pipe(Effect.mapError(pkiFailed))
      const template = first.members[0]!
      const agent = first.agent!
      const member = {
        id,
        address,
        port: first.port,
        domain: Option.getOrElse(domain, () => first.domain),
        relay,
        ...(template.agentPort === undefined ? {} : { agentPort: template.agentPort }),
        ...(relay ? { relayPort: agent.port + 100 } : {}),
      }
      const members = [...first.members, member]
      // Every existing node learns the new member (the operator restarts them one at a time).
      for (const { path, config } of configs)
        writeFileSync(path, `${JSON.stringify({ ...config, members }, null, 2)}\n`, { mode: 0o600 })
      const hostDir = dataDir.replaceAll("{id}", id)
      const local = join(home, id)
      mkdirSync(join(local, "pki"), { recursive: true, mode: 0o700 })
      for (const file of ["ca.crt", `${id}.crt`, `${id}.key`])
        copyFileSync(join(home, "pki", file), join(local, "pki", file))
      chmodSync(join(local, "pki", `${id}.key`), 0o600)
      const config: NodeConfigFile = {
        ...first,
        id,
        address,
        domain: member.domain,
        relay,
        apiPort: first.apiPort,
        dataDir: hostDir,
        members,
        agent: {
          ...agent,
          certFile: join(hostDir, "pki", `${id}.crt`),
          keyFile: join(hostDir, "pki", `${id}.key`),
          caFile: join(hostDir, "pki", "ca.crt"),
        },
      }
      writeFileSync(join(local, "config.json"), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
      yield* Console.log(
        `${id} (${address}) enrolled: copy ${local}/ to ${hostDir}/ on its host and start it with acp node run --config ${join(hostDir, "config.json")}`,
      )
      yield* Console.log(
        `then copy the updated config.json to each of ${configs.map(({ config }) => config.id).join(", ")} and restart them one at a time`,
      )
    }),
).pipe(
  Command.withDescription("Enrol a new node: its certificate and config, and every existing config updated"),
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
      for (const node of state.nodes) if (alive(pidOf(node))) process.kill(pidOf(node), "SIGTERM")
      const stopped = yield* Effect.sync(() => state.nodes.every((node) => !alive(pidOf(node)))).pipe(
        Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (done) => done, times: 50 }),
      )
      if (!stopped) {
        for (const node of state.nodes) if (alive(pidOf(node))) process.kill(pidOf(node), "SIGKILL")
        yield* Console.log("some nodes ignored SIGTERM for 5 s and were killed")
      }
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
      Effect.map(
        Effect.orElseSucceed(statusOf(node), () => undefined),
        (view) => ({ node, view }),
      ),
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

/** The node to ask: a remote agent if `ACP_REMOTE` says so, else a node of the local cluster. */
export const withNode = <A>(
  dir: Option.Option<string>,
  id: Option.Option<string>,
  body: (node: ClusterNode) => Effect.Effect<A, CliError>,
) =>
  Effect.gen(function* () {
    const remote = yield* remoteFromEnvironment(dirOf(dir))
    if (remote !== undefined)
      return yield* body({ id: remote.url.host, pid: 0, apiPort: 0, configPath: "", logPath: "", remote })
    const state = yield* readState(dirOf(dir))
    return yield* body(yield* pickNode(state, Option.getOrUndefined(id)))
  })

const expectOk = (response: { status: number; body: unknown }) =>
  response.status >= 200 && response.status < 300
    ? Effect.succeed(response.body)
    : Effect.fail(new CliError({ message: describeError(response) }))

/** One API call whose answer must be a success; anything else becomes the API's own message. */
export const ask = (target: ClusterNode, method: string, path: string, body?: unknown) =>
  Effect.flatMap(call(target, method, path, body), expectOk)

/** A node's `/v1/status`. */
const askStatus = (target: ClusterNode) =>
  Effect.map(ask(target, "GET", "/v1/status"), (body) => body as StatusView)

export const objectPath = (kind: string, id: string) =>
  `/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(id)}`

const objectPut = Command.make(
  "put",
  {
    kind: Argument.String("kind"),
    id: Argument.String("id"),
    spec: Flag.String("spec").pipe(Flag.withDescription("The spec as JSON")),
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ kind, id, spec, dir, node }) =>
    withNode(dir, node, (target) =>
      Effect.gen(function* () {
        const parsed = yield* Effect.try({
          try: () => JSON.parse(spec) as unknown,
          catch: (error) => new CliError({ message: `--spec is not JSON: ${(error as Error).message}` }),
        })
        const body = yield* ask(target, "PUT", objectPath(kind, id), parsed)
        const version = (body as { version: { ms: number; counter: number; origin: string } }).version
        yield* Console.log(
          `${kind}/${id} written on ${target.id} (version ${version.origin}@${version.ms}.${version.counter})`,
        )
      }),
    ),
).pipe(Command.withDescription("Write an object's spec (validated against its kind) on one node"))

const objectGet = Command.make(
  "get",
  { kind: Argument.String("kind"), id: Argument.String("id"), dir: dirFlag, node: nodeFlag },
  ({ kind, id, dir, node }) =>
    withNode(dir, node, (target) =>
      ask(target, "GET", objectPath(kind, id)).pipe(
        Effect.flatMap((body) => Console.log(JSON.stringify(body, null, 2))),
      ),
    ),
).pipe(Command.withDescription("Read one object (spec, version, meta) from a node"))

const objectList = Command.make(
  "list",
  { kind: Argument.String("kind"), dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ kind, dir, node, json }) =>
    withNode(dir, node, (target) =>
      ask(target, "GET", `/v1/objects/${encodeURIComponent(kind)}`).pipe(
        Effect.flatMap((body) => {
          const objects = body as ReadonlyArray<{
            kind: string
            id: string
            version: { origin: string; ms: number }
          }>
          if (json) return Console.log(JSON.stringify(objects))
          return Console.log(
            renderTable(
              ["KIND", "ID", "WRITTEN BY", "AT (ms)"],
              objects.map((o) => [o.kind, o.id, o.version.origin, String(o.version.ms)]),
            ),
          )
        }),
      ),
    ),
).pipe(Command.withDescription("List the objects of a kind on a node"))

const objectDelete = Command.make(
  "delete",
  { kind: Argument.String("kind"), id: Argument.String("id"), dir: dirFlag, node: nodeFlag },
  ({ kind, id, dir, node }) =>
    withNode(dir, node, (target) =>
      ask(target, "DELETE", objectPath(kind, id)).pipe(
        Effect.andThen(Console.log(`${kind}/${id} deleted on ${target.id}`)),
      ),
    ),
).pipe(Command.withDescription("Delete an object (a tombstone every node applies)"))

const objectWatch = Command.make(
  "watch",
  {
    kind: Argument.String("kind"),
    seconds: Flag.Int("for").pipe(
      Flag.withDescription("Stop after this many seconds (0: until interrupted)"),
      Flag.withDefault(0),
    ),
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ kind, seconds, dir, node }) =>
    withNode(dir, node, (target) =>
      Effect.gen(function* () {
        type Listed = ReadonlyArray<{ id: string; version: { ms: number; counter: number; origin: string } }>
        const versionOf = (object: Listed[number]) =>
          `${object.version.origin}@${object.version.ms}.${object.version.counter}`
        let known = new Map<string, string>()
        let first = true
        const poll = Effect.gen(function* () {
          const objects = (yield* ask(target, "GET", `/v1/objects/${encodeURIComponent(kind)}`)) as Listed
          const now = new Map(objects.map((object) => [object.id, versionOf(object)]))
          for (const [id, version] of now) {
            if (!known.has(id))
              yield* Console.log(`${first ? "exists " : "added  "} ${kind}/${id} ${version}`)
            else if (known.get(id) !== version) yield* Console.log(`changed ${kind}/${id} ${version}`)
          }
          for (const id of known.keys()) if (!now.has(id)) yield* Console.log(`deleted ${kind}/${id}`)
          known = now
          first = false
        })
        const every = Schedule.spaced("250 millis")
        yield* seconds > 0
          ? Effect.repeat(poll, { schedule: every, times: seconds * 4 })
          : Effect.repeat(poll, every)
      }),
    ),
).pipe(Command.withDescription("Print objects of a kind as they are added, changed and deleted"))

export const objectCommand = Command.make("object").pipe(
  Command.withDescription("Raw CDB access for operators: put, get, list, delete, watch"),
  Command.withSubcommands([objectPut, objectGet, objectList, objectDelete, objectWatch]),
)

export const nodeList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withNode(dir, node, (target) =>
      askStatus(target).pipe(
        Effect.flatMap((view) => {
          const rows = view.members.map((member) => ({
            id: member.id,
            state: member.state,
            primary: member.id === view.primary,
            health:
              (view.health as unknown as { nodes: Record<string, { score: number }> }).nodes[member.id]
                ?.score ?? null,
          }))
          if (json) return Console.log(JSON.stringify(rows))
          return Console.log(
            `as ${view.node} sees them:\n${renderTable(
              ["NODE", "STATE", "PRIMARY", "HEALTH"],
              rows.map((row) => [
                row.id,
                row.state,
                row.primary ? "yes" : "",
                row.health === null ? "-" : String(row.health),
              ]),
            )}`,
          )
        }),
      ),
    ),
).pipe(Command.withDescription("List the cluster's nodes as one node sees them"))

export const nodeShow = Command.make(
  "show",
  {
    id: Argument.String("id").pipe(Argument.withDescription("The node to show, e.g. n2")),
    dir: dirFlag,
    json: jsonFlag,
  },
  ({ id, dir, json }) =>
    withNode(dir, Option.some(id), (target) =>
      askStatus(target).pipe(
        Effect.flatMap((view) => {
          if (json) return Console.log(JSON.stringify(view))
          return Console.log(
            [
              `node ${view.node} (incarnation ${view.incarnation})`,
              `  monitor: ${view.isPrimary ? "primary" : `follower of ${view.primary ?? "nobody"}`} in term ${view.term}${view.fenced ? ", FENCED" : ""}`,
              `  objects: ${view.entries}`,
              `  health:  ${view.health.cluster.score}/100${view.health.cluster.reasons.map((reason) => `\n    -${reason.points}: ${reason.reason}`).join("")}`,
              `  alarms:  ${view.alarms.length === 0 ? "none open" : view.alarms.map((alarm) => alarm.id).join(", ")}`,
            ].join("\n"),
          )
        }),
      ),
    ),
).pipe(Command.withDescription("Show one node: incarnation, monitor role and term, objects, health, alarms"))

export const keyCommand = Command.make("key").pipe(
  Command.withDescription("API keys for the agent"),
  Command.withSubcommands([
    Command.make(
      "create",
      {
        name: Flag.String("name").pipe(Flag.withDescription("Who or what the key is for")),
        role: Flag.Literals("role", ["admin", "operator", "read-only"]).pipe(
          Flag.withDescription("What it may do"),
          Flag.withDefault("read-only"),
        ),
        dir: dirFlag,
        node: nodeFlag,
      },
      ({ name, role, dir, node }) =>
        withNode(dir, node, (target) =>
          Effect.gen(function* () {
            const created = newApiKey(name, role)
            yield* ask(target, "PUT", `/v1/objects/api-key/${created.id}`, created.record)
            yield* Console.log(
              `${created.id} (${role}) for ${name}; the key, shown this once:\n${created.key}`,
            )
          }),
        ),
    ).pipe(Command.withDescription("Create an API key; only its hash is stored, the key is printed once")),
  ]),
)

export const healthCommand = Command.make(
  "health",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withNode(dir, node, (target) =>
      askStatus(target).pipe(
        Effect.flatMap((view) => {
          if (json) return Console.log(JSON.stringify(view.health))
          const reasons = view.health.cluster.reasons.map((reason) => `  -${reason.points}: ${reason.reason}`)
          return Console.log(
            [`health ${view.health.cluster.score}/100 (as ${view.node} sees it)`, ...reasons].join("\n"),
          )
        }),
      ),
    ),
).pipe(Command.withDescription("The cluster's health score, with every reason it is not 100"))

export const monitorCommand = Command.make("monitor").pipe(
  Command.withDescription("The monitor: who is primary, in which term"),
  Command.withSubcommands([
    Command.make("status", { dir: dirFlag, node: nodeFlag, json: jsonFlag }, ({ dir, node, json }) =>
      withNode(dir, node, (target) =>
        askStatus(target).pipe(
          Effect.flatMap((view) => {
            if (json)
              return Console.log(
                JSON.stringify({
                  node: view.node,
                  primary: view.primary,
                  term: view.term,
                  fenced: view.fenced,
                  members: view.members,
                }),
              )
            return Console.log(
              `primary: ${view.primary ?? "none"} (term ${view.term}), as ${view.node} sees it${view.fenced ? "; this node is FENCED" : ""}\n` +
                renderTable(
                  ["MEMBER", "STATE"],
                  view.members.map((member) => [member.id, member.state]),
                ),
            )
          }),
        ),
      ),
    ).pipe(Command.withDescription("Show the primary monitor and the members as one node sees them")),
  ]),
)

export const alarmCommand = Command.make("alarm").pipe(
  Command.withDescription("Alarms raised by the primary monitor"),
  Command.withSubcommands([
    Command.make("list", { dir: dirFlag, node: nodeFlag, json: jsonFlag }, ({ dir, node, json }) =>
      withNode(dir, node, (target) =>
        askStatus(target).pipe(
          Effect.flatMap((body) => {
            const alarms = body.alarms
            if (json) return Console.log(JSON.stringify(alarms))
            if (alarms.length === 0) return Console.log("no open alarms")
            return Console.log(
              renderTable(
                ["ALARM", "SEVERITY", "STATE", "MESSAGE"],
                alarms.map((a) => [a.id, a.severity, a.state, a.message]),
              ),
            )
          }),
        ),
      ),
    ).pipe(Command.withDescription("List the open alarms")),
    Command.make(
      "ack",
      {
        id: Argument.String("id").pipe(Argument.withDescription("The alarm, e.g. node-unreachable.n2")),
        by: Flag.String("by").pipe(
          Flag.withDescription("Who acknowledges it"),
          Flag.withDefault(process.env.USER ?? "operator"),
        ),
        dir: dirFlag,
        node: nodeFlag,
      },
      ({ id, by, dir, node }) =>
        withNode(dir, node, (target) =>
          ask(target, "POST", `/v1/alarms/${encodeURIComponent(id)}/acknowledge`, { by }).pipe(
            Effect.andThen(Console.log(`alarm ${id} acknowledged by ${by}`)),
          ),
        ),
    ).pipe(Command.withDescription("Acknowledge an open alarm (it stays until its condition clears)")),
  ]),
)
