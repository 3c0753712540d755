/**
 * The fault harness on real processes (after TigerBeetle's Vortex and Jepsen): N real node
 * processes — the real driver, SQLite, libvirt's test driver, the agent and the API — joined
 * through `links.ts`'s faulty network, under the seed's schedule of faults (`schedule.ts`): link
 * faults, kill -9 and restart, SIGSTOP/SIGCONT, a data directory on a tmpfs that fills up (also
 * across a restart), wall-clock steps through libfaketime, and a replay adversary. A workload
 * writes, deletes and reads objects, makes HA systems and operates them, and tries an operator
 * key on admin objects, through the API and the CLI as clients do, while samplers ask each node
 * for its status and its driver's domains. Everything is recorded with real timestamps, and the
 * checkers (`checks.ts`) judge the history once the faults stop and the cluster converges.
 *
 * One seed drives the schedule and the workload's choices; the processes run in real time, so a
 * replay by seed repeats the faults, not every interleaving.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs"
import { request as httpRequest } from "node:http"
import { join } from "node:path"
import { Effect } from "effect"
import type { DecisionAnswer, DecisionCommand } from "../../core/decision/state.ts"
import { domainNameOf } from "../../core/hypervisor/hypervisor.ts"
import { Prng } from "../../core/random.ts"
import { newApiKey } from "../agent/keys.ts"
import { ensureCa, issue } from "../agent/pki.ts"
import type { NodeConfig } from "../node/config.ts"
import {
  type Bounds,
  checkHistory,
  type DecisionRecord,
  type DomainSample,
  defaultBounds,
  type FaultRecord,
  type Figures,
  type FinalObject,
  type History,
  type Outcome,
  type ProcessEvent,
  type ReadRecord,
  type StatusSample,
  type Violation,
  type WriteRecord,
} from "./checks.ts"
import { cleanLink, type LinkFaults, Links } from "./links.ts"
import {
  clockLeadMs,
  clockWatchMs,
  describeFault,
  drawSchedule,
  type Fault,
  type FaultKind,
  faultKinds,
} from "./schedule.ts"

export interface VortexOptions {
  readonly seed: number
  readonly nodes: number
  readonly durationMs: number
  readonly basePort: number
  /** Where the run keeps its nodes' data, logs and the history. */
  readonly dir: string
  /** The acp bundle the nodes run (dist/acp.mjs). */
  readonly bundle: string
  readonly kinds: ReadonlyArray<FaultKind>
  /** Keep the run's directory even when it passes. */
  readonly keep: boolean
  readonly bounds: Bounds
  readonly say: (line: string) => void
}

export interface VortexResult {
  readonly violations: ReadonlyArray<Violation>
  readonly figures: Figures
  readonly faults: ReadonlyArray<string>
  /** Where the logs and the history are (removed when the run passed, unless kept). */
  readonly dir: string
  readonly kept: boolean
  /** Kinds asked for that this machine cannot inject, and why. */
  readonly skipped: ReadonlyArray<string>
}

const fakeTimeLibrary = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
const warmupMs = 4_000

type NodeConfigFile = (typeof NodeConfig)["Encoded"]

interface Member {
  readonly id: string
  readonly port: number
  readonly apiPort: number
  readonly agentPort: number
  readonly dataDir: string
  readonly configPath: string
  readonly logPath: string
  readonly clockPath: string
  child: ChildProcess | undefined
  state: "up" | "killed" | "paused"
  clockOffsetS: number
  filled: boolean
  mounted: boolean
}

/** The nodes' watchdog (`adapters/node/watchdog.ts`): as long as the config allows under the hypervisor's 4 s haFenceMs. */
export const vortexWatchdogMs = 3_700

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A wait that ends early when `stop` is called: the end of the run cuts every fault short. */
const stopper = () => {
  let stop: () => void = () => {}
  const stopped = new Promise<void>((resolve) => {
    stop = resolve
  })
  let isStopped = false
  return {
    stop: () => {
      isStopped = true
      stop()
    },
    get stopped() {
      return isStopped
    },
    wait: (ms: number) => Promise.race([sleep(ms), stopped]),
  }
}

const sh = (command: string, args: ReadonlyArray<string>) =>
  new Promise<{ status: number | null; output: string }>((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => {
      output += chunk
    })
    child.stderr.on("data", (chunk) => {
      output += chunk
    })
    child.on("error", (error) => resolve({ status: null, output: error.message }))
    child.on("close", (status) => resolve({ status, output }))
  })

