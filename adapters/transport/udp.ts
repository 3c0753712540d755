/**
 * The transport on UDP (`node:dgram`). Each node has two sockets: a multicast socket joined to
 * its domain's group (shared port, `reuseAddr`, so several nodes can share a host) and a unicast
 * socket on its own port, from which it sends everything, so receivers can tell senders apart.
 * Without multicast (`group: null`) a domain send goes to every peer of the domain in turn.
 * Every datagram is sealed and checked by `envelope.ts` before the core sees it.
 */

import { createSocket, type Socket } from "node:dgram"
import { Effect, Layer, Queue, Stream } from "effect"
import {
  type Channel,
  type Destination,
  type DropReason,
  type Peer,
  type Received,
  Transport,
  TransportError,
} from "../../core/ports/transport.ts"
import { clockOffsetToleratedMs } from "../../core/transport/replay.ts"
import { Opener, Sealer, toDomain, toNode } from "./envelope.ts"
import { RelayLinks, type RelayOptions } from "./relay.ts"

export interface UdpOptions {
  readonly self: string
  /** This run's durable restart count, sealed into every datagram. */
  readonly incarnation: number
  /**
   * The lead over the wall clock this node's seal clock had when it last ran (µs; its store keeps
   * it, `recordStart`): this run seals, and takes datagrams sealed, from its wall clock plus it.
   */
  readonly sealLeadUs?: number
  readonly address: string
  readonly port: number
  /** The domain's multicast group, or null to send to each peer of the domain by unicast. */
  readonly group: string | null
  readonly groupPort: number
  readonly domain: string
  readonly peers: ReadonlyArray<Peer>
  readonly key: Uint8Array
  /** Encrypt every datagram (AES-256-GCM) and drop any that is only authenticated. */
  readonly encrypt: boolean
  readonly maxPayloadBytes: number
  /** TLS links to the other domains' relays, for a relay node; without them relay traffic goes by UDP. */
  readonly relay?: Omit<RelayOptions, "self" | "address" | "onFrame" | "onLog">
  /** Incoming datagrams buffered before the driver takes them; beyond it they are dropped (and repaired later). */
  readonly queueCapacity: number
}

const bind = (socket: Socket, port: number, address: string | undefined) =>
  Effect.callback<void, TransportError>((resume) => {
    const onError = (error: Error) =>
      resume(
        Effect.fail(
          new TransportError({
            reason: "bind-failed",
            detail: `${address ?? "*"}:${port}: ${error.message}`,
          }),
        ),
      )
    socket.once("error", onError)
    socket.bind(port, address, () => {
      socket.off("error", onError)
      resume(Effect.void)
    })
  })

/**
 * Socket buffers of 8 MiB (the kernel caps them at net.core.rmem_max/wmem_max): with Linux's
 * default 208 KiB a burst of datagrams overflows while the event loop is busy, and every loss
 * costs a repair round trip. Measured on the peers' raw multicast bench: 19–28k lossless
 * 1400-byte datagrams/s with the default, 62–68k with 8 MiB.
 */
const socketBufferBytes = 8 * 1024 * 1024
const enlargeBuffers = (socket: Socket) => {
  try {
    socket.setRecvBufferSize(socketBufferBytes)
    socket.setSendBufferSize(socketBufferBytes)
  } catch {
    // Not fatal: the node works with the kernel's defaults, only with more repairs under load.
  }
}

export { clockOffsetToleratedMs } from "../../core/transport/replay.ts"

