/**
 * The fault harness's checkers: pure functions of the history a run recorded — every client
 * request with its real start and end, what each node said of itself (status, its driver's
 * domains) when it was asked, the process faults, and every node's objects after the heal. They
 * judge what clients and operators can see, as Jepsen's checkers do, sharing the simulator's
 * order of versions (`sim/checkers/model.ts`) and its linearizability check of the decision
 * log's allocations (`core/oracle/linearizability.ts`).
 *
 * Evidence, not guesses: a sample holds at some instant between its request and its answer, so
 * a node held a lease (or ran a domain) throughout from the answer of one sample to the request
 * of the next only when both say so in one unbroken run; two nodes overlap only where such
 * stretches do.
 */
import type { DecisionAnswer, DecisionCommand } from "../../core/decision/state.ts"
import { allocationModelWithOthers } from "../../core/oracle/decisions.ts"
import { checkLinearizable, explainNoOrder } from "../../core/oracle/linearizability.ts"
import { later, show, type Version } from "../../core/oracle/versions.ts"
import { clockLeadMs, type FaultKind } from "./schedule.ts"

export type Outcome = "ok" | "refused" | "unknown"

export interface WriteRecord {
  readonly id: number
  readonly node: string
  readonly via: "api" | "cli"
  readonly role: "admin" | "operator" | "read-only"
  readonly op: "put" | "delete"
  /** kind/id */
  readonly key: string
  /** The value's unique token (puts). */
  readonly token?: string
  readonly startMs: number
  readonly endMs: number
  readonly outcome: Outcome
  readonly status?: number
  readonly version?: Version
  readonly detail?: string
}

export interface ReadRecord {
  readonly node: string
  readonly key: string
  readonly startMs: number
  readonly endMs: number
  /** The token read, or null when the node holds no such object. */
  readonly token: string | null
}

export interface StatusSample {
  readonly node: string
  readonly sentMs: number
  readonly recvMs: number
  readonly term: number
  readonly isPrimary: boolean
  readonly primary: string | null
  readonly fenced: boolean
  /** The members the node hears from ("alive"), as its failure detector says. */
  readonly alive?: ReadonlyArray<string>
}

export interface DomainSample {
  readonly node: string
  readonly sentMs: number
  readonly recvMs: number
  /** The systems whose domains the node's driver reports running. */
  readonly running: ReadonlyArray<string>
}

export interface ProcessEvent {
  readonly node: string
  /**
   * "exited": the process ended by itself (the harness restarts it a second later, as systemd
   * would, or when a pause it ended in is over); whether its watchdog killed it for a pause is
   * the checkers' to say (`killedForItsPause`).
   */
  readonly kind: "kill" | "restart" | "pause" | "resume" | "exited"
  readonly atMs: number
  /** Whether the node was primary (by its last answered status) when it was killed or paused. */
  readonly wasPrimary?: boolean
  /** exited: its exit code or signal, and the last line of its log. */
  readonly detail?: string
}

export interface FaultRecord {
  readonly kind: FaultKind
  readonly startMs: number
  readonly endMs: number
  readonly detail: string
}

/**
 * A proposal to the decision log as its client saw it: when it asked, and when and how it was
 * answered — absent when the answer never came or said nothing of the outcome (a timeout, a 5xx,
 * "not committed in time"): it may have taken effect, or not. Proposals refused before the log
 * (not the primary, connection refused) took no effect and are not recorded.
 */
export interface DecisionRecord {
  readonly node: string
  readonly invokedMs: number
  readonly returnedMs?: number
  readonly command: DecisionCommand
  readonly answer?: DecisionAnswer
}

export interface FinalObject {
  readonly token: string | null
  readonly version: Version
}

