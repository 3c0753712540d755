/**
 * A real ACP node: the driver loop that feeds real inputs (datagrams, timers, API writes) into
 * the same CDB and election cores the simulator drives, and carries out their outputs through
 * the ports, in order: `Persist` is durable before any acknowledgement or datagram after it.
 * One lock serialises every input, so the cores see one input at a time, as in the simulator.
 */
import { Effect, type Fiber, Result, Schedule, Semaphore, Stream } from "effect"
import type { Change, StatsValue } from "../../core/cdb/codec.ts"
import type { SpecEntry } from "../../core/cdb/durable.ts"
import {
  type CdbConfig,
  CdbNode,
  type Output as CdbOutput,
  defaultCdbConfig,
  type WriteOp,
} from "../../core/cdb/node.ts"
import {
  type AlarmRecord,
  encodeAlarm,
  evaluateAlarms,
  nodeConditions,
  nodeUnreachableRule,
  openAlarms,
  storedAlarm,
} from "../../core/monitor/alarms.ts"
import {
  defaultElectionTimings,
  type Input as ElectionInput,
  ElectionNode,
  type Output as ElectionOutput,
} from "../../core/monitor/election.ts"
import { computeHealth, type Health } from "../../core/monitor/health.ts"
import { decodeMessage, encodeMessage } from "../../core/monitor/wire.ts"
import { DurableStore, type StoreError } from "../../core/ports/store.ts"
import { type DropReason, type Received, Transport } from "../../core/ports/transport.ts"
import type { NodeConfig } from "./config.ts"

/** While the store refuses commits, how often the core takes received datagrams (a probe). */
export const storeProbeMs = 500

export class WriteRefused extends Error {
  readonly _tag = "WriteRefused"
  readonly reason: string
  constructor(reason: string, detail: string) {
    super(detail)
    this.reason = reason
  }
}

/** How many of its own changes a real node keeps for repairs (in memory and in SQLite). */
export const realNodeRetainChanges = 16_384

export interface NodeCounters {
  readonly datagramsIn: number
  readonly datagramsOut: number
  readonly rejectedDatagrams: number
  readonly rejectedMessages: number
  readonly writesAcknowledged: number
}

/** What the API and metrics can ask of a running node. */
export interface RunningNode {
  readonly id: string
  readonly write: (writes: ReadonlyArray<Omit<WriteOp, "requestId">>) => Effect.Effect<void, WriteRefused>
  readonly setStats: (values: ReadonlyArray<StatsValue>) => Effect.Effect<void>
  readonly get: (kind: string, id: string) => SpecEntry | undefined
  readonly list: (kind: string | undefined) => ReadonlyArray<SpecEntry>
  readonly metaOf: (
    kind: string,
    id: string,
  ) => ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>
  readonly status: () => NodeStatus
  readonly counters: () => NodeCounters & { readonly cdb: CdbNode["counters"] }
  /** Datagrams the transport dropped before the core saw them, by reason. */
  readonly dropped: Effect.Effect<Readonly<Record<DropReason, number>>>
  /** Grows with every change applied to the CDB, so a service can tell when to look again. */
  readonly revision: () => number
  /** Every node's statistics for an object. */
  readonly statsOf: (
    kind: string,
    id: string,
  ) => ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>
  /** What the hypervisor needs of the monitor: leased-primary contact, fencing, primacy. */
  readonly authority: () => {
    readonly nowMs: number
    readonly leaderContactMs: number
    readonly fenced: boolean
    readonly isPrimary: boolean
    readonly primarySinceMs: number
    readonly quorumWindowMs: number
  }
  readonly lastHeardMs: (node: string) => number
  /** The CDB's known gaps and when each node's digest last arrived (the primary's HA waits for both). */
  readonly syncState: () => ReturnType<CdbNode["syncState"]>
  /** Calls `observer` with every batch of changes this node applies, its own writes included (a benchmark's probe). */
  readonly observeApplied: (observer: ((changes: ReadonlyArray<Change>) => void) | undefined) => void
  /** Reads a system's serial console on this node; set by the hypervisor service once it runs. */
  console:
    | ((system: string, maxBytes: number) => Effect.Effect<string, { readonly message: string }>)
    | undefined
}