export const layerUdp = (options: UdpOptions) =>
  Layer.effect(
    Transport,
    Effect.gen(function* () {
      const queue = yield* Queue.dropping<Received>(options.queueCapacity)
      const dropped: Record<DropReason, number> = {
        unauthenticated: 0,
        unencrypted: 0,
        replayed: 0,
        "malformed-envelope": 0,
        oversized: 0,
        misdirected: 0,
      }
      // The envelope's counter is a hybrid clock (the wall clock in µs plus the lead taken from
      // peers, never below what it took), and a sender's first datagram must be sealed after this
      // process started in the cluster's time, less the offset clocks may have.
      const wallMicros = () => Date.now() * 1000
      const leadUs = options.sealLeadUs ?? 0
      const sealer = new Sealer(
        options.key,
        options.self,
        options.incarnation,
        wallMicros(),
        options.encrypt,
        wallMicros,
        leadUs,
      )
      const opener = new Opener(
        options.key,
        options.maxPayloadBytes,
        options.encrypt,
        wallMicros() + leadUs,
        clockOffsetToleratedMs * 1000,
        [toNode(options.self), toDomain(options.domain)],
      )
      // The peers as the decision log's membership says them now (`setPeers`): the config's at first.
      let peers = options.peers
      let byId = new Map(peers.map((peer) => [peer.id, peer]))
      const self = options.peers.find((peer) => peer.id === options.self)
      const isRelay = self?.relay === true

      const onMessage = (message: Buffer) => {
        const opened = opener.open(message)
        if (!opened.ok) {
          dropped[opened.reason]++
          return
        }
        // Who sent it is what the seal says, never the socket address (which anyone can choose).
        if (opened.sender === options.self) return
        // Our counter keeps up with the cluster's, whatever our wall clock says.
        sealer.observe(opened.counter)
        const peer = byId.get(opened.sender)
        const relayed = isRelay && peer?.relay === true && peer.domain !== options.domain
        Queue.offerUnsafe(queue, {
          channel: opened.channel,
          bytes: opened.payload,
          via: relayed ? "relay" : "domain",
          ...(relayed ? { from: peer.id } : {}),
        })
      }

      const relayOptions = options.relay
      const links =
        isRelay && relayOptions !== undefined
          ? yield* Effect.acquireRelease(
              Effect.sync(
                () =>
                  new RelayLinks({
                    ...relayOptions,
                    self: options.self,
                    address: options.address,
                    onFrame: (from, channel, payload) => {
                      Queue.offerUnsafe(queue, { channel, bytes: payload, via: "relay", from })
                    },
                    onLog: (message) =>
                      process.stderr.write(
                        `${JSON.stringify({ message, level: "INFO", timestamp: new Date().toISOString() })}\n`,
                      ),
                  }),
              ),
              (relayLinks) => Effect.sync(() => relayLinks.close()),
            )
          : undefined

      const unicast = yield* Effect.acquireRelease(
        Effect.sync(() => createSocket({ type: "udp4" })),
        (socket) => Effect.sync(() => socket.close()),
      )
      yield* bind(unicast, options.port, options.address)
      enlargeBuffers(unicast)
      unicast.on("message", onMessage)
      if (options.group !== null) {
        const group = options.group
        const multicast = yield* Effect.acquireRelease(
          Effect.sync(() => createSocket({ type: "udp4", reuseAddr: true })),
          (socket) => Effect.sync(() => socket.close()),
        )
        yield* bind(multicast, options.groupPort, undefined)
        enlargeBuffers(multicast)
        yield* Effect.try({
          try: () => {
            multicast.addMembership(group, options.address)
            unicast.setMulticastInterface(options.address)
            unicast.setMulticastTTL(1)
            unicast.setMulticastLoopback(true)
          },
          catch: (error) =>
            new TransportError({
              reason: "bind-failed",
              detail: `joining ${group} on ${options.address}: ${String(error)}`,
            }),
        })
        multicast.on("message", onMessage)
      }

      // Sent without waiting for the kernel's answer: waiting for each datagram's callback costs
      // an event-loop turn per datagram (the sync benchmark's writer sat idle 40% of the time on
      // it). A datagram the kernel refuses is a lost datagram, which the CDB repairs like any
      // other loss; the refusal is logged (at most every 5 s) rather than failing the caller.
      let lastSendErrorMs = Number.NEGATIVE_INFINITY
      const onSent = (address: string, port: number) => (error: Error | null) => {
        if (error === null || performance.now() - lastSendErrorMs < 5_000) return
        lastSendErrorMs = performance.now()
        process.stderr.write(
          `${JSON.stringify({ message: "send failed", destination: `${address}:${port}`, detail: error.message, level: "WARN", timestamp: new Date().toISOString() })}\n`,
        )
      }
      const sendTo = (address: string, port: number, datagram: Buffer) =>
        Effect.try({
          try: () => unicast.send(datagram, port, address, onSent(address, port)),
          catch: (error) =>
            new TransportError({ reason: "send-failed", detail: `${address}:${port}: ${String(error)}` }),
        })

      const peerOf = (id: string) => {
        const peer = byId.get(id)
        return peer === undefined
          ? Effect.fail(new TransportError({ reason: "unknown-peer", detail: id }))
          : Effect.succeed(peer)
      }

      const send = (destination: Destination, channel: Channel, bytes: Uint8Array) => {
        const datagram = sealer.seal(
          channel,
          bytes,
          destination._tag === "Domain" ? toDomain(options.domain) : toNode(destination.node),
        )
        switch (destination._tag) {
          case "Domain":
            if (options.group !== null) return sendTo(options.group, options.groupPort, datagram)
            return Effect.forEach(
              peers.filter((peer) => peer.domain === options.domain && peer.id !== options.self),
              (peer) => sendTo(peer.address, peer.port, datagram),
              { discard: true },
            )
          case "Relay":
            if (links !== undefined) {
              links.send(destination.node, channel, bytes)
              return Effect.void
            }
            return Effect.flatMap(peerOf(destination.node), (peer) =>
              sendTo(peer.address, peer.port, datagram),
            )
          case "Node":
            return Effect.flatMap(peerOf(destination.node), (peer) =>
              sendTo(peer.address, peer.port, datagram),
            )
        }
      }

      return Transport.of({
        send,
        setPeers: (next) => {
          peers = next
          byId = new Map(peers.map((peer) => [peer.id, peer]))
        },
        incoming: Stream.fromQueue(queue),
        dropped: Effect.sync(() => ({ ...dropped })),
        sealLead: Effect.sync(() => sealer.leadMicros),
      })
    }),
  )
