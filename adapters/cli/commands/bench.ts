/**
 * `acp bench sync` and `acp bench sim`: how fast cluster state syncs between real nodes, beside
 * etcd, corosync and NATS on the same machine; and how the CDB's cost grows with cluster size,
 * in the simulator. Both can write one HTML report (`--report`).
 */
import { mkdtempSync, realpathSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Console, Effect, Option, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import { type PeerFigure, type PeerName, peerNames, preparePeers, runPeer } from "../../../bench/peers.ts"
import { type SimRow, type SyncSection, updateReport } from "../../../bench/report.ts"
import { digestMsFor, simStudyRow } from "../../../bench/sim-study.ts"
import {
  measure,
  namespacesUsable,
  type RunFigures,
  type SyncOptions,
  withCluster,
} from "../../../bench/sync.ts"
import { progressOn } from "../progress.ts"

export class BenchUsageError extends Schema.TaggedError<BenchUsageError>()("BenchUsageError", {
  message: Schema.String,
}) {}

/**
 * The repository root, for the default peers folder (../shared/peers beside the repository):
 * found from the real path of the running script (npx runs it through symlinks in its cache).
 */
const repositoryRoot = () => {
  const entry = realpathSync(process.argv[1] ?? fileURLToPath(import.meta.url))
  return resolve(dirname(entry), "..")
}

const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDescription("Print one JSON object on stdout"),
  Flag.withDefault(false),
)
const reportFlag = Flag.String("report").pipe(
  Flag.withDescription("Write (or update) an HTML report"),
  Flag.optional,
)

/** A refused command says why on stderr and exits with 2. */
const refused = (command: string) => (error: BenchUsageError) =>
  Effect.sync(() => {
    process.stderr.write(`${command}: ${error.message}\n`)
    process.exitCode = 2
  })

const describeRun = (name: string, run: RunFigures) =>
  `${name}: ${run.updatesPerSec.toLocaleString("en")} updates/s on all nodes (${run.mbPerSec} MB/s), p50 ${run.latencyMsP50} ms, p99 ${run.latencyMsP99} ms, lost ${run.lost}, CPU ${run.cpuCoresPerNode.join(" / ")} cores, ${run.datagramsPerUpdate} datagrams/update, NACKs ${run.repairs.nacks}`

