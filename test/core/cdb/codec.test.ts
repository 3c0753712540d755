import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  type Body,
  type Change,
  type Datagram,
  decode,
  encode,
  encodedLength,
} from "../../../core/cdb/codec.ts"

const cluster = 0xacacac01
const mtu = 1400

const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/)
const bytes = fc.uint8Array({ maxLength: 64 })
const change = (origin: string): fc.Arbitrary<Change> =>
  fc
    .record({
      origin: fc.constant(origin),
      seq: fc.integer({ min: 1, max: 2 ** 40 }),
      op: fc.constantFrom("put", "delete", "meta"),
      kind: name,
      id: name,
      ms: fc.integer({ min: 0, max: 2 ** 45 }),
      counter: fc.integer({ min: 0, max: 10_000 }),
      value: bytes,
    })
    .map((c) => ({
      ...c,
      ms: c.op === "meta" ? 0 : c.ms,
      counter: c.op === "meta" ? 0 : c.counter,
      value: c.op === "delete" ? null : c.value,
    }))

const body: fc.Arbitrary<Body> = fc.oneof(
  fc
    .array(
      name.chain((origin) =>
        fc.record({ origin: fc.constant(origin), changes: fc.array(change(origin), { maxLength: 4 }) }),
      ),
      { maxLength: 3 },
    )
    .map((sections) => ({ type: "changes" as const, sections })),
  fc
    .record({ digestSeq: fc.nat(), part: fc.nat(5), vector: fc.array(fc.tuple(name, fc.nat())) })
    .map((d) => ({ type: "digest" as const, ...d })),
  fc
    .record({
      target: name,
      ranges: fc.array(fc.record({ origin: name, from: fc.nat(1000), span: fc.nat(1000) })),
    })
    .map((n) => ({
      type: "nack" as const,
      target: n.target,
      ranges: n.ranges.map((r) => ({ origin: r.origin, from: r.from, to: r.from + r.span })),
    })),
  fc
    .record({
      counter: fc.nat(),
      values: fc.array(fc.record({ kind: name, id: name, value: bytes }), { maxLength: 5 }),
    })
    .map((s) => ({ type: "stats" as const, ...s })),
)

const datagram: fc.Arbitrary<Datagram> = fc.record({
  cluster: fc.constant(cluster),
  sender: name,
  incarnation: fc.nat(),
  body,
})

describe("codec", () => {
  describe("encode/decode", () => {
    it("decode(encode(d)) = d for every datagram that fits the MTU, and encodedLength is exact", () => {
      fc.assert(
        fc.property(datagram, (d) => {
          const bytes = encode(d)
          expect(bytes.length).toBe(encodedLength(d))
          if (bytes.length > mtu) return
          const decoded = decode(bytes, cluster, mtu)
          expect(decoded.ok).toBe(true)
          if (decoded.ok) expect(decoded.datagram).toEqual(d)
        }),
        { numRuns: 500 },
      )
    })
  })

  describe("decode", () => {
    const sample: Datagram = {
      cluster,
      sender: "n1",
      incarnation: 0,
      body: {
        type: "changes",
        sections: [
          {
            origin: "n1",
            changes: [
              {
                origin: "n1",
                seq: 1,
                op: "put",
                kind: "system",
                id: "vm1",
                ms: 5,
                counter: 0,
                value: new Uint8Array([1, 2, 3]),
              },
            ],
          },
        ],
      },
    }
    const good = encode(sample)
    const reason = (bytes: Uint8Array, expectCluster = cluster) => {
      const result = decode(bytes, expectCluster, mtu)
      return result.ok ? "ok" : result.rejected.reason
    }

    it("rejects each kind of bad datagram with its typed reason", () => {
      expect(reason(good)).toBe("ok")
      expect(reason(good.subarray(0, good.length - 1))).toBe("truncated")
      expect(reason(new Uint8Array(3))).toBe("truncated")
      expect(reason(new Uint8Array(mtu + 1))).toBe("oversized")
      expect(reason(Uint8Array.from([0x58, ...good.subarray(1)]))).toBe("bad-magic")
      expect(reason(Uint8Array.from([good[0]!, good[1]!, 9, ...good.subarray(3)]))).toBe(
        "unsupported-version",
      )
      expect(reason(good, 7)).toBe("foreign-cluster")
      expect(reason(Uint8Array.from([...good, 0]))).toBe("malformed")
      const badType = Uint8Array.from(good)
      badType[3] = 42
      expect(reason(badType)).toBe("malformed")
    })

    it("names where a truncated datagram ends", () => {
      const result = decode(good.subarray(0, good.length - 2), cluster, mtu)
      expect(result.ok === false && result.rejected.detail).toMatch(/ends inside change value/)
    })

    it("never throws on arbitrary bytes, and whatever it accepts encodes back to the same bytes (fuzz)", () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (random, withHeader) => {
          const bytes = withHeader ? Uint8Array.from([...good.subarray(0, 8), ...random]) : random
          const result = decode(bytes, cluster, mtu)
          if (result.ok) expect(encode(result.datagram)).toEqual(bytes)
          else expect(result.rejected._tag).toBe("DatagramRejected")
        }),
        { numRuns: 3000 },
      )
    })

    it("never throws when any one byte of a valid datagram is changed (fuzz)", () => {
      fc.assert(
        fc.property(datagram, fc.nat(), fc.integer({ min: 0, max: 255 }), (d, position, value) => {
          const bytes = Uint8Array.from(encode(d))
          if (bytes.length > mtu) return
          bytes[position % bytes.length] = value
          const result = decode(bytes, cluster, mtu)
          expect(typeof result.ok).toBe("boolean")
        }),
        { numRuns: 2000 },
      )
    })
  })
})