export interface History {
  readonly seed: number
  readonly nodes: ReadonlyArray<string>
  readonly writes: ReadonlyArray<WriteRecord>
  readonly reads: ReadonlyArray<ReadRecord>
  readonly statuses: ReadonlyArray<StatusSample>
  readonly domains: ReadonlyArray<DomainSample>
  readonly processes: ReadonlyArray<ProcessEvent>
  readonly faults: ReadonlyArray<FaultRecord>
  /** The HA systems the workload created (acknowledged), which must run somewhere at the end. */
  readonly haSystems: ReadonlyArray<string>
  /** The decision log's proposals, as the clients saw them. */
  readonly decisions: ReadonlyArray<DecisionRecord>
  /** Attempts of a non-admin key to write api-key objects: kind/id of each. */
  readonly forbidden: ReadonlyArray<{ readonly key: string; readonly path: string; readonly status: number }>
  /** When the faults stopped (everything healed, restarted, resumed, freed). */
  readonly faultsStopMs: number
  /** When every node held the same objects afterwards, or null if they never did within the bound. */
  readonly convergedMs: number | null
  /** Every node's objects of the workload's kinds after convergence: node → kind/id → object. */
  readonly final: Readonly<Record<string, Readonly<Record<string, FinalObject>>>>
}

export interface Bounds {
  /** From the kill of a node to its HA systems running again, when nothing else is faulty. */
  readonly failoverMs: number
  /** From the loss of the primary to a new one, when nothing else is faulty. */
  readonly electionMs: number
  /** From the end of the faults to every node holding the same objects. */
  readonly convergenceMs: number
  /** How long a silent node (killed, paused) may still be heard "alive" by others. */
  readonly silenceMs: number
}

/** `silenceMs`: the failure detector's 3 s to "dead" (core/cdb/node.ts), with 2 s to spare. */
export const defaultBounds: Bounds = {
  failoverMs: 30_000,
  electionMs: 10_000,
  convergenceMs: 30_000,
  silenceMs: 5_000,
}

export interface Violation {
  readonly check: string
  readonly message: string
}

export interface Figures {
  readonly writes: Readonly<Record<Outcome, number>>
  readonly faults: Readonly<Partial<Record<FaultKind, number>>>
  /** HA systems of a killed node: how long until they ran again (ms), per system and kill. */
  readonly failovers: ReadonlyArray<{ readonly system: string; readonly node: string; readonly ms: number }>
  /** Primaries lost (killed or paused): how long until another node was primary (ms). */
  readonly elections: ReadonlyArray<{ readonly node: string; readonly ms: number }>
  readonly convergenceMs: number | null
  /** The decision log's proposals: answered, without a known outcome, and what the linearizability check said. */
  readonly decisions: {
    readonly answered: number
    readonly unknown: number
    readonly verdict: "Linearizable" | "NotLinearizable" | "Inconclusive"
  }
}

interface Stretch {
  readonly node: string
  readonly fromMs: number
  readonly toMs: number
}

/**
 * Per node, the unbroken runs of samples for which `holds` is true (and `same` agrees), each as
 * the stretch it proves: from the first one's answer to the last one's request.
 */
const stretches = <S extends { readonly node: string; readonly sentMs: number; readonly recvMs: number }>(
  samples: ReadonlyArray<S>,
  holds: (sample: S) => boolean,
  same: (left: S, right: S) => boolean = () => true,
): Array<Stretch> => {
  const byNode = new Map<string, Array<S>>()
  for (const sample of samples) {
    const list = byNode.get(sample.node) ?? []
    list.push(sample)
    byNode.set(sample.node, list)
  }
  const result: Array<Stretch> = []
  for (const [node, list] of byNode) {
    list.sort((left, right) => left.sentMs - right.sentMs)
    let first: S | undefined
    let last: S | undefined
    const close = () => {
      if (first !== undefined && last !== undefined && last !== first && first.recvMs < last.sentMs)
        result.push({ node, fromMs: first.recvMs, toMs: last.sentMs })
      first = undefined
      last = undefined
    }
    for (const sample of list) {
      if (!holds(sample) || (last !== undefined && !same(last, sample))) close()
      if (!holds(sample)) continue
      first ??= sample
      last = sample
    }
    close()
  }
  return result
}