const syncCommand = Command.make(
  "sync",
  {
    nodes: Flag.Int("nodes").pipe(Flag.withDescription("ACP nodes, one process each"), Flag.withDefault(3)),
    updates: Flag.Int("updates").pipe(
      Flag.withDescription("Updates in the throughput run"),
      Flag.withDefault(200_000),
    ),
    size: Flag.Int("size").pipe(Flag.withDescription("Bytes per update"), Flag.withDefault(200)),
    mtu: Flag.Int("mtu").pipe(Flag.withDescription("Largest datagram"), Flag.withDefault(1400)),
    writers: Flag.Int("writers").pipe(
      Flag.withDescription("Nodes that write, each its share"),
      Flag.withDefault(1),
    ),
    batch: Flag.Int("batch").pipe(
      Flag.withDescription("Updates per write call at most (one SQLite commit, one fsync, each)"),
      Flag.withDefault(256),
    ),
    durability: Flag.Literals("durability", ["full", "normal"]).pipe(
      Flag.withDescription(
        "full: a write is acknowledged once its commit is fsynced on the writer (received changes never wait for fsync); normal: no fsync",
      ),
      Flag.withDefault("full"),
    ),
    peers: Flag.String("peers").pipe(
      Flag.withDescription(`Peers to run in the same run: a list of ${peerNames.join(", ")}`),
      Flag.optional,
    ),
    peersDir: Flag.String("peers-dir").pipe(
      Flag.withDescription("Where the peers' scripts are (default: ../shared/peers beside the repository)"),
      Flag.optional,
    ),
    loopback: Flag.Boolean("loopback").pipe(
      Flag.withDescription("Run the nodes on loopback instead of network namespaces (no root needed)"),
      Flag.withDefault(false),
    ),
    curve: Flag.Boolean("curve").pipe(
      Flag.withDescription(
        "Also measure latency under load (offered vs delivered) and scaling (3, 5, 7 nodes)",
      ),
      Flag.withDefault(false),
    ),
    json: jsonFlag,
    report: reportFlag,
  },
  (input) =>
    Effect.gen(function* () {
      const usage = (message: string) => new BenchUsageError({ message })
      if (input.nodes < 2 || input.nodes > 16) return yield* usage(`--nodes ${input.nodes}: expected 2..16`)
      if (input.updates < 100 || input.updates > 10_000_000)
        return yield* usage(`--updates ${input.updates}: expected 100..10000000`)
      if (input.size < 16 || input.size > 1200)
        return yield* usage(`--size ${input.size}: expected 16..1200 bytes`)
      if (input.mtu < 576 || input.mtu > 9000) return yield* usage(`--mtu ${input.mtu}: expected 576..9000`)
      if (input.writers < 1 || input.writers > input.nodes)
        return yield* usage(`--writers ${input.writers}: expected 1..${input.nodes}`)
      if (input.batch < 1 || input.batch > 4096)
        return yield* usage(`--batch ${input.batch}: expected 1..4096`)
      const peers = Option.isNone(input.peers) ? [] : input.peers.value.split(",").map((name) => name.trim())
      const unknown = peers.filter((name) => !(peerNames as ReadonlyArray<string>).includes(name))
      if (unknown.length > 0)
        return yield* usage(`--peers: unknown ${unknown.join(", ")}; known: ${peerNames.join(", ")}`)
      if (!input.loopback) {
        const usable = namespacesUsable()
        if (usable !== true) return yield* usage(`network namespaces: ${usable}`)
      }
      const show = !input.json
      const progress = progressOn(process.stderr, show)
      const options: SyncOptions = {
        nodes: input.nodes,
        size: input.size,
        mtu: input.mtu,
        writers: input.writers,
        loopback: input.loopback,
        synchronous: input.durability === "full" ? "FULL" : "NORMAL",
        batch: input.batch,
        home: mkdtempSync(join(tmpdir(), "acp-bench-")),
        entry: process.argv[1]!,
        progress: progress.update,
      }
      const setup = `${input.nodes} ACP nodes (${input.loopback ? "loopback" : "network namespaces, 198.18.7.0/24, one bridge"}), ${input.size}-byte updates, MTU ${input.mtu}, ${input.writers} writer(s), datagrams authenticated (HMAC-SHA-256), SQLite synchronous=${options.synchronous} on every node, up to ${input.batch} updates per write`
      if (show) yield* Console.error(setup)
      const sections = yield* Effect.tryPromise({
        catch: (error) =>
          new BenchUsageError({ message: error instanceof Error ? error.message : String(error) }),
        try: async () => {
          const main = await withCluster(options, input.nodes, async (cluster) => {
            const fast = await measure(cluster, options, input.updates, null)
            progress.done(`${describeRun("throughput", fast)}`)
            const idle = await measure(cluster, options, 1_000, 200)
            progress.done(`${describeRun("200 updates/s", idle)}`)
            const curve: Array<RunFigures> = []
            if (input.curve) {
              for (const share of [0.1, 0.25, 0.5, 0.75, 1, 1.25]) {
                const rate = Math.max(200, Math.round(fast.updatesPerSec * share))
                const run = await measure(
                  cluster,
                  options,
                  Math.min(input.updates, Math.max(2_000, rate * 2)),
                  rate,
                )
                progress.done(`${describeRun(`offered ${rate}/s`, run)}`)
                curve.push(run)
              }
            }
            return { fast, idle, curve }
          })
          const scaling: Array<{ nodes: number; figures: RunFigures }> = []
          if (input.curve) {
            for (const nodes of [3, 5, 7]) {
              const scaled = { ...options, home: mkdtempSync(join(tmpdir(), "acp-bench-")) }
              const figures = await withCluster(scaled, nodes, (cluster) =>
                measure(cluster, scaled, Math.min(input.updates, 100_000), null),
              )
              progress.done(`${describeRun(`${nodes} nodes`, figures)}`)
              scaling.push({ nodes, figures })
            }
          }
          const peerFigures: Array<PeerFigure> = []
          if (peers.length > 0) {
            const source = Option.isSome(input.peersDir)
              ? resolve(input.peersDir.value)
              : resolve(repositoryRoot(), "..", "shared", "peers")
            const dir = preparePeers(source, join(tmpdir(), "acp-bench-peers"), progress.update)
            for (const name of peers as Array<PeerName>) {
              progress.update(`running ${name}…`)
              const figure = runPeer(dir, name, Math.min(input.updates, 1_000_000))
              progress.done(
                `${name}: ${figure.updatesPerSec === null ? "no result" : `${figure.updatesPerSec.toLocaleString("en")} updates/s`} (${figure.detail})`,
              )
              peerFigures.push(figure)
            }
          }
          return { ...main, scaling, peerFigures }
        },
      })
      const { fast, idle, curve, scaling, peerFigures } = sections
      const ratios = Object.fromEntries(
        peerFigures.map((peer) => [
          peer.name,
          peer.updatesPerSec === null ? null : Number((fast.updatesPerSec / peer.updatesPerSec).toFixed(2)),
        ]),
      )
      if (Option.isSome(input.report)) {
        const section: SyncSection = {
          at: new Date().toISOString(),
          setup,
          main: fast,
          idle,
          curve,
          scaling,
          peers: peerFigures,
        }
        updateReport(input.report.value, { sync: section })
        if (show) yield* Console.error(`report: ${input.report.value}`)
      }
      if (input.json) {
        yield* Console.log(
          JSON.stringify({
            nodes: input.nodes,
            updates: input.updates,
            size: input.size,
            mtu: input.mtu,
            writers: input.writers,
            mode: input.loopback ? "loopback" : "netns",
            durability: input.durability,
            updatesPerSec: fast.updatesPerSec,
            mbPerSec: fast.mbPerSec,
            latencyMsP50: fast.latencyMsP50,
            latencyMsP99: fast.latencyMsP99,
            lost: fast.lost,
            acknowledged: fast.acknowledged,
            cpuCoresPerNode: fast.cpuCoresPerNode,
            datagramsPerUpdate: fast.datagramsPerUpdate,
            repairs: fast.repairs,
            at200PerSec: {
              latencyMsP50: idle.latencyMsP50,
              latencyMsP99: idle.latencyMsP99,
              lost: idle.lost,
            },
            ...(curve.length > 0 ? { curve } : {}),
            ...(scaling.length > 0 ? { scaling } : {}),
            peers: Object.fromEntries(peerFigures.map((peer) => [peer.name, peer.updatesPerSec])),
            ratios,
          }),
        )
      } else {
        for (const [name, ratio] of Object.entries(ratios))
          yield* Console.log(`ACP ÷ ${name}: ${ratio === null ? "no figure" : `${ratio}×`}`)
      }
      if (fast.lost > 0 || idle.lost > 0) process.exitCode = 1
    }).pipe(Effect.catchTag("BenchUsageError", refused("acp bench sync"))),
).pipe(
  Command.withDescription(
    "Measure cluster-state sync between real ACP nodes (updates/s, latency, losses), beside etcd, corosync and NATS",
  ),
)

