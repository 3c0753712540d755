/**
 * The fault harness's network: one UDP proxy per directed link between real node processes on
 * loopback (this kernel has no netem), and one TCP proxy per directed link for their agents. A
 * node's config names, for each peer, the proxy of its link to that peer, so everything a node
 * sends another passes here, where the harness drops, delays (with jitter, so datagrams overtake
 * each other), duplicates and blocks it, one direction at a time. It also keeps the latest
 * datagrams of every link, which the replay adversary sends again from fresh source ports (what an
 * attacker on the wire does; the envelope does not authenticate the socket address).
 *
 * TCP links are blocked when either direction of the UDP link is (a connection needs both ways)
 * and carried unharmed otherwise: TCP would hide loss and delay behind its own retransmissions.
 */
import { createSocket, type Socket } from "node:dgram"
import { createConnection, createServer, type Server, type Socket as TcpSocket } from "node:net"

export interface LinkFaults {
  readonly lossPermille: number
  readonly delayMs: number
  readonly jitterMs: number
  readonly duplicatePermille: number
  readonly blocked: boolean
}

export const cleanLink: LinkFaults = {
  lossPermille: 0,
  delayMs: 0,
  jitterMs: 0,
  duplicatePermille: 0,
  blocked: false,
}

export interface LinkCounters {
  forwarded: number
  dropped: number
  blocked: number
  duplicated: number
  replayed: number
  tcpRefused: number
}

export interface LinkEndpoint {
  readonly id: string
  /** The node's own unicast port and its agent's port, on 127.0.0.1. */
  readonly port: number
  readonly agentPort: number
}

interface Link {
  readonly from: string
  readonly to: string
  readonly socket: Socket
  readonly server: Server
  readonly connections: Set<TcpSocket>
  faults: LinkFaults
  /** The latest datagrams, oldest first (a ring of `captureLimit`). */
  readonly captured: Array<Buffer>
}

const captureLimit = 256

/** A random source for the network's own draws (loss, jitter); the harness seeds it. */
export type Draw = () => number

export class Links {
  private readonly links = new Map<string, Link>()
  private readonly endpoints: ReadonlyMap<string, LinkEndpoint>
  private readonly portOf: (from: number, to: number) => { udp: number; tcp: number }
  private readonly random: Draw
  private readonly timers = new Set<NodeJS.Timeout>()
  readonly counters: LinkCounters = {
    forwarded: 0,
    dropped: 0,
    blocked: 0,
    duplicated: 0,
    replayed: 0,
    tcpRefused: 0,
  }

  /** `basePort`: the first of the 2·N·(N−1) ports the proxies listen on. */
  constructor(endpoints: ReadonlyArray<LinkEndpoint>, basePort: number, random: Draw) {
    this.endpoints = new Map(endpoints.map((endpoint) => [endpoint.id, endpoint]))
    const count = endpoints.length
    this.portOf = (from, to) => {
      const index = from * count + to
      return { udp: basePort + index, tcp: basePort + count * count + index }
    }
    this.random = random
  }

  private indexOf(id: string): number {
    return [...this.endpoints.keys()].indexOf(id)
  }

  /** The ports node `from` must use to reach `to`: its config's member entry for `to`. */
  ports(from: string, to: string): { readonly udp: number; readonly tcp: number } {
    return this.portOf(this.indexOf(from), this.indexOf(to))
  }

  async start(): Promise<void> {
    for (const from of this.endpoints.values())
      for (const to of this.endpoints.values()) {
        if (from.id === to.id) continue
        const ports = this.ports(from.id, to.id)
        const socket = createSocket({ type: "udp4" })
        await new Promise<void>((resolve, reject) => {
          socket.once("error", reject)
          socket.bind(ports.udp, "127.0.0.1", () => {
            socket.off("error", reject)
            resolve()
          })
        })
        const link: Link = {
          from: from.id,
          to: to.id,
          socket,
          server: createServer(),
          connections: new Set(),
          faults: cleanLink,
          captured: [],
        }
        socket.on("message", (datagram) => this.carry(link, datagram, to.port))
        link.server.on("connection", (client) => this.connect(link, client, to.agentPort))
        await new Promise<void>((resolve, reject) => {
          link.server.once("error", reject)
          link.server.listen(ports.tcp, "127.0.0.1", () => {
            link.server.off("error", reject)
            resolve()
          })
        })
        this.links.set(`${from.id}>${to.id}`, link)
      }
  }

