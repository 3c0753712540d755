/**
 * The fault harness's network on loopback: a proxy per directed link carries datagrams to the
 * node they are for, blocks one direction only, drops and duplicates as told, replays what it
 * captured from a fresh source port, and cuts TCP both ways when either direction is blocked.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram"
import { createConnection, createServer, type Server } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanLink, Links } from "../../adapters/vortex/links.ts"
import { eventually } from "../eventually.ts"

const base = 45_000 + (process.pid % 1_000) * 20
const nodes = [
  { id: "a", port: base, agentPort: base + 2 },
  { id: "b", port: base + 1, agentPort: base + 3 },
]

interface Heard {
  readonly text: string
  readonly from: RemoteInfo
}

describe("the fault harness's links", () => {
  const heard: Record<string, Array<Heard>> = { a: [], b: [] }
  const sockets: Array<Socket> = []
  const agents: Array<Server> = []
  let links: Links

  beforeAll(async () => {
    for (const node of nodes) {
      const socket = createSocket({ type: "udp4" })
      socket.on("message", (message, from) => heard[node.id]!.push({ text: message.toString(), from }))
      await new Promise<void>((resolve) => socket.bind(node.port, "127.0.0.1", resolve))
      sockets.push(socket)
      const agent = createServer((connection) => connection.end(`agent ${node.id}`))
      await new Promise<void>((resolve) => agent.listen(node.agentPort, "127.0.0.1", resolve))
      agents.push(agent)
    }
    let draw = 0
    links = new Links(nodes, base + 10, () => (draw++ % 10) / 10)
    await links.start()
  })

  afterAll(() => {
    links.close()
    for (const socket of sockets) socket.close()
    for (const agent of agents) agent.close()
  })

  const send = (from: number, to: string, text: string) =>
    sockets[from]!.send(text, links.ports(nodes[from]!.id, to).udp, "127.0.0.1")
  const texts = (node: string) => heard[node]!.map((entry) => entry.text)

  it("carries a datagram to the node it is for, and blocks one direction only", async () => {
    send(0, "b", "one")
    await eventually(() => texts("b").includes("one"))
    links.set("a", "b", { ...cleanLink, blocked: true })
    send(0, "b", "blocked")
    send(1, "a", "other-way")
    await eventually(() => texts("a").includes("other-way"))
    await eventually(() => links.counters.blocked === 1)
    links.set("a", "b", cleanLink)
    send(0, "b", "two")
    await eventually(() => texts("b").includes("two"))
    expect(texts("b")).toEqual(["one", "two"])
  })

  it("drops and duplicates as told", async () => {
    links.set("a", "b", { ...cleanLink, lossPermille: 1000 })
    const dropped = links.counters.dropped
    send(0, "b", "lost")
    await eventually(() => links.counters.dropped === dropped + 1)
    links.set("a", "b", { ...cleanLink, duplicatePermille: 1000 })
    send(0, "b", "twice")
    await eventually(() => texts("b").filter((text) => text === "twice").length === 2)
    links.set("a", "b", cleanLink)
    expect(texts("b")).not.toContain("lost")
  })

  it("replays what a sender sent from a fresh source port", async () => {
    const proxyPort = links.ports("a", "b").udp
    const before = heard.b!.length
    const sent = await links.replay("a")
    expect(sent).toBeGreaterThanOrEqual(4)
    await eventually(() => heard.b!.length >= before + sent)
    const replayed = heard.b!.slice(before)
    expect(replayed.map((entry) => entry.text)).toContain("one")
    expect(new Set(replayed.map((entry) => entry.from.port)).size).toBe(1)
    expect(replayed[0]!.from.port).not.toBe(proxyPort)
  })

  it("carries TCP to the agent, and refuses it while either direction is blocked", async () => {
    const dial = (port: number) =>
      new Promise<string>((resolve) => {
        let text = ""
        const connection = createConnection({ host: "127.0.0.1", port })
        connection.on("data", (chunk) => {
          text += chunk
        })
        connection.on("close", () => resolve(text))
        connection.on("error", () => resolve(text))
      })
    const port = links.ports("a", "b").tcp
    expect(await dial(port)).toBe("agent b")
    links.set("b", "a", { ...cleanLink, blocked: true })
    expect(await dial(port)).toBe("")
    expect(links.counters.tcpRefused).toBe(1)
    links.heal()
    expect(await dial(port)).toBe("agent b")
  })
})