const simCommand = Command.make(
  "sim",
  {
    sizes: Flag.String("sizes").pipe(
      Flag.withDescription("Cluster sizes, comma-separated (1000 nodes takes minutes)"),
      Flag.withDefault("10,100,1000"),
    ),
    json: jsonFlag,
    report: reportFlag,
  },
  (input) =>
    Effect.gen(function* () {
      const sizes = input.sizes.split(",").map((size) => Number(size.trim()))
      if (sizes.some((size) => !Number.isInteger(size) || size < 2 || size > 5000))
        return yield* new BenchUsageError({ message: `--sizes ${input.sizes}: expected integers in 2..5000` })
      const rows: Array<SimRow> = []
      for (const nodes of sizes) {
        if (!input.json) process.stderr.write(`${nodes} nodes (digest every ${digestMsFor(nodes)} ms)… `)
        const row = yield* Effect.try({
          try: () => simStudyRow(nodes),
          catch: (error) => new BenchUsageError({ message: `the simulation failed: ${String(error)}` }),
        })
        const wallMs = row.wallMs
        rows.push(row)
        if (!input.json)
          process.stderr.write(
            `converged ${row.convergenceMs} ms after the heal, ${row.deliveriesPerChange.toFixed(1)} deliveries per change, ${wallMs} ms wall\n`,
          )
      }
      if (Option.isSome(input.report)) {
        updateReport(input.report.value, { sim: { at: new Date().toISOString(), rows } })
        if (!input.json) yield* Console.error(`report: ${input.report.value}`)
      }
      if (input.json) yield* Console.log(JSON.stringify({ rows }))
    }).pipe(Effect.catchTag("BenchUsageError", refused("acp bench sim"))),
).pipe(Command.withDescription("The simulator's study of the CDB's cost at 10, 100 and 1000 nodes"))

export const benchCommand = Command.make("bench").pipe(
  Command.withDescription(
    "Benchmarks: cluster-state sync on real nodes and beside its peers; the simulator's scale study",
  ),
  Command.withSubcommands([syncCommand, simCommand]),
)
