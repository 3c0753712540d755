/**
 * The cluster-state sync benchmark (`acp bench sync`): real ACP nodes, one process each, in
 * network namespaces joined by a bridge (addresses in 198.18.0.0/15) or on loopback, datagrams
 * authenticated, writing through the real write path (the node's CDB core, SQLite, UDP
 * multicast). Each node's probe (`acp node run --bench`, adapters/node/bench-agent.ts) records
 * when it applied every update; this driver computes, per update, "written on the writer,
 * visible on every node", and from that the throughput, latency and losses.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { BenchCommand, BenchReply } from "../adapters/node/bench-agent.ts"
import { percentileOfSorted } from "../core/percentile.ts"

export interface SyncOptions {
  readonly nodes: number
  readonly size: number
  readonly mtu: number
  readonly writers: number
  /** Loopback instead of network namespaces (no root needed). */
  readonly loopback: boolean
  /** SQLite's synchronous mode on every node: FULL (fsync per commit) or NORMAL. */
  readonly synchronous: "FULL" | "NORMAL"
  /** Updates per write call at most. */
  readonly batch: number
  /** Where the nodes' data and logs go (removed afterwards). */
  readonly home: string
  readonly entry: string
  readonly progress: (line: string, fraction?: number) => void
}

export interface RunFigures {
  readonly offeredPerSec: number | null
  readonly updates: number
  readonly updatesPerSec: number
  readonly mbPerSec: number
  readonly latencyMsP50: number
  readonly latencyMsP99: number
  readonly latencyMsMax: number
  /** Updates some node had not applied when the run ended. */
  readonly lost: number
  /** Updates the writers' nodes acknowledged (durable on the writer). */
  readonly acknowledged: number
  readonly elapsedMs: number
  /** CPU used by each node process during the run, in cores (1 = one core busy). */
  readonly cpuCoresPerNode: ReadonlyArray<number>
  /** Datagrams all nodes sent, per update (digests and repairs included). */
  readonly datagramsPerUpdate: number
  /** Gaps asked for (NACKs), repairs sent and snapshots installed during the run, all nodes. */
  readonly repairs: { readonly nacks: number; readonly repairs: number; readonly snapshots: number }
}

const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: 20_000 })

export const namespacesUsable = (): true | string => {
  if (process.getuid?.() !== 0) return "not root (use --loopback)"
  const probe = sh("ip netns add acpbench-probe && ip netns del acpbench-probe")
  return probe.status === 0 ? true : `ip netns unavailable: ${probe.stderr.trim()} (use --loopback)`
}

interface Member {
  readonly id: string
  readonly index: number
  readonly address: string
  readonly ns: string | undefined
}

/** A running benchmark cluster: its processes, its namespaces, and the probe's IPC channel to each. */
export class BenchCluster {
  readonly members: ReadonlyArray<Member>
  private readonly options: SyncOptions
  private readonly children: Array<ChildProcess> = []
  private readonly waiting = new Map<string, Array<(reply: BenchReply) => void>>()
  private readonly tag: string
  private readonly switchNs: string

  constructor(options: SyncOptions, nodes: number) {
    this.options = options
    this.tag = `acpb${process.pid % 100_000}n${nodes}`
    this.switchNs = `${this.tag}-sw`
    this.members = Array.from({ length: nodes }, (_, index) => ({
      id: `n${index + 1}`,
      index,
      address: options.loopback ? "127.0.0.1" : `198.18.7.${10 + index}`,
      ns: options.loopback ? undefined : `${this.tag}-${index + 1}`,
    }))
  }

  async start(): Promise<void> {
    const { options } = this
    if (!options.loopback) this.network()
    const basePort = 42_000 + ((process.pid % 500) + this.members.length * 7) * 2
    const key = randomBytes(32).toString("hex")
    const port = (member: Member) => (options.loopback ? basePort + 1 + member.index : basePort + 1)
    const members = this.members.map((member) => ({
      id: member.id,
      address: member.address,
      port: port(member),
      domain: "bench",
      relay: false,
    }))
    for (const member of this.members) {
      const dataDir = join(options.home, member.id)
      mkdirSync(dataDir, { recursive: true })
      const config = {
        id: member.id,
        cluster: 7,
        domain: "bench",
        relay: false,
        address: member.address,
        port: port(member),
        group: "239.255.77.1",
        groupPort: basePort,
        apiPort: basePort + 100 + member.index,
        dataDir,
        keyHex: key,
        encrypt: false,
        mtu: options.mtu,
        synchronous: options.synchronous,
        members,
        agent: null,
      }
      const configPath = join(dataDir, "config.json")
      writeFileSync(configPath, JSON.stringify(config, null, 2))
      const log = openSync(join(dataDir, "node.log"), "a")
      const command = [process.execPath, options.entry, "node", "run", "--config", configPath, "--bench"]
      const child =
        member.ns === undefined
          ? spawn(command[0]!, command.slice(1), { stdio: ["ignore", log, log, "ipc"] })
          : spawn("ip", ["netns", "exec", member.ns, ...command], { stdio: ["ignore", log, log, "ipc"] })
      child.on("message", (reply: BenchReply) => {
        const queue = this.waiting.get(`${member.id}:${reply.t}`)
        queue?.shift()?.(reply)
      })
      this.children.push(child)
    }
    await Promise.all(this.members.map((member) => this.expect(member, "ready", 30_000)))
  }

