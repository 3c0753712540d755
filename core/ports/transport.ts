/**
 * The transport port: how a node's datagrams reach the others. An L2 domain is one multicast
 * group (or, without multicast, a unicast peer list); relays reach other domains over L3.
 * Implementations authenticate every datagram with the cluster key before it is handed in,
 * so the core only ever sees bytes from members of its cluster.
 */
import { Context, type Effect, Schema, type Stream } from "effect"

export type Destination =
  | { readonly _tag: "Domain" }
  | { readonly _tag: "Node"; readonly node: string }
  | { readonly _tag: "Relay"; readonly node: string }

/** What a datagram carries: CDB sync, or the monitor's election messages. */
export type Channel = "cdb" | "monitor"

export interface Received {
  readonly channel: Channel
  readonly bytes: Uint8Array
  readonly via: "domain" | "relay"
  /** The relay it came from, for datagrams that crossed an L3 link. */
  readonly from?: string
}

export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: Schema.Literals(["bind-failed", "send-failed", "unknown-peer", "closed"]),
  detail: Schema.String,
}) {}

/** Why an incoming datagram was dropped before the core saw it. */
export type DropReason =
  | "unauthenticated"
  | "unencrypted"
  | "replayed"
  | "malformed-envelope"
  | "oversized"
  /** Sealed for another node or another domain (bridged across a partition, say). */
  | "misdirected"

/** A member as the transport reaches it: its unicast address and port, its domain, whether it relays. */
export interface Peer {
  readonly id: string
  readonly address: string
  readonly port: number
  readonly domain: string
  readonly relay: boolean
}

export class Transport extends Context.Service<
  Transport,
  {
    readonly send: (
      destination: Destination,
      channel: Channel,
      bytes: Uint8Array,
    ) => Effect.Effect<void, TransportError>
    readonly incoming: Stream.Stream<Received>
    /** The members to reach now (a change of membership): each with where it listens. */
    readonly setPeers: (peers: ReadonlyArray<Peer>) => void
    /** Datagrams dropped by the authentication layer, by reason (for metrics and tests). */
    readonly dropped: Effect.Effect<Readonly<Record<DropReason, number>>>
    /**
     * How far this node's seal clock runs ahead of its wall clock (µs): the largest lead taken
     * from a peer. Its store keeps it, so a restart takes nothing sealed while it was down.
     */
    readonly sealLead: Effect.Effect<number>
  }
>()("acp/core/ports/Transport") {}