export interface NodeStatus {
  readonly node: string
  readonly incarnation: number
  readonly members: ReadonlyArray<{ readonly id: string; readonly state: string }>
  readonly primary: string | null
  readonly isPrimary: boolean
  readonly term: number
  readonly fenced: boolean
  readonly entries: number
  readonly health: Health
  readonly alarms: ReadonlyArray<AlarmRecord & { readonly id: string }>
}

/** Runs a node as `incarnation` (its durable restart count, taken once by its caller). */
export const startNode = (config: NodeConfig, incarnation: number) =>
  Effect.gen(function* () {
    const store = yield* DurableStore
    const transport = yield* Transport
    const loaded = yield* store.load
    for (const value of loaded.corrupted)
      yield* Effect.logError("stored value failed its checksum: not served", { ...value })
    const storeCorrupted = {
      count: loaded.corrupted.length,
      lost: loaded.corrupted.filter((value) => value.outcome === "lost").length,
    }
    const nowMs = () => Date.now()
    const members = config.members.map((member) => ({
      id: member.id,
      domain: member.domain,
      relay: member.relay,
    }))
    const cdbConfig: CdbConfig = {
      ...defaultCdbConfig,
      // A real node keeps a longer log than the simulator's default (4 MB per origin at 250 B a
      // change): repairs instead of snapshots for a receiver a few seconds behind at full speed.
      retainChanges: realNodeRetainChanges,
      maxUnconfirmedChanges: (realNodeRetainChanges * 3) / 4,
      cluster: config.cluster,
      mtu: config.mtu,
      self: config.id,
      members,
    }
    const cdbFrom = (image: typeof loaded.image) => {
      const fresh = image.vector.size === 0 && image.entries.size === 0
      return new CdbNode(cdbConfig, nowMs(), incarnation, fresh ? undefined : image)
    }
    // Replaced by what is durable when a commit fails: the cores never hold what the store refused.
    let cdb = cdbFrom(loaded.image)
    const voters = config.members.map((member) => member.id)
    const election = new ElectionNode(
      { ...defaultElectionTimings, self: config.id, voters },
      nowMs(),
      loaded.vote,
    )
    /** Set while the store refuses commits (a full disk, an I/O error): health and writes say why. */
    let storeFailure: { readonly sinceMs: number; readonly error: StoreError } | undefined
    /** While it is set: from when the core takes received datagrams again (one batch per probe). */
    let probeAtMs = 0
    const lock = yield* Semaphore.make(1)
    const memberView = new Map<string, { state: "alive" | "suspect" | "dead"; sinceMs: number }>(
      config.members
        .filter((member) => member.id !== config.id)
        .map((member) => [member.id, { state: "alive", sinceMs: nowMs() }]),
    )
    const startedMs = nowMs()
    let cdbDeadlineMs = 0
    let electionDeadlineMs = 0
    let requestId = 0
    let revision = 0
    const counters = {
      datagramsIn: 0,
      datagramsOut: 0,
      rejectedDatagrams: 0,
      rejectedMessages: 0,
      writesAcknowledged: 0,
      /** CDB datagrams dropped before the core while the store refused commits (repaired later). */
      droppedWhileStoreFails: 0,
    }
    const otherDomainVoters = config.members.filter((member) => member.domain !== config.domain)

    const send = (
      destination: Parameters<typeof transport.send>[0],
      channel: "cdb" | "monitor",
      bytes: Uint8Array,
    ) => {
      counters.datagramsOut++
      return transport
        .send(destination, channel, bytes)
        .pipe(
          Effect.catch((error) =>
            Effect.logWarning("send failed", { reason: error.reason, detail: error.detail }),
          ),
        )
    }

    const describeStoreError = (error: StoreError) =>
      `${error.reason === "disk-full" ? "disk full" : error.reason === "io-error" ? "I/O error" : "store write failed"}: ${error.detail}`
    const storeRefused = (error: StoreError) =>
      Effect.gen(function* () {
        if (storeFailure !== undefined) return
        storeFailure = { sinceMs: nowMs(), error }
        probeAtMs = nowMs() + storeProbeMs
        yield* Effect.logError("store commits fail: nothing of them is acknowledged or sent", {
          reason: error.reason,
          detail: error.detail,
        })
      })
    const storeRecovered = Effect.gen(function* () {
      yield* Effect.logInfo("store commits again", { failingForMs: nowMs() - (storeFailure?.sinceMs ?? 0) })
      storeFailure = undefined
    })

    let appliedObserver: ((changes: ReadonlyArray<Change>) => void) | undefined
    const carryOutCdb = Effect.fnUntraced(function* (outputs: ReadonlyArray<CdbOutput>) {
      const acknowledged: Array<number> = []
      // Why each refused request was refused; the error object is built once, for the one reported.
      const refused = new Map<number, { readonly reason: string; readonly detail: string }>()
      // Everything to persist, in one transaction, before anything is acknowledged or sent.
      const persists = outputs.filter(
        (output): output is Extract<CdbOutput, { _tag: "Persist" | "PersistSnapshot" }> =>
          output._tag === "Persist" || output._tag === "PersistSnapshot",
      )
      if (persists.length > 0) {
        const committed = yield* Effect.result(store.persist(persists))
        if (committed._tag === "Failure") {
          // Nothing of this step is acknowledged or sent, and the core goes back to what is
          // durable: a refused write is never visible, and this node's stream stays continuous
          // (its next change takes the number the refused one had). What it had received is
          // asked for again, like any gap.
          yield* storeRefused(committed.failure)
          cdb = cdbFrom((yield* store.load.pipe(Effect.orDie)).image)
          // The new core's failure detector starts over (every member alive), so its view does too.
          for (const id of memberView.keys()) memberView.set(id, { state: "alive", sinceMs: nowMs() })
          const detail = describeStoreError(committed.failure)
          for (const output of outputs) {
            if (output._tag === "Acknowledged")
              for (const id of output.requestIds)
                refused.set(id, { reason: committed.failure.reason, detail })
            if (output._tag === "WriteRejected") refused.set(output.requestId, output)
          }
          return { acknowledged, refused }
        }
        if (storeFailure !== undefined) yield* storeRecovered
      }
      for (const output of outputs) {
        switch (output._tag) {
          case "Persist":
          case "PersistSnapshot":
            break
          case "Acknowledged":
            acknowledged.push(...output.requestIds)
            break
          case "WriteRejected":
            refused.set(output.requestId, output)
            break
          case "Multicast":
            yield* send({ _tag: "Domain" }, "cdb", output.bytes)
            break
          case "Unicast":
            yield* send({ _tag: "Node", node: output.to }, "cdb", output.bytes)
            break
          case "Relay":
            yield* send({ _tag: "Relay", node: output.to }, "cdb", output.bytes)
            break
          case "Rejected":
            counters.rejectedDatagrams++
            yield* Effect.logWarning("datagram rejected", {
              reason: output.rejection.reason,
              detail: output.rejection.detail,
            })
            break
          case "MemberChanged":
            memberView.set(output.node, { state: output.state, sinceMs: nowMs() })
            yield* Effect.logInfo("member changed", { node: output.node, state: output.state })
            break
          case "ArmDeadline":
            cdbDeadlineMs = output.atMs
            break
          case "Applied":
            revision++
            appliedObserver?.(output.changes)
            break
          case "SnapshotInstalled":
            revision++
            break
        }
      }
      counters.writesAcknowledged += acknowledged.length
      if (acknowledged.length > 0) revision++
      return { acknowledged, refused }
    })

    const carryOutElection: (outputs: ReadonlyArray<ElectionOutput>) => Effect.Effect<void> =
      Effect.fnUntraced(function* (outputs: ReadonlyArray<ElectionOutput>) {
        for (const output of outputs) {
          switch (output._tag) {
            case "Send":
              yield* send({ _tag: "Node", node: output.to }, "monitor", encodeMessage(output.message))
              break
            case "Broadcast": {
              const bytes = encodeMessage(output.message)
              yield* send({ _tag: "Domain" }, "monitor", bytes)
              for (const voter of otherDomainVoters)
                yield* send({ _tag: "Node", node: voter.id }, "monitor", bytes)
              break
            }
            case "PersistVote": {
              const voted = yield* Effect.result(
                store.persistVote({ term: output.term, votedFor: output.votedFor }),
              )
              if (voted._tag === "Failure") {
                // A vote that is not durable is not cast: nothing after it goes out, and the
                // election goes back to the vote the store holds.
                yield* storeRefused(voted.failure)
                const durable = (yield* store.load.pipe(Effect.orDie)).vote
                yield* carryOutElection(election.revertVote(durable, nowMs()))
                return
              }
              break
            }
            case "BecamePrimary":
              yield* Effect.logInfo("became primary", { term: output.term })
              break
            case "SteppedDown":
              yield* Effect.logInfo("stepped down", { term: output.term, reason: output.reason })
              break
            case "Fence":
              yield* Effect.logWarning("fenced", { reason: output.reason })
              break
            case "Unfence":
              yield* Effect.logInfo("unfenced")
              break
            case "LeaseRenewed":
              break
            case "ArmDeadline":
              electionDeadlineMs = output.atMs
              break
          }
        }
      })

    const stepElection = (input: ElectionInput) => carryOutElection(election.handle(input, nowMs()))

    const openAlarmsNow = () => openAlarms(cdb.entriesOf("alarm"))

    /** The primary (only) turns what the CDB says about members into alarms. */
    const evaluate = Effect.gen(function* () {
      if (!election.isPrimary(nowMs())) return
      const conditions = nodeConditions(config.id, startedMs, memberView)
      const changes = evaluateAlarms(
        nodeUnreachableRule,
        conditions,
        (id) => storedAlarm(cdb.get("alarm", id)?.value),
        { nowMs: nowMs(), term: election.currentTerm, self: config.id, subjectKind: "node" },
      )
      if (changes.length === 0) return
      for (const change of changes)
        yield* Effect.logWarning(`alarm ${change.record.state}`, {
          alarm: change.id,
          message: change.record.message,
        })
      const writes = changes.map((change) => ({
        requestId: ++requestId,
        op: "put" as const,
        kind: "alarm",
        id: change.id,
        value: encodeAlarm(change.record),
      }))
      yield* carryOutCdb(cdb.handle({ _tag: "Write", writes }, nowMs()))
    })

    /**
     * The datagrams that queued up while the node was busy, taken together: the CDB core takes
     * each in turn, and what they leave to persist is one SQLite transaction, not one per datagram.
     */
    const receiveBatch = (batch: ReadonlyArray<Received>) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const outputs: Array<CdbOutput> = []
          // While the store refuses commits, each batch the core takes costs a refused commit and a
          // reload of the image: it takes one batch per probe interval, to see when commits work
          // again; the rest is dropped here and repaired later, like any loss.
          const probing = storeFailure === undefined || nowMs() >= probeAtMs
          if (storeFailure !== undefined && probing) probeAtMs = nowMs() + storeProbeMs
          for (const received of batch) {
            counters.datagramsIn++
            if (received.channel === "cdb") {
              if (!probing) {
                counters.droppedWhileStoreFails++
                continue
              }
              const input = {
                _tag: "DatagramReceived" as const,
                bytes: received.bytes,
                via: received.via,
                ...(received.from === undefined ? {} : { from: received.from }),
              }
              for (const output of cdb.handle(input, nowMs())) outputs.push(output)
              continue
            }
            const message = decodeMessage(received.bytes)
            if (Result.isFailure(message)) {
              counters.rejectedMessages++
              yield* Effect.logWarning("monitor message rejected", { detail: message.failure.detail })
              continue
            }
            yield* stepElection({ _tag: "MessageReceived", message: message.success })
          }
          if (outputs.length > 0) yield* carryOutCdb(outputs)
        }),
      )
    const receive = (chunk: ReadonlyArray<Received>) =>
      Effect.forEach(
        Array.from({ length: Math.ceil(chunk.length / 256) }, (_, index) =>
          chunk.slice(index * 256, (index + 1) * 256),
        ),
        receiveBatch,
        { discard: true },
      )

    const tick = lock.withPermits(1)(
      Effect.gen(function* () {
        const now = nowMs()
        if (now >= cdbDeadlineMs) yield* carryOutCdb(cdb.handle({ _tag: "DeadlineReached" }, now))
        if (now >= electionDeadlineMs) {
          yield* stepElection({ _tag: "DeadlineReached" })
          yield* evaluate
        }
      }),
    )

    yield* tick
    const incomingFiber = yield* Stream.runForEachArray(transport.incoming, receive).pipe(Effect.forkScoped)
    const tickFiber = yield* tick.pipe(Effect.repeat(Schedule.spaced("5 millis")), Effect.forkScoped)

    const running: RunningNode = {
      id: config.id,
      write: (writes) =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            const ops = writes.map((write) => ({ ...write, requestId: ++requestId }))
            const { acknowledged, refused } = yield* carryOutCdb(
              cdb.handle({ _tag: "Write", writes: ops }, nowMs()),
            )
            const first = ops.find((op) => refused.has(op.requestId))
            if (first !== undefined) {
              const why = refused.get(first.requestId)!
              return yield* Effect.fail(new WriteRefused(why.reason, why.detail))
            }
            if (acknowledged.length !== ops.length)
              return yield* Effect.fail(
                new WriteRefused("not-acknowledged", "the write was not acknowledged"),
              )
          }),
        ),
      setStats: (values) =>
        lock.withPermits(1)(
          carryOutCdb(cdb.handle({ _tag: "SetStats", values }, nowMs())).pipe(Effect.asVoid),
        ),
      get: (kind, id) => cdb.get(kind, id),
      list: (kind) =>
        kind === undefined
          ? cdb
              .allEntries()
              .map(([, entry]) => entry)
              .filter((entry) => entry.value !== null)
          : cdb.entriesOf(kind),
      metaOf: (kind, id) => cdb.metaOf(kind, id).map((slot) => ({ node: slot.node, value: slot.value })),
      status: () => {
        const now = nowMs()
        const memberStates = [...memberView].map(([id, view]) => ({ id, ...view }))
        const alarms = openAlarmsNow()
        const primary = election.isPrimary(now) ? config.id : election.knownLeader
        return {
          node: config.id,
          incarnation,
          members: [
            { id: config.id, state: "alive" },
            ...memberStates.map((member) => ({ id: member.id, state: member.state })),
          ],
          primary,
          isPrimary: election.isPrimary(now),
          term: election.currentTerm,
          fenced: election.isFenced(),
          entries: cdb.entryCount(),
          alarms,
          health: computeHealth({
            nowMs: now,
            members: [{ id: config.id, state: "alive", sinceMs: startedMs }, ...memberStates],
            voters: voters.length,
            votersSeen: 1 + memberStates.filter((member) => member.state === "alive").length,
            primary,
            openAlarms: alarms.map((alarm) => ({ id: alarm.id, severity: alarm.severity })),
            fenced: election.isFenced(),
            ...(storeCorrupted.count === 0 ? {} : { storeCorrupted }),
            ...(storeFailure === undefined
              ? {}
              : {
                  storeFailing: {
                    sinceMs: storeFailure.sinceMs,
                    detail: describeStoreError(storeFailure.error),
                  },
                }),
          }),
        }
      },
      counters: () => ({ ...counters, cdb: cdb.counters }),
      dropped: transport.dropped,
      revision: () => revision,
      statsOf: (kind, id) =>
        config.members.flatMap((member) => {
          const value = cdb.statsOf(kind, id, member.id)
          return value === undefined ? [] : [{ node: member.id, value }]
        }),
      authority: () => {
        const now = nowMs()
        return {
          nowMs: now,
          leaderContactMs: election.leaderContact(now),
          fenced: election.isFenced(),
          isPrimary: election.isPrimary(now),
          primarySinceMs: election.primarySince,
          quorumWindowMs: election.config.quorumWindowMs,
        }
      },
      lastHeardMs: (node) => election.lastHeard(node),
      syncState: () => cdb.syncState(),
      console: undefined,
      observeApplied: (observer) => {
        appliedObserver = observer
      },
    }
    yield* Effect.logInfo("node started", { node: config.id, incarnation, entries: cdb.entryCount() })
    return { running, fibers: [incomingFiber, tickFiber] as ReadonlyArray<Fiber.Fiber<unknown, unknown>> }
  })
