/**
 * The real node's two clocks. Three real nodes (UDP on loopback, SQLite) in this process, each
 * handed a wall clock that steps by minutes, forwards and backwards, every 250 ms — NTP stepping
 * it, an operator setting it, a VM resumed from suspend. Leases, quorum windows and fences run on
 * the monotonic clock, so none of it shows: one primary at a time, in one term, nobody fenced
 * while all are connected; and a node cut off fences within the bound the election promises,
 * neither early nor late. Versions (the hybrid logical clock, the one reader of wall time) keep
 * growing through the backward steps.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import type { NodeConfig } from "../../adapters/node/config.ts"
import { type Clocks, type RunningNode, startNode } from "../../adapters/node/node.ts"
import { layerSqlite } from "../../adapters/store/sqlite.ts"
import { layerUdp } from "../../adapters/transport/udp.ts"
import { compareVersions } from "../../core/cdb/hlc.ts"
import { NodeId } from "../../core/model/ids.ts"
import { defaultElectionTimings, fenceBoundMs } from "../../core/monitor/election.ts"
import type { NodeCore } from "../../core/node/node.ts"
import { eventually } from "../eventually.ts"

const home = mkdtempSync(join(tmpdir(), "acp-clock-"))
const basePort = 47_000 + (process.pid % 1_000) * 4
const keyHex = "ab".repeat(32)
const ids = ["n1", "n2", "n3"].map((id) => Schema.decodeUnknownSync(NodeId)(id))
const members = ids.map((id, index) => ({
  id,
  address: "127.0.0.1",
  port: basePort + index,
  domain: "d1",
  relay: false,
}))

const configOf = (index: number): NodeConfig => ({
  id: ids[index]!,
  cluster: 7,
  domain: "d1",
  relay: false,
  address: "127.0.0.1",
  port: basePort + index,
  group: null,
  groupPort: basePort + 3,
  apiPort: basePort + 10 + index,
  dataDir: join(home, ids[index]!),
  keyHex,
  encrypt: false,
  mtu: 1400,
  synchronous: "NORMAL",
  members,
  agent: null,
})

/** Steps of the wall clock, in minutes, taken in turn every 250 ms (the monotonic clock does not step). */
const steps = [5, -5, 2, -10, 0, 30, -30]
const jumpingClocks = (phase: number): Clocks => {
  const start = performance.now()
  return {
    monotonicMs: () => Math.floor(performance.timeOrigin + performance.now()),
    wallMs: () => {
      const turn = Math.floor((performance.now() - start) / 250) + phase
      return Date.now() + steps[turn % steps.length]! * 60_000
    },
  }
}

interface Started {
  readonly running: RunningNode
  readonly core: NodeCore
  readonly scope: Scope.Closeable
}

const start = (index: number): Promise<Started> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const config = configOf(index)
      const layers = Layer.merge(
        layerSqlite({
          path: join(home, `${config.id}.db`),
          self: config.id,
          retainChanges: 1024,
          synchronous: "NORMAL",
        }),
        layerUdp({
          self: config.id,
          incarnation: 1,
          address: config.address,
          port: config.port,
          group: null,
          groupPort: config.groupPort,
          domain: config.domain,
          peers: members,
          key: Buffer.from(keyHex, "hex"),
          encrypt: false,
          maxPayloadBytes: config.mtu,
          queueCapacity: 4096,
        }),
      )
      const context = yield* Layer.buildWithScope(layers, scope)
      const { running, core } = yield* startNode(config, 1, {}, jumpingClocks(index * 2)).pipe(
        Effect.provide(context),
        Scope.provide(scope),
      )
      return { running, core, scope }
    }),
  )

const stop = (node: Started) => Effect.runPromise(Scope.close(node.scope, Exit.void))

describe("the real node's clocks: the wall clock steps by minutes", () => {
  const nodes: Array<Started> = []
  afterAll(async () => {
    for (const node of nodes) await stop(node).catch(() => undefined)
    rmSync(home, { recursive: true, force: true })
  })

  it("one primary, one term, nobody fenced while all are connected; versions keep growing", async () => {
    for (const index of [0, 1, 2]) nodes.push(await start(index))
    const first = await eventually(() => {
      const primaries = nodes.filter((node) => node.running.status().isPrimary)
      return primaries.length === 1 ? primaries[0]!.running.status() : undefined
    }, 10_000)
    // Six seconds of stepping wall clocks (24 steps of up to 30 minutes each way), sampled every 20 ms.
    const versions: Array<{ ms: number; counter: number; origin: string }> = []
    const stepsBefore = nodes.map((node) => node.running.counters().deadlineSteps)
    let overdueMs = 0
    const until = performance.now() + 6_000
    let samples = 0
    while (performance.now() < until) {
      const statuses = nodes.map((node) => node.running.status())
      expect(statuses.filter((status) => status.isPrimary).length).toBeLessThanOrEqual(1)
      // The driver's one timer is armed at the composition's next deadline: none is ever overdue
      // by more than a scheduling hiccup.
      for (const node of nodes)
        overdueMs = Math.max(overdueMs, performance.timeOrigin + performance.now() - node.core.nextDeadline())
      for (const status of statuses) {
        expect(status.fenced, `${status.node} fenced`).toBe(false)
        expect(status.term, `${status.node}'s term moved`).toBe(first.term)
      }
      if (samples % 10 === 0) {
        const writer = nodes[samples % 3]!.running
        await Effect.runPromise(
          writer.write([{ op: "put", kind: "record", id: "clock", value: new Uint8Array([samples % 256]) }]),
        )
        versions.push(writer.get("record", "clock")!.version)
      }
      samples++
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(samples).toBeGreaterThan(100)
    expect(overdueMs).toBeLessThan(50)
    // Deadline steps come when the cores ask (heartbeats every 100 and 200 ms, repairs): a 5 ms
    // polling loop would take 1,200 in these 6 s.
    const deadlineSteps = nodes.map(
      (node, index) => node.running.counters().deadlineSteps - stepsBefore[index]!,
    )
    console.log(
      `deadline steps in 6 s, per node: ${deadlineSteps.join(", ")}; most overdue: ${overdueMs.toFixed(1)} ms`,
    )
    for (const steps of deadlineSteps) expect(steps).toBeLessThan(300)
    for (let index = 1; index < versions.length; index++)
      expect(compareVersions(versions[index]!, versions[index - 1]!)).toBeGreaterThan(0)
  }, 30_000)

  it("a node cut off (the other two stopped) fences within the bound, not before its quorum window", async () => {
    const survivor = nodes[0]!
    expect(survivor.running.status().fenced).toBe(false)
    const cutAt = performance.now()
    await stop(nodes[1]!)
    await stop(nodes[2]!)
    nodes.splice(1, 2)
    await eventually(() => survivor.running.status().fenced || undefined, 10_000, 5)
    const fencedAfterMs = performance.now() - cutAt
    expect(fencedAfterMs).toBeGreaterThanOrEqual(defaultElectionTimings.quorumWindowMs)
    // The bound, plus a heartbeat's worth for this test's own polling and the stops.
    expect(fencedAfterMs).toBeLessThanOrEqual(fenceBoundMs(defaultElectionTimings) + 250)
    expect(survivor.running.status().isPrimary).toBe(false)
  }, 30_000)
})