const overlapping = (left: Stretch, right: Stretch) =>
  left.node !== right.node && left.fromMs < right.toMs && right.fromMs < left.toMs

const at = (ms: number) => `${(ms / 1000).toFixed(2)}s`

/** Acknowledged writes everywhere, nothing refused anywhere. */
const checkWrites = (history: History, violations: Array<Violation>) => {
  const refused = new Map<string, WriteRecord>()
  const written = new Map<string, WriteRecord>()
  // A read-only key's write must never be visible, whatever its answer was (a timeout included).
  for (const write of history.writes)
    if (write.token !== undefined)
      (write.outcome === "refused" || write.role === "read-only" ? refused : written).set(write.token, write)
  const seen = (where: string, key: string, token: string | null) => {
    if (token === null) return
    const write = refused.get(token)
    if (write !== undefined)
      violations.push({
        check: "refused-visible",
        message: `${where} shows ${key} = ${token}, a write ${write.node} refused (${write.status ?? "?"} ${write.detail ?? ""})`,
      })
    else if (!written.has(token))
      violations.push({
        check: "unknown-value",
        message: `${where} shows ${key} = ${token}, which no client wrote`,
      })
  }
  for (const read of history.reads)
    seen(`a read on ${read.node} at ${at(read.startMs)}`, read.key, read.token)
  for (const [node, objects] of Object.entries(history.final))
    for (const [key, object] of Object.entries(objects)) seen(`${node} after the heal`, key, object.token)

  if (history.convergedMs === null) return
  const keys = new Set(history.writes.filter((write) => write.op === "put").map((write) => write.key))
  for (const key of keys) {
    const writes = history.writes.filter((write) => write.key === key)
    let newest: WriteRecord | undefined
    for (const write of writes)
      if (
        write.op === "put" &&
        write.outcome === "ok" &&
        write.role !== "read-only" &&
        write.version !== undefined &&
        (newest?.version === undefined || later(write.version, newest.version) > 0)
      )
        newest = write
    const deletes = writes.filter((write) => write.op === "delete" && write.outcome !== "refused")
    for (const [node, objects] of Object.entries(history.final)) {
      const held = objects[key]
      if (held === undefined) {
        // Deleted: only by a delete that was not refused. (A delete's version is not answered,
        // so whether the delete is later than the newest put is not judged here.)
        if (newest !== undefined && deletes.length === 0)
          violations.push({
            check: "acknowledged-lost",
            message: `${node} holds no ${key} after the heal; ${newest.node} acknowledged ${newest.token} as ${show(newest.version)} and no delete of it was let through`,
          })
        continue
      }
      if (newest?.version !== undefined && later(held.version, newest.version) < 0)
        violations.push({
          check: "acknowledged-lost",
          message: `${node} holds ${key} as ${show(held.version)} (${held.token}) after the heal, older than ${newest.token} acknowledged by ${newest.node} as ${show(newest.version)}`,
        })
      const source = history.writes.find((write) => write.token === held.token)
      if (
        source?.outcome === "ok" &&
        source.version !== undefined &&
        later(source.version, held.version) !== 0
      )
        violations.push({
          check: "acknowledged-version",
          message: `${node} holds ${key} = ${held.token} as ${show(held.version)}, acknowledged as ${show(source.version)}`,
        })
    }
  }
  const [first, ...others] = Object.entries(history.final)
  if (first !== undefined)
    for (const [node, objects] of others)
      for (const key of new Set([...Object.keys(first[1]), ...Object.keys(objects)])) {
        const left = first[1][key]
        const right = objects[key]
        if (left?.token !== right?.token || (left && right && later(left.version, right.version) !== 0))
          violations.push({
            check: "diverged",
            message: `${first[0]} holds ${key} as ${show(left?.version)}, ${node} as ${show(right?.version)}`,
          })
      }
}

