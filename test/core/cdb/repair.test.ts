import { describe, expect, it } from "vitest"
import { decode } from "../../../core/cdb/codec.ts"
import { CdbNode, defaultCdbConfig, type Member, type Output } from "../../../core/cdb/node.ts"
import { cluster, datagramFrom, threeMembers } from "./datagrams.ts"

const members = threeMembers
const from = datagramFrom
let digestSeq = 0
const digest = (sender: string, seqOfA: number) =>
  from(sender, { type: "digest", digestSeq: ++digestSeq, part: 0, vector: [["a", seqOfA]] })

/** The repair requests among a step's outputs: to whom, and which ranges. */
const nacks = (outputs: ReadonlyArray<Output>) =>
  outputs.flatMap((output) => {
    if (output._tag !== "Unicast") return []
    const decoded = decode(output.bytes, cluster, defaultCdbConfig.mtu)
    if (!decoded.ok || decoded.datagram.body.type !== "nack") return []
    return decoded.datagram.body.ranges.map((range) => ({ target: output.to, ...range }))
  })

describe("CDB repair when an origin dies", () => {
  it("asks a survivor for what it holds of a dead origin's stream, not the dead origin", () => {
    const c = new CdbNode({ ...defaultCdbConfig, self: "c", members }, 0)
    // a announces 10 changes, none of which reached c; b holds the first 6.
    c.handle(digest("a", 10), 1)
    expect(nacks(c.handle({ _tag: "DeadlineReached" }, 10))).toEqual([
      { target: "a", origin: "a", from: 1, to: 10 },
    ])
    // a falls silent for good; b keeps announcing what it holds.
    let asked: ReturnType<typeof nacks> = []
    for (let nowMs = 200; nowMs <= defaultCdbConfig.deadAfterMs + 1000; nowMs += 200) {
      asked = [...asked, ...nacks(c.handle(digest("b", 6), nowMs))]
      asked = [...asked, ...nacks(c.handle({ _tag: "DeadlineReached" }, nowMs + 10))]
    }
    expect(c.memberState("a")).toBe("dead")
    expect(asked.at(-1)).toEqual({ target: "b", origin: "a", from: 1, to: 6 })
  })
})

describe("CDB snapshots on a lossy link", () => {
  it("sends the same snapshot again when asked again, so the receiver fills in the chunks it lost", () => {
    const two: ReadonlyArray<Member> = ["a", "b"].map((id) => ({ id, domain: "d1", relay: false }))
    // a keeps only a short log: b, which has nothing, can only be caught up by a snapshot.
    const a = new CdbNode({ ...defaultCdbConfig, self: "a", members: two, retainChanges: 8 }, 0)
    const b = new CdbNode({ ...defaultCdbConfig, self: "b", members: two }, 0)
    const value = new Uint8Array(200).fill(1)
    let requestId = 0
    for (let batch = 0; batch < 30; batch++)
      a.handle(
        {
          _tag: "Write",
          writes: Array.from({ length: 100 }, (_, index) => ({
            requestId: ++requestId,
            op: "put" as const,
            kind: "record",
            id: `k${batch}-${index}`,
            value,
          })),
        },
        1,
      )
    let pass = 0
    let delivered = 0
    const carry = (outputs: ReadonlyArray<Output>, to: CdbNode, nowMs: number) => {
      for (const output of outputs) {
        if (output._tag !== "Multicast" && output._tag !== "Unicast") continue
        const decoded = decode(output.bytes, cluster, defaultCdbConfig.mtu)
        // One snapshot chunk in 20 is lost, a different one on each pass.
        if (decoded.ok && decoded.datagram.body.type === "snapshot") {
          delivered++
          if ((decoded.datagram.body.chunk + pass * 7) % 20 === 0) continue
        }
        carry(
          to.handle({ _tag: "DatagramReceived", bytes: output.bytes, via: "domain" }, nowMs),
          to === a ? b : a,
          nowMs,
        )
      }
    }
    for (let nowMs = 10; nowMs < 10_000 && b.appliedUpTo("a") < 3000; nowMs += 5) {
      if (nowMs % 500 === 0) pass++
      carry(a.handle({ _tag: "DeadlineReached" }, nowMs), b, nowMs)
      carry(b.handle({ _tag: "DeadlineReached" }, nowMs), a, nowMs)
    }
    expect(b.appliedUpTo("a")).toBe(3000)
    expect(a.counters.snapshotsResent).toBeGreaterThan(0)
    expect(delivered).toBeGreaterThan(0)
  })
})