/** What this machine cannot do of the kinds asked for, with the reason. */
const unavailable = (kinds: ReadonlyArray<FaultKind>): Map<FaultKind, string> => {
  const missing = new Map<FaultKind, string>()
  const root = process.getuid?.() === 0
  for (const kind of kinds) {
    if ((kind === "disk-full" || kind === "restart-full") && !root)
      missing.set(kind, "not root: a tmpfs per data directory needs mount")
    if (kind === "clock" && !existsSync(fakeTimeLibrary))
      missing.set(kind, `no ${fakeTimeLibrary} (Debian package faketime)`)
  }
  return missing
}

export const runVortex = async (options: VortexOptions): Promise<VortexResult> => {
  const say = options.say
  const missing = unavailable(options.kinds)
  const kinds = options.kinds.filter((kind) => !missing.has(kind))
  const skipped = [...missing].map(([kind, why]) => `${kind} (${why})`)
  const disks =
    options.kinds.some((kind) => kind === "disk-full" || kind === "restart-full") && !missing.has("disk-full")
  const clocks = kinds.includes("clock")
  const random = Prng.labelled(options.seed, "vortex-workload")
  const network = Prng.labelled(options.seed, "vortex-network")
  const ids = Array.from({ length: options.nodes }, (_, index) => `n${index + 1}`)
  const dir = options.dir
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(join(dir, "logs"), { recursive: true })

  const members: Array<Member> = ids.map((id, index) => ({
    id,
    port: options.basePort + 1 + index,
    apiPort: options.basePort + 101 + index,
    agentPort: options.basePort + 201 + index,
    dataDir: join(dir, id),
    configPath: join(dir, id, "config.json"),
    logPath: join(dir, "logs", `${id}.log`),
    clockPath: join(dir, `clock-${id}`),
    child: undefined,
    state: "up",
    clockOffsetS: 0,
    filled: false,
    mounted: false,
  }))
  const links = new Links(
    members.map((member) => ({ id: member.id, port: member.port, agentPort: member.agentPort })),
    options.basePort + 400,
    () => network.next() / 0x100000000,
  )

  // ---- the cluster's files: CA, certificates, keys, configs (each member's peers are proxies) ----
  const pki = join(dir, "pki")
  const fail = (error: { readonly message: string }) => new Error(error.message)
  await Effect.runPromise(Effect.mapError(ensureCa(pki, `vortex-${options.seed}`), fail))
  const admin = newApiKey("vortex-admin", "admin")
  const operator = newApiKey("vortex-operator", "operator")
  const internal = newApiKey("cluster-internal", "admin")
  writeFileSync(join(dir, "admin.key"), `${admin.key}\n`, { mode: 0o600 })
  const keyHex = randomBytes(32).toString("hex")
  for (const member of members) {
    mkdirSync(member.dataDir, { recursive: true })
    if (disks) {
      const mounted = await sh("mount", [
        "-t",
        "tmpfs",
        "-o",
        "size=24m",
        `acp-vortex-${member.id}`,
        member.dataDir,
      ])
      if (mounted.status !== 0) throw new Error(`mount tmpfs on ${member.dataDir}: ${mounted.output}`)
      member.mounted = true
    }
    await Effect.runPromise(
      Effect.mapError(issue(pki, member.id, { kind: "node", address: "127.0.0.1" }), fail),
    )
    mkdirSync(join(member.dataDir, "pki"), { recursive: true, mode: 0o700 })
    for (const file of ["ca.crt", `${member.id}.crt`, `${member.id}.key`])
      copyFileSync(join(pki, file), join(member.dataDir, "pki", file))
    writeFileSync(member.clockPath, "+0s\n")
    const config: NodeConfigFile = {
      id: member.id,
      cluster: (options.seed % 0xfffffffe) + 1,
      domain: "vortex",
      relay: false,
      address: "127.0.0.1",
      port: member.port,
      group: null,
      groupPort: options.basePort,
      apiPort: member.apiPort,
      dataDir: member.dataDir,
      keyHex,
      encrypt: false,
      keys: [
        { id: admin.id, record: admin.record },
        { id: operator.id, record: operator.record },
      ],
      mtu: 1400,
      synchronous: "FULL",
      // As an HA deployment runs: a node stalled longer than this is killed by its watchdog,
      // before the primary (after haFenceMs, 4 s) moves its systems.
      watchdogMs: vortexWatchdogMs,
      members: members.map((peer) => {
        const ports = peer.id === member.id ? undefined : links.ports(member.id, peer.id)
        return {
          id: peer.id,
          address: "127.0.0.1",
          port: ports?.udp ?? peer.port,
          agentPort: ports?.tcp ?? peer.agentPort,
          domain: "vortex",
          relay: false,
        }
      }),
      agent: {
        port: member.agentPort,
        certFile: join(member.dataDir, "pki", `${member.id}.crt`),
        keyFile: join(member.dataDir, "pki", `${member.id}.key`),
        caFile: join(member.dataDir, "pki", "ca.crt"),
        internalKey: internal.key,
        internalKeySalt: internal.record.salt,
      },
    }
    writeFileSync(member.configPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
  }

  // ---- processes ----
  const t0 = performance.now()
  const now = () => Math.round(performance.now() - t0)
  const processes: Array<ProcessEvent> = []
  let cleaningUp = false
  const start = (member: Member) => {
    const log = openSync(member.logPath, "a")
    writeSync(log, `${JSON.stringify({ vortex: "start", atMs: now() })}\n`)
    const env: NodeJS.ProcessEnv = { ...process.env }
    if (clocks) {
      env.LD_PRELOAD = fakeTimeLibrary
      env.FAKETIME_TIMESTAMP_FILE = member.clockPath
      env.FAKETIME_NO_CACHE = "1"
      env.FAKETIME_DONT_FAKE_MONOTONIC = "1"
    }
    const child = spawn(process.execPath, [options.bundle, "node", "run", "--config", member.configPath], {
      stdio: ["ignore", log, log],
      env,
    })
    member.child = child
    closeSync(log)
    member.state = "up"
    // A node that ends by itself is a finding; it is started again a second later, as systemd's
    // Restart=always would, so the run goes on.
    child.once("exit", (code, signalName) => {
      if (member.child !== child || member.state === "killed") return
      const lines = readFileSync(member.logPath, "utf8").trimEnd().split("\n")
      const last = lines.filter((line) => !line.startsWith("    at ")).at(-1) ?? ""
      processes.push({
        node: member.id,
        kind: "exited",
        atMs: now(),
        detail: `${signalName ?? `code ${code}`}: ${last.slice(0, 300)}`,
      })
      member.child = undefined
      member.state = "killed"
      if (cleaningUp) return
      setTimeout(() => {
        if (member.state === "killed" && !cleaningUp && !processBusy.has(member.id)) {
          start(member)
          processes.push({ node: member.id, kind: "restart", atMs: now() })
        }
      }, 1_000)
    })
  }
  const signal = (member: Member, name: NodeJS.Signals) => {
    try {
      member.child?.kill(name)
    } catch {
      // Gone already.
    }
  }
  const kill = async (member: Member) => {
    const child = member.child
    if (child === undefined) return
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve()
      else child.once("exit", () => resolve())
    })
    const paused = member.state === "paused"
    // Said before the signal: the exit that follows is the harness's, not the node's own.
    member.state = "killed"
    signal(member, "SIGKILL")
    if (paused) signal(member, "SIGCONT")
    await exited
    member.child = undefined
  }

  // ---- clients ----
  const request = async (
    member: Member,
    method: string,
    path: string,
    options: { body?: unknown; key?: string; timeoutMs?: number } = {},
  ): Promise<{ status: number; body: unknown } | { status: "unreachable" | "timeout"; detail: string }> => {
    // node:http, not fetch: fetch normalises the path (dot segments), and the workload sends
    // spellings of paths as an attacker would.
    return new Promise((resolve) => {
      const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
      const outgoing = httpRequest(
        {
          host: "127.0.0.1",
          port: member.apiPort,
          method,
          path,
          headers: {
            authorization: `Bearer ${options.key ?? admin.key}`,
            ...(payload === undefined
              ? {}
              : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
          },
          timeout: options.timeoutMs ?? 3_000,
        },
        (response) => {
          let text = ""
          response.setEncoding("utf8")
          response.on("data", (chunk) => {
            text += chunk
          })
          response.on("error", (error) => resolve({ status: "timeout", detail: error.message }))
          response.on("end", () => {
            let body: unknown = text
            try {
              body = text === "" ? null : JSON.parse(text)
            } catch {
              // Not JSON: kept as text.
            }
            resolve({ status: response.statusCode ?? 0, body })
          })
        },
      )
      outgoing.on("timeout", () => outgoing.destroy(new Error("timed out")))
      outgoing.on("error", (error: NodeJS.ErrnoException) =>
        // Refused before anything was sent: definitely not applied. Anything else may have been.
        resolve(
          error.code === "ECONNREFUSED"
            ? { status: "unreachable", detail: "connection refused" }
            : { status: "timeout", detail: error.message },
        ),
      )
      outgoing.end(payload)
    })
  }

  const writes: Array<WriteRecord> = []
  const decisions: Array<DecisionRecord> = []
  const reads: Array<ReadRecord> = []
  const statuses: Array<StatusSample> = []
  const domains: Array<DomainSample> = []
  const faultRecords: Array<FaultRecord> = []
  const forbidden: Array<{ key: string; path: string; status: number }> = []
  const haSystems: Array<string> = []
  /** System operations (tasks) as asked and answered; recorded, judged through the drivers' domains. */
  const operations: Array<{
    node: string
    system: string
    operation: string
    startMs: number
    endMs: number
    status: number | string
  }> = []
  let nextWrite = 0

  const outcomeOf = (status: number | "unreachable" | "timeout"): Outcome =>
    status === "unreachable"
      ? "refused"
      : status === "timeout" || status >= 500
        ? // 507: the store refused the commit; nothing written. Other 5xx: unknown.
          status === 507
          ? "refused"
          : "unknown"
        : status >= 400
          ? "refused"
          : "ok"

  const project = (id: string, token: string) => ({
    name: id,
    description: token,
    quota: { cpus: 1, memoryMiB: 1, storageBytes: 0 },
  })

  const putObject = async (member: Member, id: string, role: WriteRecord["role"]) => {
    const token = `w${nextWrite++}`
    const startMs = now()
    const answer = await request(member, "PUT", `/v1/objects/project/${id}`, {
      body: project(id, token),
      key: role === "admin" ? admin.key : role === "operator" ? operator.key : (readOnly?.key ?? ""),
    })
    const body = ("body" in answer ? answer.body : null) as {
      version?: WriteRecord["version"]
      reason?: string
      message?: string
    } | null
    writes.push({
      id: writes.length,
      node: member.id,
      via: "api",
      role,
      op: "put",
      key: `project/${id}`,
      token,
      startMs,
      endMs: now(),
      outcome: outcomeOf(answer.status),
      ...(typeof answer.status === "number" ? { status: answer.status } : {}),
      ...(answer.status === 200 && body?.version !== undefined ? { version: body.version } : {}),
      ...(answer.status !== 200
        ? {
            detail: typeof answer.status === "number" ? (body?.reason ?? body?.message ?? "") : answer.detail,
          }
        : {}),
    })
  }

  const putByCli = async (member: Member, id: string) => {
    const token = `w${nextWrite++}`
    const startMs = now()
    const ran = await sh(process.execPath, [
      options.bundle,
      "object",
      "put",
      "project",
      id,
      "--dir",
      dir,
      "--node",
      member.id,
      "--spec",
      JSON.stringify(project(id, token)),
    ])
    // The CLI prints no version; a put it reports done is acknowledged, a refusal names its reason.
    const refused =
      ran.status !== 0 && /\b(refused|disk|invalid|forbidden|not valid|507|connect)/i.test(ran.output)
    writes.push({
      id: writes.length,
      node: member.id,
      via: "cli",
      role: "admin",
      op: "put",
      key: `project/${id}`,
      token,
      startMs,
      endMs: now(),
      outcome: ran.status === 0 ? "ok" : refused ? "refused" : "unknown",
      ...(ran.status === 0 ? {} : { detail: ran.output.trim().slice(0, 200) }),
    })
  }

  const deleteObject = async (member: Member, id: string) => {
    const startMs = now()
    const answer = await request(member, "DELETE", `/v1/objects/project/${id}`)
    // A delete of what this node does not hold (404) writes nothing.
    writes.push({
      id: writes.length,
      node: member.id,
      via: "api",
      role: "admin",
      op: "delete",
      key: `project/${id}`,
      startMs,
      endMs: now(),
      outcome: answer.status === 404 ? "refused" : outcomeOf(answer.status),
      ...(typeof answer.status === "number" ? { status: answer.status } : {}),
    })
  }

  const readObject = async (member: Member, id: string) => {
    const startMs = now()
    const answer = await request(member, "GET", `/v1/objects/project/${id}`)
    if (answer.status === 200)
      reads.push({
        node: member.id,
        key: `project/${id}`,
        startMs,
        endMs: now(),
        token: (answer.body as { spec: { description: string } }).spec.description,
      })
    else if (answer.status === 404)
      reads.push({ node: member.id, key: `project/${id}`, startMs, endMs: now(), token: null })
  }

  /** An operator key on admin objects, by spellings a router may take for the same path. */
  const spellings = [
    (id: string) => `/v1/objects/api-key/${id}`,
    (id: string) => `/v1/objects/api%2Dkey/${id}`,
    (id: string) => `/v1//objects/api-key/${id}`,
    (id: string) => `/v1/objects/./api-key/${id}`,
    (id: string) => `/v1/objects/API-KEY/${id}`,
    (id: string) => `/v1/objects/project/../api-key/${id}`,
  ]
  const escalate = async (member: Member) => {
    const minted = newApiKey("escalated", "admin")
    const path = random.pick(spellings)(minted.id)
    const answer = await request(member, "PUT", path, { body: minted.record, key: operator.key })
    if (typeof answer.status === "number")
      forbidden.push({ key: `api-key/${minted.id}`, path, status: answer.status })
  }

  /** A read-only key, made through the CLI as an operator would (`acp key create`); it may read, never write. */
  let readOnly: { readonly key: string } | undefined
  const makeReadOnlyKey = async () => {
    const made = await sh(process.execPath, [
      options.bundle,
      "key",
      "create",
      "--name",
      "vortex-reader",
      "--role",
      "read-only",
      "--dir",
      dir,
      "--node",
      members[0]!.id,
    ])
    const key = /^(acp_\S+)$/m.exec(made.output)?.[1]
    if (made.status !== 0 || key === undefined) throw new Error(`acp key create failed: ${made.output}`)
    readOnly = { key }
  }

  const systemSpec = (ha: boolean) => ({
    cpus: 1,
    memoryMiB: 64,
    ha,
    desired: "running",
    placement: { affinity: [], antiAffinity: [] },
  })

  const live = () => members.filter((member) => member.state !== "killed")
  let running = true

  const client = async () => {
    while (running) {
      const member = random.pick(live().length > 0 ? live() : members)
      const id = `p-${random.below(12)}`
      const roll = random.below(100)
      if (roll < 45) await putObject(member, id, random.chance(300) ? "operator" : "admin")
      else if (roll < 48) await putByCli(member, id)
      else if (roll < 56) await deleteObject(member, id)
      else if (roll < 90) await readObject(member, id)
      else if (roll < 93) await escalate(member)
      else if (roll < 95) await putObject(member, id, "read-only")
      else if (haSystems.length > 0) {
        const system = random.pick(haSystems)
        const startMs = now()
        const answer = await request(member, "POST", `/v1/systems/${system}/reboot`, { body: {} })
        operations.push({
          node: member.id,
          system,
          operation: "reboot",
          startMs,
          endMs: now(),
          status: answer.status,
        })
      }
      await sleep(random.between(20, 120))
    }
  }

  /**
   * A client of the decision log, with draws of its own (the other clients' stay as they were):
   * grants and releases of a small VLAN pool and placements, asked of the primary the last
   * sample named (as a client follows a refusal that names it), else of any node.
   */
  const decisionDraws = Prng.labelled(options.seed, "vortex-decisions")
  const decider = async () => {
    while (running) {
      const primary = latestPrimary()
      const member =
        primary !== undefined && primary.state !== "killed" && decisionDraws.chance(900)
          ? primary
          : decisionDraws.pick(live().length > 0 ? live() : members)
      const roll = decisionDraws.below(10)
      const holder = `p${decisionDraws.below(6)}`
      const command: DecisionCommand =
        roll < 5
          ? { _tag: "Grant", pool: "vlan", holder, range: { from: 100, to: 103 } }
          : roll < 8
            ? { _tag: "Release", pool: "vlan", holder, value: 100 + decisionDraws.below(4) }
            : { _tag: "Place", system: `s${decisionDraws.below(4)}`, node: decisionDraws.pick(members).id }
      const invokedMs = now()
      const answer = await request(member, "POST", "/v1/decisions", { body: command, timeoutMs: 6_000 })
      const returnedMs = now()
      const body = ("body" in answer ? answer.body : null) as { reason?: string } | null
      // As the writes' outcomes, except that a 409 "not committed in time" and any 5xx say
      // nothing of the effect: the decision may still be in the log.
      const outcome =
        (answer.status === 409 && body?.reason === "not-committed-in-time") ||
        (typeof answer.status === "number" && answer.status >= 500)
          ? "unknown"
          : outcomeOf(answer.status)
      if (outcome === "ok")
        decisions.push({ node: member.id, invokedMs, returnedMs, command, answer: body as DecisionAnswer })
      else if (outcome === "unknown") decisions.push({ node: member.id, invokedMs, command })
      await sleep(decisionDraws.between(50, 250))
    }
  }

  // ---- samplers: each node's status and its driver's domains ----
  const byDomain = new Map<string, string>()
  const sampler = async (member: Member) => {
    while (running || sampling) {
      if (member.state !== "killed") {
        const sentMs = now()
        const [status, listed] = await Promise.all([
          request(member, "GET", "/v1/status", { timeoutMs: 1_500 }),
          request(member, "GET", "/v1/host/domains", { timeoutMs: 1_500 }),
        ])
        const recvMs = now()
        if (status.status === 200) {
          const body = status.body as {
            term: number
            isPrimary: boolean
            primary: string | null
            fenced: boolean
            members: ReadonlyArray<{ id: string; state: string }>
          }
          statuses.push({
            node: member.id,
            sentMs,
            recvMs,
            term: body.term,
            isPrimary: body.isPrimary,
            primary: body.primary,
            fenced: body.fenced,
            alive: body.members
              .filter((peer) => peer.state === "alive" && peer.id !== member.id)
              .map((peer) => peer.id),
          })
        }
        if (listed.status === 200)
          domains.push({
            node: member.id,
            sentMs,
            recvMs,
            running: (listed.body as ReadonlyArray<{ name: string; state: string }>)
              .filter((domain) => domain.state === "running" && byDomain.has(domain.name))
              .map((domain) => byDomain.get(domain.name)!),
          })
      }
      await sleep(200)
    }
  }
  let sampling = true
  const latestPrimary = (): Member | undefined => {
    const latest = new Map<string, StatusSample>()
    for (const sample of statuses) latest.set(sample.node, sample)
    return members.find((member) => member.state === "up" && latest.get(member.id)?.isPrimary === true)
  }

  // ---- faults ----
  interface Active {
    readonly fault: Fault
    readonly nodes: ReadonlyArray<string>
  }
  const activeNetwork = new Set<Active>()
  const applyNetwork = () => {
    for (const from of ids)
      for (const to of ids) {
        if (from === to) continue
        let faults: LinkFaults = cleanLink
        for (const active of activeNetwork) {
          const fault = active.fault
          if (fault.kind === "partition") {
            const side = new Set(active.nodes)
            if (side.has(from) !== side.has(to)) faults = { ...faults, blocked: true }
          } else if (fault.kind === "one-way") {
            // The first node is cut off one way: the second entry says which way.
            const [node, direction] = active.nodes
            if ((direction === "out" && from === node) || (direction === "in" && to === node))
              faults = { ...faults, blocked: true }
          } else if (fault.kind === "lossy" && fault.loss !== undefined)
            faults = { ...faults, ...fault.loss, blocked: faults.blocked }
        }
        links.set(from, to, faults)
      }
  }
  const targetOf = (fault: Fault, candidates: ReadonlyArray<Member>): Member | undefined => {
    if (candidates.length === 0) return undefined
    if (fault.target._tag === "primary") {
      const primary = latestPrimary()
      if (primary !== undefined && candidates.includes(primary)) return primary
    }
    return candidates[(fault.target._tag === "any" ? fault.target.pick : 0) % candidates.length]
  }
  const fill = (member: Member) => {
    // Until the tmpfs refuses (ENOSPC): 1 MiB at a time.
    const path = join(member.dataDir, "filler")
    const chunk = Buffer.alloc(1024 * 1024)
    const fd = openSync(path, "a")
    try {
      for (let index = 0; index < 64; index++) writeSync(fd, chunk)
    } catch {
      // Full.
    } finally {
      closeSync(fd)
    }
    member.filled = true
  }
  const free = (member: Member) => {
    if (!member.filled) return
    try {
      unlinkSync(join(member.dataDir, "filler"))
    } catch {
      // Already gone.
    }
    member.filled = false
  }
  const processBusy = new Set<string>()
  const faultsEnd = stopper()
  const runFault = async (fault: Fault) => {
    const startMs = now()
    const record = (detail: string, endMs: number) =>
      faultRecords.push({ kind: fault.kind, startMs, endMs, detail })
    const quiet = members.filter((member) => member.state === "up" && !processBusy.has(member.id))
    switch (fault.kind) {
      case "partition": {
        const side = (fault.side ?? []).map((index) => ids[index]!)
        const active = { fault, nodes: side }
        activeNetwork.add(active)
        applyNetwork()
        await faultsEnd.wait(fault.durationMs)
        activeNetwork.delete(active)
        applyNetwork()
        record(`${side.join(",")} | ${ids.filter((id) => !side.includes(id)).join(",")}`, now())
        return
      }
      case "one-way": {
        const target = targetOf(fault, members)!
        const direction = fault.target._tag === "primary" || fault.target.pick % 2 === 0 ? "out" : "in"
        const active = { fault, nodes: [target.id, direction] }
        activeNetwork.add(active)
        applyNetwork()
        await faultsEnd.wait(fault.durationMs)
        activeNetwork.delete(active)
        applyNetwork()
        record(`${target.id} ${direction === "out" ? "cannot send" : "cannot hear"}`, now())
        return
      }
      case "lossy": {
        const active = { fault, nodes: [] }
        activeNetwork.add(active)
        applyNetwork()
        await faultsEnd.wait(fault.durationMs)
        activeNetwork.delete(active)
        applyNetwork()
        record(describeFault(fault), now())
        return
      }
      case "replay": {
        const target = targetOf(fault, members)!
        const until = now() + fault.durationMs
        while (now() < until && !faultsEnd.stopped) {
          await links.replay(target.id)
          await faultsEnd.wait(300)
        }
        record(`${target.id}'s datagrams`, now())
        return
      }
      case "clock": {
        await faultsEnd.wait(clockLeadMs)
        if (faultsEnd.stopped) return
        const target = targetOf(fault, members)!
        const stepMs = now()
        target.clockOffsetS += fault.stepS ?? 0
        writeFileSync(target.clockPath, `${target.clockOffsetS >= 0 ? "+" : ""}${target.clockOffsetS}s\n`)
        await faultsEnd.wait(clockWatchMs)
        faultRecords.push({
          kind: "clock",
          startMs: stepMs,
          endMs: now(),
          detail: `${target.id} ${fault.stepS! > 0 ? "+" : ""}${fault.stepS} s (now ${target.clockOffsetS} s)`,
        })
        return
      }
      case "kill":
      case "pause":
      case "disk-full":
      case "restart-full": {
        const target = targetOf(fault, quiet)
        if (target === undefined) return
        processBusy.add(target.id)
        const wasPrimary = latestPrimary() === target
        if (fault.kind === "kill" || fault.kind === "restart-full") {
          await kill(target)
          processes.push({ node: target.id, kind: "kill", atMs: now(), wasPrimary })
          if (fault.kind === "restart-full") {
            fill(target)
            start(target)
            processes.push({ node: target.id, kind: "restart", atMs: now() })
          }
        } else if (fault.kind === "pause") {
          signal(target, "SIGSTOP")
          target.state = "paused"
          processes.push({ node: target.id, kind: "pause", atMs: now(), wasPrimary })
        } else fill(target)
        const until = now() + fault.durationMs
        if ((fault.kind === "kill" || fault.kind === "pause") && fault.replayVictim === true)
          while (now() < until && !faultsEnd.stopped) {
            await links.replay(target.id)
            await faultsEnd.wait(300)
          }
        await faultsEnd.wait(Math.max(0, until - now()))
        if (fault.kind === "kill") {
          start(target)
          processes.push({ node: target.id, kind: "restart", atMs: now() })
        } else if (fault.kind === "pause") {
          if (target.state === "killed") {
            // Its watchdog killed it during the pause: it comes back as a supervisor would start it.
            start(target)
            processes.push({ node: target.id, kind: "restart", atMs: now() })
          } else {
            signal(target, "SIGCONT")
            target.state = "up"
            processes.push({ node: target.id, kind: "resume", atMs: now() })
          }
        } else free(target)
        processBusy.delete(target.id)
        record(
          `${target.id}${wasPrimary ? " (primary)" : ""}${fault.replayVictim === true ? ", its datagrams replayed while silent" : ""}`,
          now(),
        )
        return
      }
    }
  }

  // ---- the run ----
  const schedule = drawSchedule({
    seed: options.seed,
    nodes: options.nodes,
    fromMs: warmupMs,
    untilMs: options.durationMs,
    kinds,
  })
  let convergedMs: number | null = null
  let faultsStopMs = 0
  const final: Record<string, Record<string, FinalObject>> = {}
  const cleanup = async () => {
    cleaningUp = true
    running = false
    sampling = false
    for (const member of members) await kill(member)
    links.close()
    for (const member of members) if (member.mounted) await sh("umount", ["-l", member.dataDir])
  }
  try {
    await links.start()
    for (const member of members) start(member)
    say(`${options.nodes} nodes up in ${dir}; waiting for a primary`)
    const upBy = now() + 60_000
    for (;;) {
      const answers = await Promise.all(members.map((member) => request(member, "GET", "/v1/status")))
      const primaries = new Set(
        answers.map((answer) =>
          answer.status === 200 ? (answer.body as { primary: string | null }).primary : null,
        ),
      )
      if (answers.every((answer) => answer.status === 200) && primaries.size === 1 && !primaries.has(null))
        break
      if (now() > upBy) throw new Error(`the cluster did not elect a primary within 60 s; see ${dir}/logs`)
      await sleep(250)
    }
    writeFileSync(
      join(dir, "cluster.json"),
      `${JSON.stringify({
        dir,
        cluster: (options.seed % 0xfffffffe) + 1,
        nodes: members.map((member) => ({
          id: member.id,
          pid: member.child?.pid ?? 0,
          apiPort: member.apiPort,
          configPath: member.configPath,
          logPath: member.logPath,
        })),
      })}\n`,
    )
    await makeReadOnlyKey()
    for (let index = 0; index < Math.min(3, options.nodes); index++) {
      const id = `ha-${index + 1}`
      byDomain.set(domainNameOf(id), id)
      const created = await request(members[index]!, "POST", `/v1/systems/${id}`, {
        body: { spec: systemSpec(true) },
        timeoutMs: 10_000,
      })
      if (created.status === 200) haSystems.push(id)
      else say(`could not create ${id}: ${JSON.stringify("body" in created ? created.body : created.detail)}`)
    }
    const startedAt = now()
    say(
      `seed ${options.seed}: ${schedule.length} faults over ${options.durationMs / 1000} s (${kinds.join(", ")})`,
    )
    const samplers = members.map((member) => sampler(member))
    const clients = [...Array.from({ length: 3 }, () => client()), decider()]
    const faultRuns = schedule.map((fault) =>
      faultsEnd.wait(Math.max(0, fault.atMs - (now() - startedAt))).then(() => {
        if (faultsEnd.stopped) return
        say(`  ${describeFault(fault)}`)
        return runFault(fault)
      }),
    )
    await sleep(Math.max(0, options.durationMs - (now() - startedAt)))
    faultsEnd.stop()
    await Promise.all(faultRuns)
    running = false
    await Promise.all(clients)
    // Everything healed: links clean, every node running, every disk with room.
    links.heal()
    for (const member of members) {
      free(member)
      if (member.state === "paused") {
        signal(member, "SIGCONT")
        member.state = "up"
        processes.push({ node: member.id, kind: "resume", atMs: now() })
      }
      if (member.state === "killed") {
        start(member)
        processes.push({ node: member.id, kind: "restart", atMs: now() })
      }
    }
    faultsStopMs = now()
    say(`faults stopped at ${(faultsStopMs / 1000).toFixed(1)} s; waiting for the nodes to converge`)
    const kindsToCompare = ["project", "api-key", "system"]
    while (now() - faultsStopMs < options.bounds.convergenceMs) {
      const snapshots = await Promise.all(
        members.map(async (member) => {
          const objects: Record<string, FinalObject> = {}
          for (const kind of kindsToCompare) {
            const listed = await request(member, "GET", `/v1/objects/${kind}`)
            if (listed.status !== 200) return undefined
            for (const object of listed.body as ReadonlyArray<{
              id: string
              spec: { description?: string }
              version: FinalObject["version"]
            }>)
              objects[`${kind}/${object.id}`] = {
                token: kind === "project" ? (object.spec.description ?? null) : null,
                version: object.version,
              }
          }
          return objects
        }),
      )
      const [first, ...others] = snapshots
      const same = (left: Record<string, FinalObject>, right: Record<string, FinalObject>) => {
        const keys = Object.keys(left)
        return (
          keys.length === Object.keys(right).length &&
          keys.every(
            (key) =>
              right[key] !== undefined &&
              JSON.stringify(right[key]!.version) === JSON.stringify(left[key]!.version),
          )
        )
      }
      if (first !== undefined && others.every((other) => other !== undefined && same(first, other))) {
        convergedMs = now()
        snapshots.forEach((snapshot, index) => {
          final[members[index]!.id] = snapshot!
        })
        break
      }
      await sleep(500)
    }
    // Every HA system running on exactly one node, as the drivers say, within the failover bound
    // — by samples taken since the faults stopped, as the checker judges (seed 4016: a sample of
    // the primary from just before its last kill said it still ran ha-2, and the wait ended).
    const haBy = now() + options.bounds.failoverMs
    while (now() < haBy) {
      const last = members.map((member) =>
        domains.filter((sample) => sample.node === member.id && sample.sentMs >= faultsStopMs).at(-1),
      )
      if (
        haSystems.every(
          (system) => last.filter((sample) => sample?.running.includes(system) === true).length === 1,
        )
      )
        break
      await sleep(500)
    }
    await sleep(600)
    sampling = false
    await Promise.all(samplers)
  } finally {
    await cleanup()
  }

  const history: History = {
    seed: options.seed,
    nodes: ids,
    writes,
    reads,
    statuses,
    domains,
    processes,
    faults: faultRecords,
    haSystems,
    decisions,
    forbidden,
    faultsStopMs,
    convergedMs,
    final,
  }
  const checked = checkHistory(history, options.bounds)
  const faults = schedule.map(describeFault)
  writeFileSync(
    join(dir, "history.json"),
    `${JSON.stringify({ options: { ...options, say: undefined }, schedule, ...history, operations, links: links.counters })}\n`,
  )
  writeFileSync(join(dir, "result.json"), `${JSON.stringify(checked, null, 2)}\n`)
  const kept = options.keep || checked.violations.length > 0
  if (!kept) rmSync(dir, { recursive: true, force: true })
  return { ...checked, faults, dir, kept, skipped }
}

export const allFaultKinds = faultKinds
export { defaultBounds }
