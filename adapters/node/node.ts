/**
 * A real ACP node: the driver of the node's one composition (`core/node/node.ts`), the same
 * object the simulator drives. It only shuttles: datagrams and API writes go into `handle`; a
 * step's commit goes to the store (one transaction) before its outputs go to the transport and
 * the API; a service's effects go to that service's port, whose answer comes back as an input;
 * one timer is armed at the composition's next deadline. One lock serialises every input, so the
 * composition sees one input at a time, as in the simulator; what queues up meanwhile is taken
 * as one step (group commit: one transaction for many inputs).
 *
 * Two clocks, named as such: `monotonicMs` (every lease, quorum window, fence deadline, back-off
 * and timeout) and `wallMs` (read by the hybrid logical clock only, to stamp versions).
 */
import { Deferred, Effect, type Fiber, Result, Schedule, Semaphore, Stream } from "effect"
import type { Change, StatsValue } from "../../core/cdb/codec.ts"
import type { SpecEntry } from "../../core/cdb/durable.ts"
import { defaultCdbConfig, type WriteOp } from "../../core/cdb/node.ts"
import type { MemberAddress, Membership } from "../../core/decision/log.ts"
import type { DecisionAnswer, DecisionCommand, MembershipChange } from "../../core/decision/state.ts"
import type { NodeCapacity } from "../../core/hypervisor/scheduler.ts"
import type { ServiceState } from "../../core/lifecycle/tables.ts"
import type { AlarmRecord } from "../../core/monitor/alarms.ts"
import { defaultElectionTimings } from "../../core/monitor/election.ts"
import type { Health } from "../../core/monitor/health.ts"
import { decodeMessage, encodeMessage } from "../../core/monitor/wire.ts"
import {
  defaultNodeTimings,
  type Input,
  NodeCore,
  type Output,
  type ServiceEffect,
  type ServiceStatus,
  type Step,
} from "../../core/node/node.ts"
import type { ServiceFactories, ServiceName, ServicePorts } from "../../core/node/service.ts"
import { DurableStore } from "../../core/ports/store.ts"
import { type DropReason, type Received, Transport } from "../../core/ports/transport.ts"
import { sealLeadPersistedUs } from "../../core/transport/replay.ts"
import type { NodeConfig } from "./config.ts"

/** Where a member is reached: its unicast address and port, its domain, its agent. */
export type ReachedAt = Omit<MemberAddress, "relayPort"> & { readonly id: string }

const reachedAt = (id: string, at: Omit<ReachedAt, "id">): ReachedAt => ({
  id,
  address: at.address,
  port: at.port,
  domain: at.domain,
  relay: at.relay,
  ...(at.agentPort === undefined ? {} : { agentPort: at.agentPort }),
})

/** A decision not taken: this node is not the ready primary (`primary` names the one it knows), or it did not commit in time (its outcome unknown). */
export class DecisionRefusedError extends Error {
  readonly _tag = "DecisionRefused"
  readonly reason: string
  readonly primary: string | null
  constructor(reason: string, primary: string | null) {
    super(
      reason === "not-committed-in-time"
        ? "the decision was not committed in time: it may still be"
        : reason === "change-in-progress"
          ? "another membership change is not committed yet: one at a time"
          : reason.startsWith("invalid: ")
            ? reason.slice("invalid: ".length)
            : `this node is not the primary that decides${primary === null ? " (none is known)" : `; ${primary} is`}`,
    )
    this.reason = reason
    this.primary = primary
  }
}

export class WriteRefused extends Error {
  readonly _tag = "WriteRefused"
  readonly reason: string
  constructor(reason: string, detail: string) {
    super(detail)
    this.reason = reason
  }
}

/** The most inputs one step takes (one SQLite transaction for all of them). */
const inputsPerStep = 256

/** How many of its own changes a real node keeps for repairs (in memory and in SQLite). */
export const realNodeRetainChanges = 16_384

/** The node's two clocks. A test hands in a wall clock that jumps; nothing but versions may notice. */
export interface Clocks {
  /** Never goes back, never jumps: leases, windows, deadlines, back-offs. */
  readonly monotonicMs: () => number
  /** The wall clock (NTP may step it, an operator may set it): the hybrid logical clock only. */
  readonly wallMs: () => number
}

/** Monotonic time anchored at the wall clock once, at the start, so its values read like times. */
export const systemClocks = (): Clocks => {
  const anchor = Date.now() - performance.now()
  return { monotonicMs: () => Math.floor(anchor + performance.now()), wallMs: () => Date.now() }
}

