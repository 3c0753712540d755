/**
 * The simulator's events, and what every part of it shares: the clock, the queue, the trace, the
 * nodes and the checkers' sink for violations. `World` (world.ts) owns them and runs the loop.
 */

import type { Message } from "../core/monitor/wire.ts"
import type { ServicePorts } from "../core/node/service.ts"
import type { PoolDefinition } from "../core/ports/storage.ts"
import type { SimNode } from "./host.ts"
import type { EventQueue, TraceHash } from "./prng.ts"
import type { FaultEvent, Scenario, SimOptions } from "./scenario.ts"

/** What the envelope seals into every datagram: who sent it, in which run, with which number. */
export interface Seal {
  readonly sender: string
  readonly incarnation: number
  readonly counter: number
  /** Bookkeeping, not on the wire: when (global µs) its sender last took a peer's datagram. */
  readonly senderHeardUs: number
  /**
   * Bookkeeping, not on the wire: when (global µs) its sender last took a datagram of its
   * receiver (since the sender's process started).
   */
  readonly senderHeardReceiverUs: number
}

export type Delivery =
  | {
      readonly type: "deliver"
      readonly to: number
      readonly bytes: Uint8Array
      readonly via: "domain" | "relay"
      readonly from: string
      readonly seal: Seal
      /** When it went on the wire (global µs): a replay of it is the same event, sent long before. */
      readonly sentUs: number
    }
  | {
      readonly type: "monitor-deliver"
      readonly to: number
      readonly message: Message
      readonly seal: Seal
      readonly sentUs: number
    }

export type Event =
  | Delivery
  | { readonly type: "deadline"; readonly node: number }
  /** The driver drains what queued on the node's socket meanwhile: one step for all of it. */
  | { readonly type: "drain"; readonly node: number; readonly incarnation: number }
  | { readonly type: "write"; readonly node: number }
  /** A decision for the log, proposed on a node (refused unless it is the ready primary). */
  | { readonly type: "decide" }
  | { readonly type: "fault-start"; readonly fault: FaultEvent }
  | { readonly type: "fault-end"; readonly fault: FaultEvent }
  | { readonly type: "heal" }
  | { readonly type: "check" }
  | { readonly type: "replay" }
  | {
      readonly type: "service-input"
      readonly service?: undefined
      readonly node: number
      readonly incarnation: number
      /** The service run the answer is for (the composition drops one for an earlier run). */
      readonly run: number
      /** A driver call's answer, or "observe": the VMM's list of domains, read when this fires. */
      readonly input: ServicePorts["hypervisor"]["input"] | "observe"
    }
  | {
      readonly type: "service-input"
      readonly service: "storage"
      readonly node: number
      readonly incarnation: number
      readonly run: number
      /** A storage call's answer, or "observe": these pools' figures and files, read when this fires. */
      readonly input: ServicePorts["storage"]["input"] | "observe"
      readonly pools: ReadonlyArray<PoolDefinition>
    }
  | { readonly type: "stats"; readonly node: number; readonly incarnation: number }
  | { readonly type: "service-alarm-check"; readonly fault: Extract<FaultEvent, { kind: "service-failure" }> }
  | { readonly type: "create-systems" }
  | { readonly type: "operate" }
  | { readonly type: "operate-storage" }
  | { readonly type: "operate-snapshots" }
  /**
   * A crash inside a storage call, due now unless the node has restarted since (or the heal has
   * come); `waited`: the crash that waited this long for a call comes now without one.
   */
  | {
      readonly type: "crash-now"
      readonly node: number
      readonly incarnation: number
      readonly downMs: number
      readonly waited?: true
    }
  /** The host a crash inside a storage call took down comes back (if nothing else started it). */
  | { readonly type: "restart-now"; readonly node: number; readonly incarnation: number }

/** What every part of the simulator sees of the run. */
export interface Sim {
  readonly options: SimOptions
  readonly scenario: Scenario
  readonly queue: EventQueue<Event>
  readonly trace: TraceHash
  readonly nodes: ReadonlyArray<SimNode>
  readonly byId: ReadonlyMap<string, SimNode>
  readonly voters: ReadonlyArray<string>
  /** Systems the operator creates (0: the hypervisor is out of the loop). */
  readonly systems: number
  /** Virtual time, global µs. */
  readonly nowUs: number
  /** Whether the liveness phase has begun (every fault healed). */
  readonly healed: boolean
  violate(checker: string, message: string): void
}
