import { describe, expect, it } from "vitest"
import { CdbNode, defaultCdbConfig, type Output } from "../../../core/cdb/node.ts"
import { datagramFrom, threeMembers } from "./datagrams.ts"

const members = threeMembers
const from = datagramFrom
const digest = (sender: string, seqOfA: number) =>
  from(sender, { type: "digest", digestSeq: seqOfA + 1, part: 0, vector: [["a", seqOfA]] })
const value = new Uint8Array(100).fill(7)
let requestId = 0
const put = (node: CdbNode, count: number, nowMs: number, op: "put" | "meta" = "put") =>
  node.handle(
    {
      _tag: "Write",
      writes: Array.from({ length: count }, (_, index) => ({
        requestId: ++requestId,
        op,
        kind: "record",
        id: `k${requestId}-${index}`,
        value,
      })),
    },
    nowMs,
  )
const rejected = (outputs: ReadonlyArray<Output>) =>
  outputs.flatMap((output) => (output._tag === "WriteRejected" ? [output.reason] : []))

describe("CDB flow control", () => {
  const config = { ...defaultCdbConfig, self: "a", members, maxUnconfirmedChanges: 100 }

  it("refuses writes as busy once the slowest live member is too far behind, and takes them again when it catches up", () => {
    const node = new CdbNode(config, 0)
    node.handle(digest("b", 0), 1)
    node.handle(digest("c", 0), 1)
    expect(rejected(put(node, 100, 2))).toEqual([])
    expect(rejected(put(node, 3, 3))).toEqual(["busy", "busy", "busy"])
    // Meta is never held back: fencing and the hypervisor's claims depend on it.
    expect(rejected(put(node, 1, 3, "meta"))).toEqual([])
    // Nor is a write the node marks unthrottled (its services' and alarms': an HA release, say).
    expect(
      rejected(
        node.handle(
          {
            _tag: "Write",
            writes: [
              { requestId: ++requestId, op: "put", kind: "system", id: "vm1", value, unthrottled: true },
            ],
          },
          3,
        ),
      ),
    ).toEqual([])
    node.handle(digest("b", 101), 4)
    expect(rejected(put(node, 1, 5))).toEqual(["busy"])
    node.handle(digest("c", 60), 6)
    expect(rejected(put(node, 1, 7))).toEqual([])
  })

  it("does not wait for a member it no longer hears", () => {
    const node = new CdbNode(config, 0)
    node.handle(digest("b", 0), 1)
    node.handle(digest("c", 0), 1)
    expect(rejected(put(node, 100, 2))).toEqual([])
    expect(rejected(put(node, 1, 3))).toEqual(["busy"])
    // c confirms everything; b falls silent and is declared dead after deadAfterMs.
    node.handle(digest("c", 101), defaultCdbConfig.deadAfterMs)
    node.handle({ _tag: "DeadlineReached" }, defaultCdbConfig.deadAfterMs + 10)
    expect(node.memberState("b")).toBe("dead")
    expect(rejected(put(node, 1, defaultCdbConfig.deadAfterMs + 20))).toEqual([])
  })
})

describe("CDB snapshots", () => {
  it("go out at most snapshotChunksPerTick chunks at a time, paced by the deadline, until all are sent", () => {
    const node = new CdbNode({ ...defaultCdbConfig, self: "a", members, retainChanges: 10 }, 0)
    for (let batch = 0; batch < 20; batch++) put(node, 100, 1)
    const chunksIn = (outputs: ReadonlyArray<Output>) =>
      outputs.filter((output) => output._tag === "Unicast").length
    // b asks for a's stream from the start: the log is gone, so it gets a snapshot.
    const first = node.handle(
      from("b", { type: "nack", target: "a", ranges: [{ origin: "a", from: 1, to: 2000 }] }),
      10,
    )
    expect(chunksIn(first)).toBe(defaultCdbConfig.snapshotChunksPerTick)
    const armed = first.flatMap((output) => (output._tag === "ArmDeadline" ? [output.atMs] : []))
    expect(armed.at(-1)).toBeLessThanOrEqual(10 + defaultCdbConfig.snapshotPaceMs)
    let total = chunksIn(first)
    let nowMs = 10
    for (let tick = 0; tick < 100; tick++) {
      nowMs += defaultCdbConfig.snapshotPaceMs
      const sent = chunksIn(node.handle({ _tag: "DeadlineReached" }, nowMs))
      expect(sent).toBeLessThanOrEqual(defaultCdbConfig.snapshotChunksPerTick)
      total += sent
      if (sent === 0) break
    }
    // 2000 entries of ~130 bytes in 1400-byte datagrams: about ten per chunk.
    expect(total).toBeGreaterThan(defaultCdbConfig.snapshotChunksPerTick * 2)
    expect(total).toBeLessThan(400)
  })
})