export interface NodeCounters {
  readonly datagramsIn: number
  readonly datagramsOut: number
  readonly rejectedDatagrams: number
  readonly rejectedMessages: number
  readonly writesAcknowledged: number
  /** Times the timer fired (one per deadline the composition asked for, not a polling loop). */
  readonly deadlineSteps: number
}

/** Carries out one service's effects (its port): each answer comes back through `answer`. */
export type ServiceExecutor<Name extends ServiceName> = (
  effect: ServicePorts[Name]["effect"],
  answer: (input: ServicePorts[Name]["input"]) => Effect.Effect<void>,
) => Effect.Effect<void>

/** What the API and metrics can ask of a running node. */
export interface RunningNode {
  readonly id: string
  readonly write: (writes: ReadonlyArray<Omit<WriteOp, "requestId">>) => Effect.Effect<void, WriteRefused>
  readonly setStats: (values: ReadonlyArray<StatsValue>) => Effect.Effect<void>
  /** A change of membership, proposed here: the membership once it is committed, or why not. */
  readonly changeMembership: (
    change: MembershipChange,
    timeoutMs: number,
  ) => Effect.Effect<Membership, DecisionRefusedError>
  /**
   * Called with the members as the decision log says them, and where each is reached, now and at
   * every change (the API's forwarding follows it).
   */
  readonly watchMembers: (listener: (members: ReadonlyMap<string, ReachedAt>) => void) => void
  /** A decision for the log, proposed here: its answer once applied, or why not. */
  readonly decide: (
    command: DecisionCommand,
    timeoutMs: number,
  ) => Effect.Effect<DecisionAnswer, DecisionRefusedError>
  readonly get: (kind: string, id: string) => SpecEntry | undefined
  readonly list: (kind: string | undefined) => ReadonlyArray<SpecEntry>
  readonly metaOf: (
    kind: string,
    id: string,
  ) => ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>
  readonly status: () => NodeStatus
  readonly counters: () => NodeCounters & { readonly cdb: NodeCore["cdbCore"]["counters"] }
  /** Datagrams the transport dropped before the core saw them, by reason. */
  readonly dropped: Effect.Effect<Readonly<Record<DropReason, number>>>
  /** Every node's statistics for an object. */
  readonly statsOf: (
    kind: string,
    id: string,
  ) => ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>
  /** The nodes as the scheduler sees them. */
  readonly capacities: () => ReadonlyArray<NodeCapacity>
  /** Whether this node's store is caught up with a majority (a spec read here is not stale). */
  readonly inSync: () => boolean
  /** The supervisor's report of one of this node's services. */
  readonly serviceState: (report: {
    readonly name: string
    readonly state: ServiceState
    readonly restarts: number
    readonly lastError?: string
  }) => Effect.Effect<void>
  /** The decision log as this node holds it (`acp monitor log`). */
  readonly decisions: () => ReturnType<NodeCore["decisionView"]>
  /** A service's port, while the service runs: its effects go there. */
  readonly attach: <Name extends ServiceName>(name: Name, executor: ServiceExecutor<Name> | undefined) => void
  /** Calls `observer` with every batch of changes this node applies, its own writes included (a benchmark's probe). */
  readonly observeApplied: (observer: ((changes: ReadonlyArray<Change>) => void) | undefined) => void
  /** Reads a system's serial console on this node; set by the hypervisor service once it runs. */
  console:
    | ((system: string, maxBytes: number) => Effect.Effect<string, { readonly message: string }>)
    | undefined
  /** The domains this node's hypervisor driver holds, as the driver says; set while the hypervisor service runs. */
  domains:
    | Effect.Effect<
        ReadonlyArray<{ readonly name: string; readonly state: string }>,
        { readonly message: string }
      >
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
  readonly services: ReadonlyArray<Omit<ServiceStatus, "sinceMs"> & { readonly forMs: number }>
}