  private later(ms: number, action: () => void): void {
    if (ms <= 0) {
      action()
      return
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      action()
    }, ms)
    this.timers.add(timer)
  }

  private carry(link: Link, datagram: Buffer, port: number): void {
    link.captured.push(datagram)
    if (link.captured.length > captureLimit) link.captured.shift()
    const faults = link.faults
    if (faults.blocked) {
      this.counters.blocked++
      return
    }
    if (this.random() * 1000 < faults.lossPermille) {
      this.counters.dropped++
      return
    }
    const copies = this.random() * 1000 < faults.duplicatePermille ? 2 : 1
    if (copies === 2) this.counters.duplicated++
    for (let copy = 0; copy < copies; copy++) {
      const delay = faults.delayMs + Math.floor(this.random() * (faults.jitterMs + 1))
      this.later(delay, () => {
        this.counters.forwarded++
        link.socket.send(datagram, port, "127.0.0.1")
      })
    }
  }

  private tcpBlocked(link: Link): boolean {
    return link.faults.blocked || this.links.get(`${link.to}>${link.from}`)?.faults.blocked === true
  }

  private connect(link: Link, client: TcpSocket, agentPort: number): void {
    if (this.tcpBlocked(link)) {
      this.counters.tcpRefused++
      client.destroy()
      return
    }
    const upstream = createConnection({ host: "127.0.0.1", port: agentPort })
    const close = () => {
      client.destroy()
      upstream.destroy()
      link.connections.delete(client)
    }
    link.connections.add(client)
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    client.pipe(upstream)
    upstream.pipe(client)
  }

  /** Sets the faults of the link `from` → `to`; a block also cuts the TCP connections of both directions. */
  set(from: string, to: string, faults: LinkFaults): void {
    const link = this.links.get(`${from}>${to}`)
    if (link === undefined) throw new Error(`no link ${from} > ${to}`)
    link.faults = faults
    if (faults.blocked) {
      for (const client of link.connections) client.destroy()
      const back = this.links.get(`${to}>${from}`)
      if (back !== undefined) for (const client of back.connections) client.destroy()
    }
  }

  /** Every link back to clean. */
  heal(): void {
    for (const link of this.links.values()) link.faults = cleanLink
  }

  /**
   * Sends again, from a fresh socket (a new source port), the datagrams `sender` sent lately on
   * each of its links, to the node each was for. Returns how many it sent.
   */
  async replay(sender: string): Promise<number> {
    const socket = createSocket({ type: "udp4" })
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve))
    const batch: Array<{ datagram: Buffer; port: number }> = []
    for (const link of this.links.values()) {
      if (link.from !== sender) continue
      const port = this.endpoints.get(link.to)!.port
      for (const datagram of link.captured) batch.push({ datagram, port })
    }
    this.counters.replayed += batch.length
    // Sends on one socket are taken in order: once the last is sent, the socket may close.
    await new Promise<void>((resolve) => {
      if (batch.length === 0) resolve()
      for (const [index, { datagram, port }] of batch.entries())
        socket.send(datagram, port, "127.0.0.1", index === batch.length - 1 ? () => resolve() : undefined)
    })
    socket.close()
    const sent = batch.length
    return sent
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    for (const link of this.links.values()) {
      link.socket.close()
      for (const client of link.connections) client.destroy()
      link.server.close()
    }
    this.links.clear()
  }
}
