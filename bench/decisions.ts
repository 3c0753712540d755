/**
 * The decision log's commit latency and decisions per second on a real 3-node local cluster
 * (`acp cluster up`: three node processes on loopback, SQLite with fsync for every decision on
 * every voter), beside etcd's puts on a 3-member cluster on the same machine, in the same run
 * (`../shared/peers`: etcd fsyncs its WAL for every batch, as ACP does its log).
 *
 *   node bench/decisions.ts [--decisions 10000] [--concurrency 256] [--serial 500] [--no-etcd]
 *
 * Each decision is one `POST /v1/decisions` on the primary, answered once a majority of the
 * voters holds it durably and the primary has applied it: a worker grants itself a VLAN id and
 * gives it back, again and again, so the decided state stays small. Two runs each: `--concurrency`
 * calls in flight (throughput, and the latency under that load), then one at a time (`--serial`
 * calls: the latency of one decision alone). etcd gets the same two runs with its own client
 * (`etcd-put.mjs`, 200-byte values). Prints a table, and the ratios.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { percentileOfSorted } from "../core/percentile.ts"
import { preparePeers } from "./peers.ts"

const root = fileURLToPath(new URL("..", import.meta.url))
const flag = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? fallback : Number(process.argv[index + 1])
}
const decisions = flag("decisions", 10_000)
const concurrency = flag("concurrency", 256)
const serial = flag("serial", 500)
const withEtcd = !process.argv.includes("--no-etcd")
const basePort = flag("base-port", 27_000)

const progress = (line: string) => process.stderr.write(`${line}\n`)

interface Figure {
  readonly name: string
  readonly concurrency: number
  readonly done: number
  readonly perSec: number
  readonly p50Ms: number | null
  readonly p99Ms: number | null
  readonly detail: string
}

const home = mkdtempSync(join(tmpdir(), "acp-bench-decisions-"))
const env = { ...process.env, ACP_HOME: home }
const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [join(root, "dist/acp.mjs"), ...args], {
    cwd: root,
    env,
    encoding: "utf8",
    timeout: 120_000,
  })
const apiPort = (node: number) => basePort + 100 + node

const call = async (node: number, method: string, path: string, key: string, body?: unknown) => {
  const response = await fetch(`http://127.0.0.1:${apiPort(node)}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  })
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

/** Runs `total` decisions, `inFlight` at a time, on node `on`; each worker grants and releases its own VLAN id. */
const runAcp = async (
  on: number,
  key: string,
  total: number,
  inFlight: number,
  pool: string,
): Promise<Figure> => {
  const latencies: Array<number> = []
  let issued = 0
  let failed = 0
  let firstFailure = ""
  const started = performance.now()
  const worker = async (index: number) => {
    const value = 1 + index
    let held = false
    while (issued < total) {
      issued++
      const command = held
        ? { _tag: "Release", pool, holder: `w${index}`, value }
        : { _tag: "Grant", pool, holder: `w${index}`, value }
      const sent = performance.now()
      const answer = await call(on, "POST", "/v1/decisions", key, command).catch((error: unknown) => ({
        status: 0,
        body: { detail: String(error) },
      }))
      if (answer.status === 200) {
        latencies.push(performance.now() - sent)
        held = !held
      } else {
        failed++
        if (firstFailure === "")
          firstFailure = `${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}`
      }
    }
  }
  await Promise.all(Array.from({ length: inFlight }, (_, index) => worker(index)))
  const seconds = (performance.now() - started) / 1000
  latencies.sort((left, right) => left - right)
  return {
    name: "ACP decision log",
    concurrency: inFlight,
    done: latencies.length,
    perSec: Math.round(latencies.length / seconds),
    p50Ms: percentileOfSorted(latencies, 50) ?? null,
    p99Ms: percentileOfSorted(latencies, 99) ?? null,
    detail: `3 voters, POST /v1/decisions on the primary${failed > 0 ? `; ${failed} failed (first: ${firstFailure})` : ""}`,
  }
}