/** One primary per term, and never two leases at one instant. */
const checkPrimaries = (history: History, violations: Array<Violation>) => {
  const claimed = new Map<number, string>()
  const named = new Map<number, { primary: string; by: string }>()
  for (const sample of history.statuses) {
    if (sample.isPrimary) {
      const holder = claimed.get(sample.term)
      if (holder !== undefined && holder !== sample.node)
        violations.push({
          check: "two-primaries-in-a-term",
          message: `${holder} and ${sample.node} both said they were primary in term ${sample.term}`,
        })
      claimed.set(sample.term, holder ?? sample.node)
    }
    if (sample.primary !== null) {
      const earlier = named.get(sample.term)
      if (earlier !== undefined && earlier.primary !== sample.primary)
        violations.push({
          check: "two-primaries-in-a-term",
          message: `in term ${sample.term} ${earlier.by} named ${earlier.primary} primary, ${sample.node} named ${sample.primary}`,
        })
      if (earlier === undefined) named.set(sample.term, { primary: sample.primary, by: sample.node })
    }
  }
  const leases = stretches(
    history.statuses,
    (sample) => sample.isPrimary,
    (left, right) => left.term === right.term,
  )
  for (const [index, lease] of leases.entries())
    for (const other of leases.slice(index + 1))
      if (overlapping(lease, other))
        violations.push({
          check: "two-leases",
          message: `${lease.node} held a lease from ${at(lease.fromMs)} to ${at(lease.toMs)} and ${other.node} from ${at(other.fromMs)} to ${at(other.toMs)}`,
        })
}

/**
 * A primary paused longer than its lease finds itself deposed when it wakes: once another node
 * has been primary in a later term, it never again says it is primary in its old term.
 */
const checkWoken = (history: History, violations: Array<Violation>) => {
  for (const pause of history.processes) {
    if (pause.kind !== "pause" || pause.wasPrimary !== true) continue
    // What ended the pause: it woke, or its watchdog killed it (then it never woke as primary).
    const resume = history.processes.find(
      (event) => event.node === pause.node && event.atMs > pause.atMs && event.kind !== "pause",
    )
    if (resume === undefined || resume.kind !== "resume") continue
    const before = history.statuses
      .filter((sample) => sample.node === pause.node && sample.recvMs <= pause.atMs)
      .at(-1)
    if (before === undefined || !before.isPrimary) continue
    const successor = history.statuses.find(
      (sample) =>
        sample.node !== pause.node &&
        sample.isPrimary &&
        sample.term > before.term &&
        sample.recvMs <= resume.atMs,
    )
    if (successor === undefined) continue
    const claim = history.statuses.find(
      (sample) =>
        sample.node === pause.node &&
        sample.sentMs >= resume.atMs &&
        sample.isPrimary &&
        sample.term === before.term,
    )
    if (claim !== undefined)
      violations.push({
        check: "woke-as-primary",
        message: `${pause.node}, paused as primary of term ${before.term} at ${at(pause.atMs)}, said it was primary of that term at ${at(claim.sentMs)} after waking at ${at(resume.atMs)}, though ${successor.node} had been primary of term ${successor.term}`,
      })
  }
}

/**
 * A node that cannot speak (killed, or paused) is not heard: from `silenceMs` after it fell
 * silent until it speaks again, no other node says it is alive, or primary. Whatever the network
 * does, nobody can speak for it — only a replay of what it once said could.
 */
/** When a node killed or paused by `event` ran again (restarted, resumed), or never. */
const backAt = (history: History, event: ProcessEvent): number =>
  history.processes.find(
    (later) =>
      later.node === event.node &&
      later.atMs > event.atMs &&
      (later.kind === "restart" || later.kind === "resume"),
  )?.atMs ?? Number.POSITIVE_INFINITY

