import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Opener, Sealer } from "../../adapters/transport/envelope.ts"
import { decodeMessage, encodeMessage } from "../../core/monitor/wire.ts"

const key = new Uint8Array(32).fill(7)
const otherKey = new Uint8Array(32).fill(9)
const payload = new TextEncoder().encode("a CDB datagram")

describe("envelope", () => {
  it("opens what it sealed, on the channel it was sealed for", () => {
    const sealer = new Sealer(key, 1_000)
    const opener = new Opener(key, 1400)
    const opened = opener.open(sealer.seal("monitor", payload), "10.0.0.1:1")
    expect(opened.ok && opened.channel).toBe("monitor")
    expect(opened.ok && Uint8Array.from(opened.payload)).toEqual(payload)
  })

  it("rejects a datagram sealed with another cluster's key, and one with any byte changed", () => {
    const opener = new Opener(key, 1400)
    expect(opener.open(new Sealer(otherKey, 1).seal("cdb", payload), "s")).toEqual({
      ok: false,
      reason: "unauthenticated",
    })
    const sealed = new Sealer(key, 1).seal("cdb", payload)
    for (let index = 0; index < sealed.length; index++) {
      const tampered = Buffer.from(sealed)
      tampered[index]! ^= 0x01
      expect(new Opener(key, 1400).open(tampered, "s").ok).toBe(false)
    }
  })

  it("rejects a replayed datagram, and one older than the window, but accepts reordering within it", () => {
    const sealer = new Sealer(key, 5_000)
    const opener = new Opener(key, 1400)
    const datagrams = Array.from({ length: 2000 }, () => sealer.seal("cdb", payload))
    expect(opener.open(datagrams[1500]!, "s").ok).toBe(true)
    expect(opener.open(datagrams[1499]!, "s").ok).toBe(true)
    expect(opener.open(datagrams[1000]!, "s").ok).toBe(true)
    expect(opener.open(datagrams[1000]!, "s")).toEqual({ ok: false, reason: "replayed" })
    expect(opener.open(datagrams[100]!, "s")).toEqual({ ok: false, reason: "replayed" })
    // Each source has its own window.
    expect(opener.open(datagrams[100]!, "other")).toMatchObject({ ok: true })
  })

  it("rejects oversized and truncated datagrams with their reasons", () => {
    const opener = new Opener(key, 100)
    expect(opener.open(new Sealer(key, 1).seal("cdb", new Uint8Array(101)), "s")).toEqual({
      ok: false,
      reason: "oversized",
    })
    expect(opener.open(new Uint8Array(10), "s")).toEqual({ ok: false, reason: "malformed-envelope" })
  })

  it("never throws on arbitrary bytes, and accepts none of them (fuzz)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(new Opener(key, 1400).open(bytes, "s").ok).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })
})

describe("envelope, encrypted", () => {
  it("round-trips, and the payload does not appear on the wire", () => {
    const secret = new TextEncoder().encode("system web-1 spec: the secret root password is hunter2")
    const sealed = new Sealer(key, 1, true).seal("cdb", secret)
    expect(Buffer.from(sealed).includes(Buffer.from("hunter2"))).toBe(false)
    const opened = new Opener(key, 1400, true).open(sealed, "s")
    expect(opened.ok && Buffer.from(opened.payload).toString()).toBe(Buffer.from(secret).toString())
  })

  it("refuses an only-authenticated datagram where encryption is required, and tampering, a wrong key and replays", () => {
    const opener = new Opener(key, 1400, true)
    expect(opener.open(new Sealer(key, 1).seal("cdb", payload), "s")).toEqual({
      ok: false,
      reason: "unencrypted",
    })
    const sealed = new Sealer(key, 100, true).seal("monitor", payload)
    const tampered = Buffer.from(sealed)
    tampered[20]! ^= 1
    expect(opener.open(tampered, "s")).toEqual({ ok: false, reason: "unauthenticated" })
    expect(new Opener(otherKey, 1400, true).open(sealed, "s")).toEqual({
      ok: false,
      reason: "unauthenticated",
    })
    expect(opener.open(sealed, "s").ok).toBe(true)
    expect(opener.open(sealed, "s")).toEqual({ ok: false, reason: "replayed" })
  })

  it("never throws on arbitrary bytes with the encrypted flag set (fuzz)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (bytes) => {
        bytes[0] = bytes[0]! | 0x80
        expect(new Opener(key, 1400, true).open(bytes, "s").ok).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })
})

describe("monitor wire", () => {
  it("round-trips every message", () => {
    for (const message of [
      { _tag: "Ping", from: "n1", term: 3, leader: true, leased: true, seq: 9, hears: ["n2"] },
      { _tag: "VoteReply", from: "n2", term: 3, granted: false },
    ] as const) {
      expect(decodeMessage(encodeMessage(message))).toMatchObject({ _tag: "Success", success: message })
    }
  })

  it("rejects malformed messages with a reason, and never throws (fuzz)", () => {
    const bad = [
      '{"_tag":"Ping"}',
      "not json",
      '{"_tag":"Vote","from":"","term":1}',
      '{"_tag":"Vote","from":"a","term":-1}',
      '{"_tag":"Vote","from":"a","term":1,"extra":1}',
    ]
    for (const text of bad) expect(decodeMessage(new TextEncoder().encode(text))._tag).toBe("Failure")
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(["Success", "Failure"]).toContain(decodeMessage(bytes)._tag)
      }),
      { numRuns: 1000 },
    )
  })
})