  /** One namespace per node plus a switch namespace with a bridge; multicast routed on each link. */
  private network(): void {
    const run = (command: string) => {
      const result = sh(command)
      if (result.status !== 0) throw new Error(`${command}: ${result.stderr.trim()}`)
    }
    run(`ip netns add ${this.switchNs}`)
    run(`ip -n ${this.switchNs} link add br0 type bridge`)
    run(`ip -n ${this.switchNs} link set br0 up`)
    for (const member of this.members) {
      const ns = member.ns!
      const [inner, outer] = [`${this.tag}a${member.index}`, `${this.tag}b${member.index}`]
      run(`ip netns add ${ns}`)
      run(`ip link add ${inner} type veth peer name ${outer}`)
      run(`ip link set ${inner} netns ${ns}`)
      run(`ip link set ${outer} netns ${this.switchNs}`)
      run(`ip -n ${this.switchNs} link set ${outer} master br0 up`)
      run(`ip -n ${ns} link set lo up`)
      run(`ip -n ${ns} addr add ${member.address}/24 dev ${inner}`)
      run(`ip -n ${ns} link set ${inner} up multicast on`)
      run(`ip -n ${ns} route add 224.0.0.0/4 dev ${inner}`)
    }
  }

  send(member: Member, command: BenchCommand): void {
    this.children[member.index]!.send(command)
  }

  expect<T extends BenchReply["t"]>(
    member: Member,
    type: T,
    timeoutMs: number,
  ): Promise<Extract<BenchReply, { t: T }>> {
    return new Promise((resolve, reject) => {
      const key = `${member.id}:${type}`
      const timer = setTimeout(() => {
        const queue = this.waiting.get(key) ?? []
        queue.splice(queue.indexOf(done), 1)
        reject(
          new Error(
            `${member.id} did not answer "${type}" within ${timeoutMs} ms (log: ${join(this.options.home, member.id, "node.log")})`,
          ),
        )
      }, timeoutMs)
      const done = (reply: BenchReply) => {
        clearTimeout(timer)
        resolve(reply as Extract<BenchReply, { t: T }>)
      }
      this.waiting.set(key, [...(this.waiting.get(key) ?? []), done])
    })
  }

  async request<T extends BenchReply["t"]>(
    member: Member,
    command: BenchCommand,
    type: T,
  ): Promise<Extract<BenchReply, { t: T }>> {
    const reply = this.expect(member, type, 60_000)
    this.send(member, command)
    return reply
  }

  /** Stops every node (by process id) and removes the namespaces. */
  stop(): void {
    for (const child of this.children)
      if (child.pid !== undefined && child.exitCode === null) child.kill("SIGTERM")
    const deadline = Date.now() + 5_000
    while (
      Date.now() < deadline &&
      this.children.some((child) => child.exitCode === null && child.signalCode === null)
    )
      spawnSync("sleep", ["0.1"])
    for (const child of this.children)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    if (!this.options.loopback) {
      for (const member of this.members) sh(`ip netns del ${member.ns}`)
      sh(`ip netns del ${this.switchNs}`)
    }
  }
}

const sorted = (values: Float64Array): Float64Array => values.slice().sort()
const at = (values: Float64Array, p: number): number => percentileOfSorted(values, p) ?? Number.NaN
const round = (value: number, digits = 3) => Number(value.toFixed(digits))

let runCounter = 0

/**
 * One measured run: `updates` updates of `size` bytes from the writers (each its share), paced at
 * `offeredPerSec` or as fast as the write path goes; waits until every node has applied every
 * update, or until nothing has moved for `stallMs`.
 */