const checkSilence = (history: History, bounds: Bounds, violations: Array<Violation>) => {
  for (const event of history.processes) {
    if (event.kind !== "kill" && event.kind !== "pause") continue
    const back = backAt(history, event)
    const heard = history.statuses.find(
      (sample) =>
        sample.node !== event.node &&
        sample.sentMs >= event.atMs + bounds.silenceMs &&
        sample.recvMs < back &&
        (sample.alive?.includes(event.node) === true || (sample.primary === event.node && !sample.isPrimary)),
    )
    if (heard !== undefined)
      violations.push({
        check: "silent-heard",
        message: `${event.node} was ${event.kind === "kill" ? "killed" : "paused"} at ${at(event.atMs)}, yet ${heard.node} said at ${at(heard.sentMs)} that it ${heard.alive?.includes(event.node) === true ? "was alive" : "was primary"}`,
      })
  }
}

/**
 * A wall-clock step changes nothing: leases, windows and fences run on the monotonic clock. In
 * the quiet after a step (nothing else faulty from `leadMs` before it to the end of its record),
 * no node reports a later term or a new fence, and the primary keeps its lease.
 */
const checkClockSteps = (history: History, leadMs: number, violations: Array<Violation>) => {
  for (const step of history.faults) {
    if (step.kind !== "clock") continue
    const fromMs = step.startMs - leadMs
    const quiet =
      !disturbed(history, fromMs, step.endMs, () => false) &&
      !history.processes.some((event) => event.atMs > fromMs && event.atMs < step.endMs)
    if (!quiet) continue
    const before = new Map<string, StatusSample>()
    for (const sample of history.statuses)
      if (sample.recvMs <= step.startMs && sample.sentMs >= fromMs) before.set(sample.node, sample)
    const primary = [...before.values()].find((sample) => sample.isPrimary)
    if (primary === undefined) continue
    // A change is the node's own: its term, its primary, or a fence it did not have before.
    const changed = history.statuses.find((sample) => {
      if (sample.sentMs <= step.startMs || sample.recvMs >= step.endMs) return false
      // An election (a later term), the primary losing its lease or fencing, or a node fencing
      // that had not. (A node behind before the step, just restarted say, may catch up after.)
      const was = before.get(sample.node)
      return (
        sample.term > primary.term ||
        (sample.node === primary.node && (!sample.isPrimary || sample.fenced)) ||
        (sample.fenced && was !== undefined && !was.fenced)
      )
    })
    if (changed !== undefined)
      violations.push({
        check: "clock-step",
        message: `the wall clock of ${step.detail} at ${at(step.startMs)}, nothing else faulty, and ${changed.node} said at ${at(changed.sentMs)}: term ${changed.term} (was ${primary.term}), primary ${changed.primary ?? "none"} (was ${primary.node})${changed.fenced ? ", fenced" : ""}`,
      })
  }
}

/** No system running on two nodes at once. */
const checkDomains = (history: History, violations: Array<Violation>) => {
  const systems = new Set(history.domains.flatMap((sample) => sample.running))
  for (const system of systems) {
    const running = stretches(history.domains, (sample) => sample.running.includes(system))
    for (const [index, stretch] of running.entries())
      for (const other of running.slice(index + 1))
        if (overlapping(stretch, other)) {
          violations.push({
            check: "active-on-two",
            message: `${system} ran on ${stretch.node} from ${at(stretch.fromMs)} to ${at(stretch.toMs)} and on ${other.node} from ${at(other.fromMs)} to ${at(other.toMs)}`,
          })
          return
        }
  }
}

/** Whether any fault other than `except` (and clock steps, which must change nothing) overlaps the window. */
const disturbed = (history: History, fromMs: number, toMs: number, except: (fault: FaultRecord) => boolean) =>
  history.faults.some(
    (fault) => fault.kind !== "clock" && !except(fault) && fault.startMs < toMs && fault.endMs > fromMs,
  )

