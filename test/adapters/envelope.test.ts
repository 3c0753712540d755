import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Opener, Sealer, toDomain, toNode } from "../../adapters/transport/envelope.ts"
import { decodeMessage, encodeMessage } from "../../core/monitor/wire.ts"

const key = new Uint8Array(32).fill(7)
const otherKey = new Uint8Array(32).fill(9)
const payload = new TextEncoder().encode("a CDB datagram")

describe("envelope", () => {
  it("opens what it sealed, on the channel it was sealed for", () => {
    const sealer = new Sealer(key, "n1", 1, 1_000)
    const opener = new Opener(key, 1400)
    const opened = opener.open(sealer.seal("monitor", payload))
    expect(opened.ok && opened.channel).toBe("monitor")
    expect(opened.ok && Uint8Array.from(opened.payload)).toEqual(payload)
  })

  it("rejects a datagram sealed with another cluster's key, and one with any byte changed", () => {
    const opener = new Opener(key, 1400)
    expect(opener.open(new Sealer(otherKey, "n1", 1, 1).seal("cdb", payload))).toEqual({
      ok: false,
      reason: "unauthenticated",
    })
    const sealed = new Sealer(key, "n1", 1, 1).seal("cdb", payload)
    for (let index = 0; index < sealed.length; index++) {
      const tampered = Buffer.from(sealed)
      tampered[index]! ^= 0x01
      expect(new Opener(key, 1400).open(tampered).ok).toBe(false)
    }
  })

  it("rejects a replayed datagram, and one older than the window, but accepts reordering within it", () => {
    // The sender's clock moves 100 µs per datagram: 3,000 datagrams span 300 ms of its counter.
    let micros = 1_700_000_000_000_000
    const sealer = new Sealer(key, "n1", 1, 5_000, undefined, () => (micros += 100))
    const opener = new Opener(key, 1400)
    const datagrams = Array.from({ length: 3000 }, () => sealer.seal("cdb", payload))
    expect(opener.open(datagrams[2999]!).ok).toBe(true)
    expect(opener.open(datagrams[2998]!).ok).toBe(true)
    // Overtaken by 150 ms of later datagrams: still taken, once.
    expect(opener.open(datagrams[1500]!).ok).toBe(true)
    expect(opener.open(datagrams[1500]!)).toEqual({ ok: false, reason: "replayed" })
    // Sealed more than the window (200 ms of the counter) before the latest: refused.
    expect(opener.open(datagrams[0]!)).toEqual({ ok: false, reason: "replayed" })
  })

  it("keys its window by the sealed sender, so a replay is refused whatever address it comes from", () => {
    const opener = new Opener(key, 1400)
    const fromN1 = new Sealer(key, "n1", 1, 5_000).seal("monitor", payload)
    const fromN2 = new Sealer(key, "n2", 1, 5_000).seal("monitor", payload)
    expect(opener.open(fromN1)).toMatchObject({ ok: true, sender: "n1", incarnation: 1 })
    // The same counter from another sender is another datagram; the same bytes again are a replay.
    expect(opener.open(fromN2)).toMatchObject({ ok: true, sender: "n2" })
    expect(opener.open(Buffer.from(fromN1))).toEqual({ ok: false, reason: "replayed" })
    // Changing the sender in the header breaks the seal.
    const relabelled = Buffer.from(fromN1)
    relabelled[3] = "2".charCodeAt(0)
    expect(opener.open(relabelled)).toEqual({ ok: false, reason: "unauthenticated" })
  })

  it("starts a new window for a sender's new incarnation, and refuses what its old one sealed", () => {
    const opener = new Opener(key, 1400)
    const before = new Sealer(key, "n1", 4, 9_000_000)
    const old = before.seal("cdb", payload)
    expect(opener.open(before.seal("cdb", payload)).ok).toBe(true)
    // Restarted with a clock that stepped back: lower counters, but a higher incarnation.
    const after = new Sealer(key, "n1", 5, 1_000)
    expect(opener.open(after.seal("cdb", payload)).ok).toBe(true)
    expect(opener.open(old)).toEqual({ ok: false, reason: "replayed" })
    expect(opener.open(after.seal("cdb", payload)).ok).toBe(true)
  })

  it("a restarted receiver takes nothing sealed well before it started: the counter is a clock", () => {
    let wallMicros = 1_000_000
    const sealer = new Sealer(key, "n1", 3, 0, false, () => wallMicros)
    const old = sealer.seal("monitor", payload)
    wallMicros = 9_000_000
    const fresh = sealer.seal("monitor", payload)
    // Started at 9.0 s, taking clocks up to 0.5 s apart: the datagram of 1.0 s is a replay.
    const restarted = new Opener(key, 1400, false, 9_000_000, 500_000)
    expect(restarted.open(old)).toEqual({ ok: false, reason: "replayed" })
    expect(restarted.open(fresh)).toMatchObject({ ok: true, sender: "n1" })
    // Within one run the counter still rises when the clock does not.
    expect(restarted.open(sealer.seal("monitor", payload)).ok).toBe(true)
    expect(restarted.open(sealer.seal("monitor", payload)).ok).toBe(true)
  })

  it("a sender whose clock was stepped back seals at the time it hears from its peers (the counter opened)", () => {
    // n1's wall clock reads 1.0 s, n2's 9.0 s; n1 takes a datagram of n2's and follows its counter.
    const n1 = new Sealer(key, "n1", 1, 1_000_000, false, () => 1_000_000)
    const n2 = new Sealer(key, "n2", 1, 9_000_000, false, () => 9_000_000)
    const opened = new Opener(key, 1400).open(n2.seal("monitor", payload))
    expect(opened).toMatchObject({ ok: true, sender: "n2", counter: 9_000_001 })
    if (opened.ok) n1.observe(opened.counter)
    // A receiver started at 9.0 s (0.1 s tolerated) takes n1's next datagram; before, it would not.
    const restarted = new Opener(key, 1400, false, 9_000_000, 100_000)
    expect(restarted.open(n1.seal("monitor", payload))).toMatchObject({ ok: true, counter: 9_000_002 })
    const unheard = new Sealer(key, "n3", 1, 1_000_000, false, () => 1_000_000)
    expect(restarted.open(unheard.seal("monitor", payload))).toEqual({ ok: false, reason: "replayed" })
  })

  it("drops a datagram sealed for another node or another domain as misdirected, encrypted or not", () => {
    for (const encrypt of [false, true]) {
      const sealer = new Sealer(key, "n1", 1, 1_000, encrypt)
      const n2 = new Opener(key, 1400, encrypt, 0, 0, [toNode("n2"), toDomain("d1")])
      expect(n2.open(sealer.seal("cdb", payload, toNode("n2")))).toMatchObject({ ok: true, sender: "n1" })
      expect(n2.open(sealer.seal("cdb", payload, toDomain("d1")))).toMatchObject({ ok: true })
      // What n1 sent n3, or domain d2, carried to n2 by someone in between:
      expect(n2.open(sealer.seal("cdb", payload, toNode("n3")))).toEqual({ ok: false, reason: "misdirected" })
      expect(n2.open(sealer.seal("monitor", payload, toDomain("d2")))).toEqual({
        ok: false,
        reason: "misdirected",
      })
      // And the destination is under the seal: rewritten, the datagram fails authentication.
      const sealed = sealer.seal("cdb", payload, toNode("n3"))
      const forged = Buffer.from(sealed)
      forged.writeUInt32BE(sealed.readUInt32BE(2 + 2 + 4 + 8) ^ 1, 2 + 2 + 4 + 8)
      expect(n2.open(forged).ok).toBe(false)
    }
  })

  it("refuses a sender id it cannot carry", () => {
    expect(() => new Sealer(key, "", 1, 1)).toThrow("1-63 bytes")
    expect(() => new Sealer(key, "n".repeat(64), 1, 1)).toThrow("1-63 bytes")
  })

  it("rejects oversized and truncated datagrams with their reasons", () => {
    const opener = new Opener(key, 100)
    expect(opener.open(new Sealer(key, "n1", 1, 1).seal("cdb", new Uint8Array(101)))).toEqual({
      ok: false,
      reason: "oversized",
    })
    expect(opener.open(new Uint8Array(10))).toEqual({ ok: false, reason: "malformed-envelope" })
  })

  it("never throws on arbitrary bytes, and accepts none of them (fuzz)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(new Opener(key, 1400).open(bytes).ok).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })
})

describe("envelope, encrypted", () => {
  it("round-trips, and the payload does not appear on the wire", () => {
    const secret = new TextEncoder().encode("system web-1 spec: the secret root password is hunter2")
    const sealed = new Sealer(key, "n1", 1, 1, true).seal("cdb", secret)
    expect(Buffer.from(sealed).includes(Buffer.from("hunter2"))).toBe(false)
    const opened = new Opener(key, 1400, true).open(sealed)
    expect(opened.ok && Buffer.from(opened.payload).toString()).toBe(Buffer.from(secret).toString())
  })

  it("refuses an only-authenticated datagram where encryption is required, and tampering, a wrong key and replays", () => {
    const opener = new Opener(key, 1400, true)
    expect(opener.open(new Sealer(key, "n1", 1, 1).seal("cdb", payload))).toEqual({
      ok: false,
      reason: "unencrypted",
    })
    const sealed = new Sealer(key, "n1", 1, 100, true).seal("monitor", payload)
    const tampered = Buffer.from(sealed)
    tampered[24]! ^= 1
    expect(opener.open(tampered)).toEqual({ ok: false, reason: "unauthenticated" })
    expect(new Opener(otherKey, 1400, true).open(sealed)).toEqual({
      ok: false,
      reason: "unauthenticated",
    })
    expect(opener.open(sealed).ok).toBe(true)
    expect(opener.open(sealed)).toEqual({ ok: false, reason: "replayed" })
  })

  it("never throws on arbitrary bytes with the encrypted flag set (fuzz)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (bytes) => {
        bytes[0] = bytes[0]! | 0x80
        expect(new Opener(key, 1400, true).open(bytes).ok).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })
})

describe("monitor wire", () => {
  it("round-trips every message", () => {
    for (const message of [
      { _tag: "Ping", from: "n1", term: 3, leader: true, leased: true, seq: 9, epoch: 2, hears: [["n2", 4]] },
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
