/**
 * How a service plugs into a node (`node.ts`): one small interface, the same for the hypervisor
 * now and storage, network, the balancer and accelerators later. A service core is sans-I/O, like
 * every core: it is stepped with a context (what its node knows now) and answers with CDB writes
 * (which its node makes, holds and retries when refused), effects for its driver port (a VMM
 * call; the port's answer comes back as the service's next input), events for logs and
 * checkers, and its next deadline. On the primary it may also run a periodic round of
 * cluster-wide decisions (the hypervisor's HA moves), which it proposes to the decision log and
 * reads back, once committed, in what is decided.
 *
 * Adding a service touches `ServicePorts` below, its core, one real adapter (the port's
 * executor) and one simulated port: never the node's drivers.
 */
import type { SpecEntry } from "../cdb/durable.ts"
import type { DecidedState, DecisionCommand } from "../decision/state.ts"
import type { Input as HypervisorInput, Output as HypervisorOutput } from "../hypervisor/hypervisor.ts"
import type { NodeCapacity } from "../hypervisor/scheduler.ts"
import type { Input as StorageInput, Output as StorageOutput } from "../storage/storage.ts"
import type { ServiceWrite } from "./pending.ts"

/** Per service: the inputs its port answers with and the effects it asks of its port. */
export interface ServicePorts {
  readonly hypervisor: {
    readonly input: Extract<HypervisorInput, { readonly _tag: "Observed" | "CallDone" }>
    readonly effect: Extract<HypervisorOutput, { readonly _tag: "Call" | "Observe" }>
  }
  readonly storage: {
    readonly input: Extract<
      StorageInput,
      { readonly _tag: "Observed" | "CallDone" | "DevicesObserved" | "SharesApplied" }
    >
    readonly effect: Extract<
      StorageOutput,
      { readonly _tag: "Call" | "Observe" | "ObserveDevices" | "ApplyShares" }
    >
  }
}

export type ServiceName = keyof ServicePorts

/** What a node's store holds, as a service reads it. */
export interface StoreView {
  readonly get: (kind: string, id: string) => SpecEntry | undefined
  readonly list: (kind: string) => ReadonlyArray<SpecEntry>
  readonly metaOf: (
    kind: string,
    id: string,
  ) => ReadonlyArray<{ readonly node: string; readonly value: Uint8Array }>
  readonly statsOf: (kind: string, id: string, node: string) => Uint8Array | undefined
  /** Whether the store holds a tombstone for the object: it was deleted (`get` and `list` skip those). */
  readonly deleted: (kind: string, id: string) => boolean
}

/** What the monitor says, at the step's time (the node's monotonic clock). */
export interface Authority {
  readonly leaderContactMs: number
  readonly fenced: boolean
  readonly isPrimary: boolean
  readonly primarySinceMs: number
  readonly quorumWindowMs: number
  readonly lastHeardMs: (node: string) => number
  /** The store: no known gap, and digests from a majority within the caught-up window. */
  readonly caughtUp: boolean
  /**
   * The decision log: applied as far as the primary's pings had committed it (on the primary:
   * an entry of its term committed, and everything committed applied). What is decided may be
   * acted on only then (`NodeDecisions.caughtUp`).
   */
  readonly decisionsCaughtUp: boolean
}

export interface ServiceContext {
  readonly self: string
  readonly nowMs: number
  readonly store: StoreView
  readonly authority: Authority
  /** What the decision log has granted, as this node has applied it. */
  readonly decided: DecidedState
  /** The nodes as the scheduler sees them (membership from the monitor, capacity from stats). */
  readonly nodes: () => ReadonlyArray<NodeCapacity>
}

/** Something a service did that a log or a checker wants to know (an HA move). */
export interface ServiceEvent {
  readonly level: "info" | "warning"
  readonly message: string
  readonly detail: Readonly<Record<string, string | number>>
  /** For the simulator's counters: what kind of event, e.g. "ha-move". */
  readonly kind: string
}

export interface ServiceStep<Effect> {
  readonly writes: ReadonlyArray<ServiceWrite>
  readonly effects: ReadonlyArray<Effect>
  readonly events: ReadonlyArray<ServiceEvent>
  /** The next time it wants a `DeadlineReached` (monotonic ms; Infinity for none). */
  readonly deadlineMs: number
  /** Decisions for the log (on the primary, from its round): what comes of them is read in `decided`. */
  readonly proposals?: ReadonlyArray<DecisionCommand>
}

export type ServiceInput<Name extends ServiceName> =
  | ServicePorts[Name]["input"]
  | { readonly _tag: "ViewChanged" }
  | { readonly _tag: "DeadlineReached" }

export interface ServiceCore<Name extends ServiceName> {
  /** CDB kinds whose changes make it look at the store again (after the node's view delay). */
  readonly reads: ReadonlySet<string>
  step(input: ServiceInput<Name>, context: ServiceContext): ServiceStep<ServicePorts[Name]["effect"]>
  /** How often the primary runs `primaryRound`, if the service has one. */
  readonly primaryEveryMs?: number
  primaryRound?(context: ServiceContext): ServiceStep<ServicePorts[Name]["effect"]>
}

/** Makes a service's core when it starts (again): its state starts over with each run. */
export type ServiceFactory<Name extends ServiceName> = (self: string, nowMs: number) => ServiceCore<Name>

export type ServiceFactories = { readonly [Name in ServiceName]?: ServiceFactory<Name> }