/** HA systems back after a kill, a primary after the last one is lost: measured, and bounded when nothing else is faulty. */
const checkRecovery = (
  history: History,
  bounds: Bounds,
  violations: Array<Violation>,
): { failovers: Figures["failovers"]; elections: Figures["elections"] } => {
  const failovers: Array<{ system: string; node: string; ms: number }> = []
  const elections: Array<{ node: string; ms: number }> = []
  const ownFault = (event: ProcessEvent) => (fault: FaultRecord) =>
    fault.startMs <= event.atMs + 50 && fault.startMs >= event.atMs - 50 && fault.detail.includes(event.node)
  for (const event of history.processes) {
    if (event.kind !== "kill" && event.kind !== "pause") continue
    const before = history.domains
      .filter((sample) => sample.node === event.node && sample.recvMs <= event.atMs)
      .at(-1)
    const quiet = !disturbed(history, event.atMs, event.atMs + bounds.failoverMs, ownFault(event))
    if (event.kind === "kill")
      for (const system of before?.running ?? []) {
        if (!history.haSystems.includes(system)) continue
        const back = history.domains.find(
          (sample) =>
            sample.sentMs > event.atMs &&
            sample.running.includes(system) &&
            (sample.node !== event.node || sample.sentMs > backAt(history, event)),
        )
        const ms = back === undefined ? undefined : back.recvMs - event.atMs
        if (ms !== undefined) failovers.push({ system, node: event.node, ms })
        if (
          quiet &&
          event.atMs + bounds.failoverMs < history.faultsStopMs &&
          (ms ?? Infinity) > bounds.failoverMs
        )
          violations.push({
            check: "ha-failover",
            message: `${system} ran on ${event.node}, killed at ${at(event.atMs)}: ${ms === undefined ? "never ran again" : `ran again only after ${(ms / 1000).toFixed(1)} s`} (bound ${bounds.failoverMs / 1000} s, nothing else faulty)`,
          })
      }
    if (event.wasPrimary !== true) continue
    const next = history.statuses.find(
      (sample) => sample.sentMs > event.atMs && sample.isPrimary && sample.node !== event.node,
    )
    const ms = next === undefined ? undefined : next.recvMs - event.atMs
    if (ms !== undefined) elections.push({ node: event.node, ms })
    const quietElection = !disturbed(history, event.atMs, event.atMs + bounds.electionMs, ownFault(event))
    if (
      quietElection &&
      backAt(history, event) > event.atMs + bounds.electionMs &&
      event.atMs + bounds.electionMs < history.faultsStopMs &&
      (ms ?? Infinity) > bounds.electionMs
    )
      violations.push({
        check: "election",
        message: `the primary ${event.node} was ${event.kind === "kill" ? "killed" : "paused"} at ${at(event.atMs)} and ${ms === undefined ? "no other node became primary" : `another became primary only after ${(ms / 1000).toFixed(1)} s`} (bound ${bounds.electionMs / 1000} s, nothing else faulty)`,
      })
  }
  return { failovers, elections }
}

/**
 * An exit that is the watchdog's answer to the harness's pause: its watchdog killed it during
 * the pause, or within a second of its end (the node had not fed it yet when it woke: the pause
 * and the time since its last heartbeat together passed the timeout).
 */
const killedForItsPause = (history: History, event: ProcessEvent): boolean => {
  if (event.detail?.includes('"watchdog: no heartbeat') !== true) return false
  const own = history.processes.filter((other) => other.node === event.node && other.atMs <= event.atMs)
  const pause = own.filter((other) => other.kind === "pause").at(-1)
  if (pause === undefined) return false
  const between = own.filter((other) => other !== pause && other !== event && other.atMs >= pause.atMs)
  return (
    between.length === 0 ||
    (between.length === 1 && between[0]!.kind === "resume" && event.atMs - between[0]!.atMs <= 1_000)
  )
}

