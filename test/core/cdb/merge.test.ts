import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { type Change, encode } from "../../../core/cdb/codec.ts"
import { entryKey } from "../../../core/cdb/durable.ts"
import { compareVersions } from "../../../core/cdb/hlc.ts"
import { CdbNode, defaultCdbConfig, type Member } from "../../../core/cdb/node.ts"
import { changeStreams } from "./streams.ts"

const members: ReadonlyArray<Member> = ["a", "b", "c", "x", "y"].map((id) => ({
  id,
  domain: "d1",
  relay: false,
}))
const cluster = defaultCdbConfig.cluster

/** Streams from origins a, b, c: each origin's changes numbered 1..n, on a few shared keys. */
const streams = changeStreams({
  origins: ["a", "b", "c"],
  ops: ["put", "put", "delete", "meta"],
  minLength: 1,
})

const datagramOf = (change: Change) =>
  encode({
    cluster,
    sender: change.origin,
    incarnation: 0,
    body: { type: "changes", sections: [{ origin: change.origin, changes: [change] }] },
  })

/** Delivers the changes one datagram each, in the given order, to a fresh node. */
const receiver = (self: string, changes: ReadonlyArray<Change>): CdbNode => {
  const node = new CdbNode({ ...defaultCdbConfig, self, members }, 0)
  for (const change of changes)
    node.handle({ _tag: "DatagramReceived", bytes: datagramOf(change), via: "domain" }, 1)
  return node
}

/** Any order of the same changes, with some delivered twice. */
const reordering = (changes: ReadonlyArray<Change>) =>
  fc
    .tuple(
      fc.shuffledSubarray([...changes], { minLength: changes.length, maxLength: changes.length }),
      fc.array(fc.nat(changes.length - 1), { maxLength: 10 }),
    )
    .map(([shuffled, duplicates]) => {
      const out = [...shuffled]
      for (const index of duplicates) out.splice(index % (out.length + 1), 0, changes[index]!)
      return out
    })

describe("cdb merge", () => {
  it("any two nodes that received the same changes, in any order and with any duplication, hold identical stores", () => {
    fc.assert(
      fc.property(
        streams.chain((changes) => fc.tuple(fc.constant(changes), reordering(changes), reordering(changes))),
        ([changes, first, second]) => {
          const x = receiver("x", first)
          const y = receiver("y", second)
          expect(x.allEntries()).toEqual(y.allEntries())
          expect(x.fingerprint()).toBe(y.fingerprint())
          expect(x.vector()).toEqual(y.vector())
          for (const origin of ["a", "b", "c"]) {
            expect(x.appliedUpTo(origin)).toBe(changes.filter((change) => change.origin === origin).length)
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it("deletes win or lose identically everywhere: each key holds its highest-versioned change", () => {
    fc.assert(
      fc.property(
        streams.chain((changes) => fc.tuple(fc.constant(changes), reordering(changes))),
        ([changes, order]) => {
          const node = receiver("x", order)
          for (const id of ["k1", "k2", "k3"]) {
            const writes = changes.filter((change) => change.id === id && change.op !== "meta")
            const winner = writes.reduce<Change | undefined>(
              (best, change) => (best === undefined || compareVersions(change, best) > 0 ? change : best),
              undefined,
            )
            const entry = node.allEntries().find(([key]) => key === entryKey("system", id))?.[1]
            if (winner === undefined) expect(entry).toBeUndefined()
            else {
              expect(entry?.version).toEqual({
                ms: winner.ms,
                counter: winner.counter,
                origin: winner.origin,
              })
              expect(entry?.value).toEqual(winner.value)
              expect(node.get("system", id) === undefined).toBe(winner.op === "delete")
            }
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it("applies each origin's changes in order: an early change waits for the ones before it", () => {
    const [first, second] = [1, 2].map(
      (seq): Change => ({
        origin: "a",
        seq,
        op: "put",
        kind: "system",
        id: `k${seq}`,
        ms: seq,
        counter: 0,
        value: new Uint8Array([seq]),
      }),
    ) as [Change, Change]
    const node = new CdbNode({ ...defaultCdbConfig, self: "x", members }, 0)
    const early = node.handle({ _tag: "DatagramReceived", bytes: datagramOf(second), via: "domain" }, 1)
    expect(early.some((output) => output._tag === "Applied")).toBe(false)
    expect(node.get("system", "k2")).toBeUndefined()
    const late = node.handle({ _tag: "DatagramReceived", bytes: datagramOf(first), via: "domain" }, 2)
    const applied = late.flatMap((output) =>
      output._tag === "Applied" ? output.changes.map((change) => change.seq) : [],
    )
    expect(applied).toEqual([1, 2])
  })

  it("rejects a datagram of another cluster and changes nothing", () => {
    const node = receiver("x", [])
    const foreign = encode({
      cluster: cluster + 1,
      sender: "a",
      incarnation: 0,
      body: { type: "changes", sections: [] },
    })
    const before = node.fingerprint()
    const outputs = node.handle({ _tag: "DatagramReceived", bytes: foreign, via: "domain" }, 5)
    expect(outputs).toContainEqual(
      expect.objectContaining({
        _tag: "Rejected",
        rejection: expect.objectContaining({ reason: "foreign-cluster" }),
      }),
    )
    expect(node.fingerprint()).toBe(before)
    expect(node.vector()).toEqual([])
  })
})
