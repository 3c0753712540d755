import { describe, expect, it } from "vitest"
import { type Body, decode, encode } from "../../../core/cdb/codec.ts"
import { CdbNode, defaultCdbConfig, type Member, type Output } from "../../../core/cdb/node.ts"

const members: ReadonlyArray<Member> = ["a", "b", "c"].map((id) => ({ id, domain: "d1", relay: false }))
const cluster = defaultCdbConfig.cluster
const from = (sender: string, body: Body) =>
  ({
    _tag: "DatagramReceived",
    bytes: encode({ cluster, sender, incarnation: 0, body }),
    via: "domain",
  }) as const
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