/** After the heal: converged within the bound, every HA system running on exactly one node; no node ever exited by itself. */
const checkEnd = (history: History, bounds: Bounds, violations: Array<Violation>) => {
  for (const event of history.processes)
    if (event.kind === "exited" && !killedForItsPause(history, event))
      violations.push({
        check: "exited",
        message: `${event.node} exited by itself at ${at(event.atMs)} (${event.detail ?? "?"})`,
      })
  if (history.convergedMs === null)
    violations.push({
      check: "converged",
      message: `the nodes did not hold the same objects within ${bounds.convergenceMs / 1000} s of the heal`,
    })
  const last = history.nodes.map((node) =>
    history.domains.filter((sample) => sample.node === node && sample.sentMs >= history.faultsStopMs).at(-1),
  )
  for (const [index, sample] of last.entries())
    if (sample === undefined)
      violations.push({
        check: "down-at-end",
        message: `${history.nodes[index]} never told its driver's domains after the heal`,
      })
  for (const system of history.haSystems) {
    const on = last.filter((sample) => sample?.running.includes(system)).map((sample) => sample!.node)
    if (on.length !== 1)
      violations.push({
        check: "ha-at-end",
        message: `after the heal, HA system ${system} ran on ${on.length === 0 ? "no node" : on.join(" and ")}`,
      })
  }
  for (const write of history.writes)
    if (write.role === "read-only" && write.outcome === "ok")
      violations.push({
        check: "privilege",
        message: `a read-only key's write of ${write.key} on ${write.node} was acknowledged (${write.status ?? "?"})`,
      })
  for (const attempt of history.forbidden) {
    if (attempt.status < 400)
      violations.push({
        check: "privilege",
        message: `a key without admin wrote ${attempt.key} through ${attempt.path} (${attempt.status})`,
      })
    for (const [node, objects] of Object.entries(history.final))
      if (objects[attempt.key] !== undefined)
        violations.push({
          check: "privilege",
          message: `${node} holds ${attempt.key}, written by a non-admin key`,
        })
  }
}

/**
 * The clients' decisions must have a legal sequential order (core/oracle/linearizability.ts);
 * the primary's own (its HA placements) raise the epochs unseen by the clients, which the model
 * allows (`allocationModelWithOthers`).
 */
const checkDecisions = (history: History, violations: Array<Violation>): Figures["decisions"]["verdict"] => {
  const operations = history.decisions.map((record) => ({
    invokedUs: record.invokedMs * 1000,
    ...(record.returnedMs === undefined ? {} : { returnedUs: record.returnedMs * 1000 }),
    op: record.command,
    ...(record.answer === undefined ? {} : { result: record.answer }),
  }))
  const verdict = checkLinearizable(allocationModelWithOthers, operations)
  if (verdict._tag === "NotLinearizable") {
    const show = (index: number) => {
      const record = history.decisions[index]!
      return `${record.node} ${JSON.stringify(record.command)} at ${record.invokedMs} ms → ${record.answer === undefined ? "no answer" : `${JSON.stringify(record.answer)} at ${record.returnedMs} ms`}`
    }
    violations.push({
      check: "linearizable",
      message: `the clients' decisions have ${explainNoOrder(verdict, operations.length, show)}`,
    })
  }
  return verdict._tag
}

export const checkHistory = (
  history: History,
  bounds: Bounds = defaultBounds,
): { readonly violations: ReadonlyArray<Violation>; readonly figures: Figures } => {
  const violations: Array<Violation> = []
  checkWrites(history, violations)
  checkPrimaries(history, violations)
  checkWoken(history, violations)
  checkSilence(history, bounds, violations)
  checkClockSteps(history, clockLeadMs, violations)
  checkDomains(history, violations)
  const recovery = checkRecovery(history, bounds, violations)
  checkEnd(history, bounds, violations)
  const linearizable = checkDecisions(history, violations)
  const writes = { ok: 0, refused: 0, unknown: 0 }
  for (const write of history.writes) writes[write.outcome]++
  const faults: Partial<Record<FaultKind, number>> = {}
  for (const fault of history.faults) faults[fault.kind] = (faults[fault.kind] ?? 0) + 1
  return {
    violations,
    figures: {
      writes,
      faults,
      ...recovery,
      convergenceMs: history.convergedMs === null ? null : history.convergedMs - history.faultsStopMs,
      decisions: {
        answered: history.decisions.filter((record) => record.answer !== undefined).length,
        unknown: history.decisions.filter((record) => record.answer === undefined).length,
        verdict: linearizable,
      },
    },
  }
}
