/**
 * L3 relay links over TLS (seed 000's intra-cluster sync): each relay keeps one TLS 1.3
 * connection to every other domain's relay, both sides proving themselves with certificates of
 * the cluster CA (the peer is the certificate's CN). The relay with the lower id dials; the other
 * listens. Datagrams travel as frames, `length:u16 channel:u8 payload`; TLS authenticates and
 * encrypts them, so no envelope is needed. A frame for a peer with no link up is dropped: the
 * CDB's digests and repairs make up for it once the link is back. Dialing retries with back-off.
 */
import { connect, createServer, type Server, type TLSSocket } from "node:tls"
import type { Channel } from "../../core/ports/transport.ts"

export interface RelayPeer {
  readonly id: string
  readonly address: string
  readonly port: number
}

export interface RelayOptions {
  readonly self: string
  readonly address: string
  readonly port: number
  readonly peers: ReadonlyArray<RelayPeer>
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer
  readonly onFrame: (from: string, channel: Channel, payload: Uint8Array) => void
  readonly onLog: (message: string) => void
}

const channelCodes: Record<Channel, number> = { cdb: 1, monitor: 2 }
const maxBackoffMs = 5_000

export class RelayLinks {
  private readonly links = new Map<string, TLSSocket>()
  private readonly server: Server
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private closed = false
  private readonly options: RelayOptions

  constructor(options: RelayOptions) {
    this.options = options
    this.server = createServer(
      {
        cert: options.cert,
        key: options.key,
        ca: options.ca,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: "TLSv1.3",
      },
      (socket) => {
        const peer = this.peerOf(socket)
        if (peer === undefined) {
          options.onLog(`relay: refused a connection from a certificate that names no peer relay`)
          socket.destroy()
          return
        }
        this.adopt(peer, socket)
      },
    )
    this.server.on("error", (error) => options.onLog(`relay server: ${error.message}`))
    this.server.listen(options.port, options.address)
    for (const peer of options.peers) if (options.self < peer.id) this.dial(peer, 100)
  }

  send(peer: string, channel: Channel, payload: Uint8Array): void {
    const socket = this.links.get(peer)
    // No link up (or an impossible size): dropped; the CDB repairs it once the link is back.
    if (socket === undefined || payload.length > 0xffff - 1) return
    const frame = Buffer.allocUnsafe(3 + payload.length)
    frame.writeUInt16BE(payload.length + 1, 0)
    frame[2] = channelCodes[channel]
    frame.set(payload, 3)
    socket.write(frame)
  }

  close(): void {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    for (const socket of this.links.values()) socket.destroy()
    this.server.close()
  }

  private peerOf(socket: TLSSocket): RelayPeer | undefined {
    const name = socket.getPeerCertificate()?.subject?.CN
    return this.options.peers.find((peer) => peer.id === name)
  }

  private dial(peer: RelayPeer, delayMs: number): void {
    if (this.closed) return
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      const socket = connect({
        host: peer.address,
        port: peer.port,
        cert: this.options.cert,
        key: this.options.key,
        ca: this.options.ca,
        minVersion: "TLSv1.3",
        checkServerIdentity: () => undefined,
      })
      socket.once("secureConnect", () => {
        if (this.peerOf(socket)?.id !== peer.id) {
          this.options.onLog(`relay: ${peer.address}:${peer.port} is not ${peer.id}`)
          socket.destroy()
          return
        }
        this.adopt(peer, socket)
      })
      socket.once("error", () => socket.destroy())
      socket.once("close", () => {
        if (this.links.get(peer.id) === socket) this.links.delete(peer.id)
        this.dial(peer, Math.min(maxBackoffMs, delayMs * 2))
      })
    }, delayMs)
    this.timers.add(timer)
  }

  private adopt(peer: RelayPeer, socket: TLSSocket): void {
    this.links.get(peer.id)?.destroy()
    this.links.set(peer.id, socket)
    this.options.onLog(`relay link to ${peer.id} up`)
    let pending: Buffer = Buffer.alloc(0)
    socket.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0)
        if (pending.length < 2 + length) break
        const code = pending[2]
        const channel: Channel | undefined = code === 1 ? "cdb" : code === 2 ? "monitor" : undefined
        if (channel !== undefined && length >= 1)
          this.options.onFrame(peer.id, channel, pending.subarray(3, 2 + length))
        pending = pending.subarray(2 + length)
      }
    })
    socket.on("close", () => {
      if (this.links.get(peer.id) === socket) this.links.delete(peer.id)
    })
    socket.on("error", () => socket.destroy())
  }
}