/** Runs a node as `incarnation` (its durable restart count, taken once by its caller). */
export const startNode = (
  config: NodeConfig,
  incarnation: number,
  services: ServiceFactories,
  clocks: Clocks = systemClocks(),
) =>
  Effect.gen(function* () {
    const store = yield* DurableStore
    const transport = yield* Transport
    const loaded = yield* store.load
    for (const value of loaded.corrupted)
      yield* Effect.logError("stored value failed its checksum: not served", { ...value })
    const now = clocks.monotonicMs
    const members = config.members.map((member) => ({
      id: member.id,
      domain: member.domain,
      relay: member.relay,
    }))
    const voters = config.members.filter((member) => member.voting !== false).map((member) => member.id)
    const core = new NodeCore(
      {
        self: config.id,
        cdb: {
          ...defaultCdbConfig,
          // A real node keeps a longer log than the simulator's default (4 MB per origin at 250 B a
          // change): repairs instead of snapshots for a receiver a few seconds behind at full speed.
          retainChanges: realNodeRetainChanges,
          maxUnconfirmedChanges: (realNodeRetainChanges * 3) / 4,
          cluster: config.cluster,
          mtu: config.mtu,
          self: config.id,
          members,
        },
        election: { ...defaultElectionTimings, self: config.id, voters },
        incarnation,
        timings: defaultNodeTimings,
        services,
        storeCorrupted: {
          count: loaded.corrupted.length,
          lost: loaded.corrupted.filter((value) => value.outcome === "lost").length,
        },
      },
      loaded,
      now(),
      clocks.wallMs(),
    )
    const lock = yield* Semaphore.make(1)
    let ticket = 0
    const answers = new Map<number, Extract<Output, { _tag: "Written" | "WriteRefused" }>>()
    /** Decisions proposed here, waiting to be applied (or refused). */
    const decisionWaiters = new Map<number, Deferred.Deferred<DecisionAnswer, DecisionRefusedError>>()
    /** Membership changes proposed here, waiting to be committed (or refused). */
    const membershipWaiters = new Map<number, Deferred.Deferred<Membership, DecisionRefusedError>>()
    /** The members and where they are reached: the config's, then the decision log's. */
    let reached: ReadonlyMap<string, ReachedAt> = new Map(
      config.members.map((member) => [member.id, reachedAt(member.id, member)]),
    )
    /**
     * Proposes `input` under a new ticket and waits for its answer (applied or committed), or why
     * not; past `timeoutMs` the outcome is unknown (it may still be committed).
     */
    const proposed = <A>(
      waiters: Map<number, Deferred.Deferred<A, DecisionRefusedError>>,
      input: (ticket: number) => Input,
      timeoutMs: number,
    ) =>
      Effect.gen(function* () {
        const mine = ++ticket
        const waiter = yield* Deferred.make<A, DecisionRefusedError>()
        waiters.set(mine, waiter)
        yield* step(input(mine))
        return yield* Deferred.await(waiter).pipe(
          Effect.timeoutOrElse({
            duration: timeoutMs,
            orElse: () =>
              Effect.sync(() => waiters.delete(mine)).pipe(
                Effect.andThen(
                  Effect.fail(new DecisionRefusedError("not-committed-in-time", core.primary(now()))),
                ),
              ),
          }),
        )
      })
    const memberWatchers: Array<(members: ReadonlyMap<string, ReachedAt>) => void> = []
    const membersChanged = (membership: Membership) => {
      const configured = new Map<string, (typeof config.members)[number]>(
        config.members.map((member) => [member.id, member]),
      )
      const next = new Map<string, ReachedAt>()
      for (const id of new Set([config.id, ...membership.voters, ...membership.learners])) {
        const known = membership.addresses?.[id] ?? configured.get(id)
        if (known !== undefined) next.set(id, reachedAt(id, known))
      }
      reached = next
      transport.setPeers([...next.values()])
      for (const watcher of memberWatchers) watcher(next)
    }
    const executors = new Map<ServiceName, ServiceExecutor<ServiceName>>()
    const counters = {
      datagramsIn: 0,
      datagramsOut: 0,
      rejectedDatagrams: 0,
      rejectedMessages: 0,
      writesAcknowledged: 0,
      deadlineSteps: 0,
    }
    let appliedObserver: ((changes: ReadonlyArray<Change>) => void) | undefined
    /** The one timer: when it is armed for, and the signal that wakes it to re-arm earlier. */
    let armedAtMs = Number.POSITIVE_INFINITY
    let rearm = yield* Deferred.make<void>()

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

    const carryOutput = (output: Output): Effect.Effect<void> => {
      switch (output._tag) {
        case "Send":
          return send(output.to, "cdb", output.bytes)
        case "SendMessage": {
          const bytes = encodeMessage(output.message)
          if (output.to !== "all") return send({ _tag: "Node", node: output.to }, "monitor", bytes)
          return Effect.andThen(
            send({ _tag: "Domain" }, "monitor", bytes),
            Effect.forEach(
              [...reached.values()].filter((member) => member.domain !== config.domain),
              (voter) => send({ _tag: "Node", node: voter.id }, "monitor", bytes),
              {
                discard: true,
              },
            ),
          )
        }
        case "Written":
          return Effect.sync(() => {
            counters.writesAcknowledged += output.writes.length
            if (output.ticket !== undefined) answers.set(output.ticket, output)
          })
        case "WriteRefused":
          return output.ticket !== undefined
            ? Effect.sync(() => answers.set(output.ticket!, output))
            : output.source === "alarm"
              ? Effect.logWarning("alarm write refused", { reason: output.reason, detail: output.detail })
              : Effect.logWarning("service write refused; it is written again", {
                  reason: output.reason,
                  detail: output.detail,
                })
        case "Applied":
          return Effect.sync(() => appliedObserver?.(output.changes))
        case "SnapshotInstalled":
          return Effect.logInfo("snapshot installed", { from: output.from })
        case "Rejected":
          counters.rejectedDatagrams++
          return Effect.logWarning("datagram rejected", {
            reason: output.rejection.reason,
            detail: output.rejection.detail,
          })
        case "MemberChanged":
          return Effect.logInfo("member changed", { node: output.node, state: output.state })
        case "BecamePrimary":
          return Effect.logInfo("became primary", { term: output.term })
        case "SteppedDown":
          return Effect.logInfo("stepped down", { term: output.term, reason: output.reason })
        case "Fence":
          return Effect.logWarning("fenced", { reason: output.reason })
        case "Unfence":
          return Effect.logInfo("unfenced")
        case "LeaseRenewed":
          return Effect.void
        case "Alarms":
          return Effect.forEach(
            output.changes,
            (change) =>
              Effect.logWarning(`alarm ${change.record.state}`, {
                alarm: change.id,
                message: change.record.message,
              }),
            { discard: true },
          )
        case "ServiceEvent":
          return (output.event.level === "warning" ? Effect.logWarning : Effect.logInfo)(
            output.event.message,
            {
              service: output.service,
              ...output.event.detail,
            },
          )
        case "StoreFailing":
          return Effect.logError("store commits fail: nothing of them is acknowledged or sent", {
            ...output.error,
          })
        case "StoreRecovered":
          return Effect.logInfo("store commits again", { failingForMs: output.failingForMs })
        case "DecisionApplied": {
          const waiter = output.ticket === undefined ? undefined : decisionWaiters.get(output.ticket)
          if (waiter === undefined) return Effect.void
          decisionWaiters.delete(output.ticket!)
          return Deferred.succeed(waiter, output.answer).pipe(Effect.asVoid)
        }
        case "DecisionProposed":
          return Effect.logDebug("a service proposed a decision", { command: output.command })
        case "DecisionRefused": {
          const refused = new DecisionRefusedError(output.reason, core.primary(now()))
          const decision = decisionWaiters.get(output.ticket)
          const change = membershipWaiters.get(output.ticket)
          decisionWaiters.delete(output.ticket)
          membershipWaiters.delete(output.ticket)
          if (decision !== undefined) return Deferred.fail(decision, refused).pipe(Effect.asVoid)
          if (change !== undefined) return Deferred.fail(change, refused).pipe(Effect.asVoid)
          return Effect.void
        }
        case "MembershipDecided": {
          const waiter = membershipWaiters.get(output.ticket)
          if (waiter === undefined) return Effect.void
          membershipWaiters.delete(output.ticket)
          return Deferred.succeed(waiter, output.membership).pipe(Effect.asVoid)
        }
        case "MembersChanged":
          return Effect.andThen(
            Effect.sync(() => membersChanged(output.membership)),
            Effect.logInfo("members changed", {
              voters: output.membership.voters,
              learners: output.membership.learners,
            }),
          )
      }
    }

    const carryEffect = (effect: ServiceEffect): Effect.Effect<void> => {
      const executor = executors.get(effect.service)
      if (executor === undefined) return Effect.void
      const answer = (input: ServicePorts[ServiceName]["input"]) =>
        // (`input` answers this effect's service: the executor is that service's.)
        step({ _tag: "ServiceInput", service: effect.service, run: effect.run, input } as Input)
      // Each on its own fiber: a slow QEMU start never stalls the node.
      return Effect.forkDetach(executor(effect.effect, answer)).pipe(Effect.asVoid)
    }

    /** A step's commit first, then its outputs; its effects either way; then the timer. */
    const carry = (result: Step): Effect.Effect<void> =>
      Effect.gen(function* () {
        let outputs = result.outputs
        if (result.commit !== undefined) {
          const committed = yield* Effect.result(store.commit(result.commit))
          if (Result.isFailure(committed)) {
            // Nothing of this step is acknowledged or sent; the composition goes back to what is durable.
            const durable = yield* store.load.pipe(Effect.orDie)
            const refused = core.handle(
              { _tag: "CommitRefused", error: committed.failure, durable },
              now(),
              clocks.wallMs(),
            )
            yield* Effect.forEach(result.effects, carryEffect, { discard: true })
            return yield* carry(refused)
          }
          const recovered = core.committed()
          if (recovered.length > 0) outputs = [...outputs, ...recovered]
        }
        for (const output of outputs) yield* carryOutput(output)
        yield* Effect.forEach(result.effects, carryEffect, { discard: true })
        if (result.deadlineMs < armedAtMs) {
          armedAtMs = result.deadlineMs
          yield* Deferred.succeed(rearm, undefined)
        }
      })

    /**
     * Group commit: the inputs that queued up while the node was busy — datagrams, API writes,
     * proposals, service answers — are taken together, at most `inputsPerStep` at a time, as one
     * step, so what they leave to persist is one SQLite transaction (one fsync), not one each.
     * Whoever holds the lock steps everything queued; a caller returns once the step that took
     * its inputs is carried out (committed, then its outputs sent).
     */
    const queued: Array<{ readonly input: Input; readonly done: Deferred.Deferred<void> }> = []
    const drain = Effect.suspend(() => {
      if (queued.length === 0) return Effect.void
      const batch = queued.splice(0, inputsPerStep)
      return carry(
        core.handleAll(
          batch.map((entry) => entry.input),
          now(),
          clocks.wallMs(),
        ),
      ).pipe(Effect.ensuring(Effect.forEach(batch, (entry) => Deferred.succeed(entry.done, undefined))))
    })
    const stepAll = (inputs: ReadonlyArray<Input>) =>
      Effect.gen(function* () {
        if (inputs.length === 0) return
        const waits: Array<Deferred.Deferred<void>> = []
        for (const input of inputs) {
          const done = yield* Deferred.make<void>()
          queued.push({ input, done })
          waits.push(done)
        }
        const last = waits[waits.length - 1]!
        while (!Deferred.isDoneUnsafe(last)) yield* lock.withPermits(1)(drain)
      })
    const step = (input: Input) => stepAll([input])

    /** The datagrams that arrived together, decoded, into the queue of the next step. */
    const receive = (chunk: ReadonlyArray<Received>) =>
      Effect.gen(function* () {
        const inputs: Array<Input> = []
        for (const received of chunk) {
          counters.datagramsIn++
          if (received.channel === "cdb") {
            inputs.push({
              _tag: "Datagram",
              bytes: received.bytes,
              via: received.via,
              ...(received.from === undefined ? {} : { from: received.from }),
            })
            continue
          }
          const message = decodeMessage(received.bytes)
          if (Result.isFailure(message)) {
            counters.rejectedMessages++
            yield* Effect.logWarning("monitor message rejected", { detail: message.failure.detail })
            continue
          }
          inputs.push({ _tag: "MonitorMessage", message: message.success })
        }
        yield* stepAll(inputs)
      })

    /** The one timer: sleeps until the composition's next deadline, or until a step asks for an earlier one. */
    const timer = Effect.gen(function* () {
      let firedAtMs = Number.NEGATIVE_INFINITY
      for (;;) {
        const signal = rearm
        // At most one deadline step per millisecond: a deadline that is due again at once waits 1 ms.
        const waitMs = Math.max(armedAtMs - now(), firedAtMs === now() ? 1 : 0)
        if (waitMs > 0) {
          yield* Effect.raceFirst(
            Effect.sleep(`${Math.min(waitMs, 3_600_000)} millis`),
            Deferred.await(signal),
          )
          if (Deferred.isDoneUnsafe(signal)) rearm = yield* Deferred.make<void>()
          if (armedAtMs > now()) continue
        }
        armedAtMs = Number.POSITIVE_INFINITY
        firedAtMs = now()
        counters.deadlineSteps++
        yield* step({ _tag: "DeadlineReached" })
      }
    })

    yield* step({ _tag: "DeadlineReached" })
    const incomingFiber = yield* Stream.runForEachArray(transport.incoming, receive).pipe(Effect.forkScoped)
    const timerFiber = yield* timer.pipe(Effect.forkScoped)
    // The seal clock's lead over the wall clock, kept in the store as it grows, so the next run
    // takes nothing sealed before its start in the cluster's time (core/transport/replay.ts). A
    // store that refuses (a full disk) is tried again at the next look.
    let keptLeadUs = yield* transport.sealLead
    yield* Effect.gen(function* () {
      const leadUs = yield* transport.sealLead
      if (leadUs < keptLeadUs + sealLeadPersistedUs) return
      yield* store.persistSealLead(leadUs)
      keptLeadUs = leadUs
    }).pipe(
      Effect.catch((error) => Effect.logDebug(`seal clock's lead not kept yet: ${error.message}`)),
      Effect.repeat(Schedule.spaced("100 millis")),
      Effect.forkScoped,
    )

    const running: RunningNode = {
      id: config.id,
      write: (writes) =>
        Effect.gen(function* () {
          const mine = ++ticket
          yield* step({ _tag: "Write", ticket: mine, writes })
          const answer = answers.get(mine)
          answers.delete(mine)
          if (answer?._tag === "Written") return
          return yield* Effect.fail(
            new WriteRefused(
              answer?.reason ?? "not-acknowledged",
              answer?.detail ?? "the write was not acknowledged",
            ),
          )
        }),
      decide: (command, timeoutMs) =>
        proposed(decisionWaiters, (mine) => ({ _tag: "Propose", command, ticket: mine }), timeoutMs),
      changeMembership: (change, timeoutMs) =>
        proposed(
          membershipWaiters,
          (mine) => ({ _tag: "ChangeMembership", change, ticket: mine }),
          timeoutMs,
        ),
      watchMembers: (listener) => {
        memberWatchers.push(listener)
        listener(reached)
      },
      setStats: (values) => step({ _tag: "SetStats", values }),
      get: (kind, id) => core.store.get(kind, id),
      list: (kind) =>
        kind === undefined
          ? core.cdbCore
              .allEntries()
              .map(([, entry]) => entry)
              .filter((entry) => entry.value !== null)
          : core.store.list(kind),
      metaOf: (kind, id) => core.store.metaOf(kind, id),
      status: () => {
        const at = now()
        const authority = core.authority(at)
        const members = core.members()
        return {
          node: config.id,
          incarnation,
          members: members.map((member) => ({ id: member.id, state: member.state })),
          primary: core.primary(at),
          isPrimary: authority.isPrimary,
          term: core.electionCore.currentTerm,
          fenced: authority.fenced,
          entries: core.cdbCore.entryCount(),
          alarms: core.openAlarms(),
          health: core.health(at),
          services: core
            .ownServices()
            .map(({ sinceMs, ...service }) => ({ ...service, forMs: at - sinceMs })),
        }
      },
      counters: () => ({ ...counters, ...core.counters, cdb: core.cdbCore.counters }),
      dropped: transport.dropped,
      statsOf: (kind, id) =>
        [...reached.keys()].flatMap((member) => {
          const value = core.store.statsOf(kind, id, member)
          return value === undefined ? [] : [{ node: member, value }]
        }),
      capacities: () => core.capacities(),
      inSync: () => core.authority().caughtUp,
      serviceState: (report) =>
        step({
          _tag: "ServiceState",
          name: report.name,
          state: report.state,
          restarts: report.restarts,
          ...(report.lastError === undefined ? {} : { lastError: report.lastError }),
        }),
      attach: (name, executor) => {
        if (executor === undefined) executors.delete(name)
        else executors.set(name, executor as unknown as ServiceExecutor<ServiceName>)
      },
      console: undefined,
      domains: undefined,
      decisions: () => core.decisionView(),
      observeApplied: (observer) => {
        appliedObserver = observer
      },
    }
    yield* Effect.logInfo("node started", {
      node: config.id,
      incarnation,
      entries: core.cdbCore.entryCount(),
    })
    return {
      running,
      core,
      fibers: [incomingFiber, timerFiber] as ReadonlyArray<Fiber.Fiber<unknown, unknown>>,
    }
  })