export const measure = async (
  cluster: BenchCluster,
  options: SyncOptions,
  updates: number,
  offeredPerSec: number | null,
  stallMs = 10_000,
): Promise<RunFigures> => {
  const writers = cluster.members.slice(0, Math.max(1, Math.min(options.writers, cluster.members.length)))
  const runs = writers.map((writer, index) => ({
    writer,
    run: `r${++runCounter}w${index}`,
    count: Math.floor(updates / writers.length) + (index < updates % writers.length ? 1 : 0),
  }))
  for (const member of cluster.members)
    for (const { run, count } of runs) await cluster.request(member, { t: "track", run, count }, "tracking")
  const usage = async () =>
    Promise.all(cluster.members.map((member) => cluster.request(member, { t: "usage" }, "usage")))
  const before = await usage()
  const startedMs = performance.now()
  const written = runs.map(({ writer, run, count }) =>
    cluster.request(
      writer,
      {
        t: "write",
        run,
        count,
        size: options.size,
        batch: options.batch,
        rate: offeredPerSec === null ? 0 : offeredPerSec / writers.length,
      },
      "written",
    ),
  )
  const acknowledged = (await Promise.all(written)).reduce((sum, reply) => sum + reply.acknowledged, 0)
  // Then wait until every node has applied everything (or nothing has moved for `stallMs`).
  const names = runs.map(({ run }) => run)
  const total = updates * cluster.members.length
  let lastProgress = performance.now()
  let lastApplied = -1
  for (;;) {
    const replies = await Promise.all(
      cluster.members.map((member) => cluster.request(member, { t: "progress", runs: names }, "progress")),
    )
    const applied = replies.reduce((sum, reply) => sum + reply.applied, 0)
    options.progress(`${Math.floor((applied / total) * 100)}% applied on all nodes`, applied / total)
    if (applied === total) break
    if (applied !== lastApplied) {
      lastApplied = applied
      lastProgress = performance.now()
    } else if (performance.now() - lastProgress > stallMs) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const after = await usage()
  const wallMs = performance.now() - startedMs
  const collected = await Promise.all(
    cluster.members.map(async (member) =>
      Promise.all(
        runs.map(async ({ run, count }) => {
          const file = join(options.home, member.id, `${run}.bin`)
          const reply = await cluster.request(member, { t: "collect", run, file }, "collected")
          if (reply.error !== undefined)
            throw new Error(`${member.id} could not write ${file}: ${reply.error}`)
          await cluster.request(member, { t: "forget", run }, "forgotten")
          // Copied into a fresh buffer: a Float64Array needs an 8-byte-aligned offset.
          const all = new Float64Array(new Uint8Array(readFileSync(file)).buffer, 0, count * 2)
          rmSync(file)
          return { appliedMs: all.slice(0, count), writtenMs: all.slice(count) }
        }),
      ),
    ),
  )
  // Per update: written on its writer, visible on every node.
  const latencies: Array<number> = []
  let firstWrittenMs = Number.POSITIVE_INFINITY
  let lastVisibleMs = 0
  let lost = 0
  runs.forEach(({ writer, count }, runIndex) => {
    const writtenMs = collected[writer.index]![runIndex]!.writtenMs
    for (let index = 0; index < count; index++) {
      let visibleMs = 0
      for (const node of collected) {
        const appliedMs = node[runIndex]!.appliedMs[index]!
        visibleMs = appliedMs === 0 || visibleMs === -1 ? -1 : Math.max(visibleMs, appliedMs)
      }
      if (visibleMs < 0) {
        lost++
        continue
      }
      firstWrittenMs = Math.min(firstWrittenMs, writtenMs[index]!)
      lastVisibleMs = Math.max(lastVisibleMs, visibleMs)
      latencies.push(visibleMs - writtenMs[index]!)
    }
  })
  const ordered = sorted(Float64Array.from(latencies))
  const elapsedMs = Math.max(0.001, lastVisibleMs - firstWrittenMs)
  const delivered = updates - lost
  const sum = (pick: (reply: Extract<BenchReply, { t: "usage" }>) => number) =>
    after.reduce((total, reply, index) => total + pick(reply) - pick(before[index]!), 0)
  return {
    offeredPerSec,
    updates,
    updatesPerSec: Math.round((delivered / elapsedMs) * 1000),
    mbPerSec: round((delivered * options.size) / elapsedMs / 1000, 1),
    latencyMsP50: round(at(ordered, 50)),
    latencyMsP99: round(at(ordered, 99)),
    latencyMsMax: round(ordered.at(-1) ?? Number.NaN),
    lost,
    acknowledged,
    elapsedMs: Math.round(elapsedMs),
    cpuCoresPerNode: after.map((reply, index) =>
      round((reply.cpuUs - before[index]!.cpuUs) / 1000 / wallMs, 2),
    ),
    datagramsPerUpdate: round(sum((reply) => reply.datagramsOut) / Math.max(1, updates), 3),
    repairs: {
      nacks: sum((reply) => reply.nacksSent),
      repairs: sum((reply) => reply.repairsSent),
      snapshots: sum((reply) => reply.snapshotsInstalled),
    },
  }
}

/** Starts a cluster of `nodes`, warms it up (every node applies a first batch), runs `body`, stops it. */
export const withCluster = async <A>(
  options: SyncOptions,
  nodes: number,
  body: (cluster: BenchCluster) => Promise<A>,
): Promise<A> => {
  const cluster = new BenchCluster(options, nodes)
  try {
    options.progress(`starting ${nodes} nodes (${options.loopback ? "loopback" : "network namespaces"})`)
    await cluster.start()
    await measure(cluster, options, 200, 2_000, 20_000)
    return await body(cluster)
  } finally {
    cluster.stop()
    rmSync(options.home, { recursive: true, force: true })
  }
}