const runEtcd = (dir: string, total: number, inFlight: number): Figure => {
  const out = spawnSync(
    "bash",
    [
      "-c",
      `timeout 300 node etcd-put.mjs --endpoint=http://127.0.0.1:23791 --n=${total} --conc=${inFlight} --runs=1 --maxsec=60`,
    ],
    { cwd: dir, encoding: "utf8", timeout: 400_000 },
  )
  const line = out.stdout.split("\n").find((candidate) => candidate.startsWith("{"))
  const result = line === undefined ? undefined : (JSON.parse(line) as Record<string, number>)
  return {
    name: "etcd put",
    concurrency: inFlight,
    done: result?.done ?? 0,
    perSec: result?.opsPerSec ?? 0,
    p50Ms: result?.latMsP50 ?? null,
    p99Ms: result?.latMsP99 ?? null,
    detail:
      result === undefined
        ? `etcd-put.mjs printed no result: ${(out.stderr || out.stdout).slice(-300)}`
        : "3 members, puts to the leader (m1), 200-byte values",
  }
}

const format = (value: number | null) => (value === null ? "-" : value.toFixed(2))

const main = async () => {
  progress(`starting a 3-node cluster on loopback (ports from ${basePort})…`)
  const up = acp("cluster", "up", "--nodes", "3", "--base-port", String(basePort))
  if (up.status !== 0) throw new Error(`acp cluster up failed: ${up.stderr}${up.stdout}`)
  const figures: Array<Figure> = []
  try {
    const key = readFileSync(join(home, "admin.key"), "utf8").trim()
    let primary: number | undefined
    for (let attempt = 0; attempt < 100 && primary === undefined; attempt++) {
      const view = await call(1, "GET", "/v1/decisions", key).catch(() => undefined)
      const leader = view?.body.leader
      if (typeof leader === "string") primary = Number(leader.slice(1))
      else await new Promise((done) => setTimeout(done, 200))
    }
    if (primary === undefined) throw new Error("no primary after 20 s")
    progress(`primary n${primary}; warming up…`)
    await runAcp(primary, key, 200, 16, "warm")
    progress(`ACP: ${decisions} decisions, ${concurrency} in flight…`)
    figures.push(await runAcp(primary, key, decisions, concurrency, "bench"))
    progress(`ACP: ${serial} decisions, one at a time…`)
    figures.push(await runAcp(primary, key, serial, 1, "serial"))
  } finally {
    acp("cluster", "down", "--purge")
    rmSync(home, { recursive: true, force: true })
  }
  if (withEtcd) {
    const dir = preparePeers(
      resolve(root, "..", "shared", "peers"),
      join(tmpdir(), "acp-bench-peers"),
      progress,
    )
    progress("etcd: starting 3 members…")
    const start = spawnSync("bash", ["-c", "./etcd-cluster.sh start"], { cwd: dir, encoding: "utf8" })
    if (start.status !== 0) throw new Error(`etcd-cluster.sh start failed: ${start.stderr}`)
    try {
      spawnSync("bash", ["-c", "timeout 60 node etcd-put.mjs --n=200 --conc=16 --runs=1"], { cwd: dir })
      progress(`etcd: ${decisions} puts, ${concurrency} in flight…`)
      figures.push(runEtcd(dir, decisions, concurrency))
      progress(`etcd: ${serial} puts, one at a time…`)
      figures.push(runEtcd(dir, serial, 1))
    } finally {
      spawnSync("bash", ["-c", "./etcd-cluster.sh stop"], { cwd: dir })
    }
  }
  console.log("| system | in flight | done | per second | p50 ms | p99 ms | detail |")
  console.log("|---|---|---|---|---|---|---|")
  for (const figure of figures)
    console.log(
      `| ${figure.name} | ${figure.concurrency} | ${figure.done} | ${figure.perSec} | ${format(figure.p50Ms)} | ${format(figure.p99Ms)} | ${figure.detail} |`,
    )
  for (const inFlight of [concurrency, 1]) {
    const ours = figures.find((figure) => figure.name.startsWith("ACP") && figure.concurrency === inFlight)
    const theirs = figures.find((figure) => figure.name.startsWith("etcd") && figure.concurrency === inFlight)
    if (ours !== undefined && theirs !== undefined && theirs.perSec > 0)
      console.log(
        `${inFlight} in flight: ACP ${ours.perSec}/s, etcd ${theirs.perSec}/s: ${(ours.perSec / theirs.perSec).toFixed(2)}x; p50 ${format(ours.p50Ms)} ms against ${format(theirs.p50Ms)} ms`,
      )
  }
  console.log(`RESULT decisions ${JSON.stringify(figures)}`)
}

await main()
