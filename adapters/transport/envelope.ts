/**
 * Every datagram on the wire is sealed with the cluster key, so a stranger on the same L2 cannot
 * inject state, and numbered, so a recorded datagram cannot be played back:
 *
 *   channel:u8  counter:u64  payload  tag:16 bytes (HMAC-SHA256 over the rest, truncated)
 *
 * The counter starts at the sender's wall clock in microseconds and counts up, so it keeps
 * rising across restarts; a receiver keeps, per source address, the highest counter seen and
 * which of the 1024 below it arrived (the IPsec anti-replay window).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import type { Channel, DropReason } from "../../core/ports/transport.ts"

export const envelopeOverhead = 1 + 8 + 16
const channelCodes: Record<Channel, number> = { cdb: 1, monitor: 2 }
const tagLength = 16
const windowSize = 1024

export class Sealer {
  private counter: bigint
  private readonly key: Buffer

  constructor(key: Uint8Array, startMicros: number) {
    this.key = Buffer.from(key)
    this.counter = BigInt(startMicros)
  }

  seal(channel: Channel, payload: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(envelopeOverhead + payload.length)
    out[0] = channelCodes[channel]
    this.counter += 1n
    out.writeBigUInt64BE(this.counter, 1)
    out.set(payload, 9)
    const tag = createHmac("sha256", this.key)
      .update(out.subarray(0, 9 + payload.length))
      .digest()
    tag.copy(out, 9 + payload.length, 0, tagLength)
    return out
  }
}

export type Opened =
  | { readonly ok: true; readonly channel: Channel; readonly payload: Uint8Array }
  | { readonly ok: false; readonly reason: DropReason }

interface Window {
  highest: bigint
  /** Bit i set: counter highest - i has been seen. */
  seen: bigint
}

export class Opener {
  private readonly key: Buffer
  private readonly windows = new Map<string, Window>()
  private readonly maxBytes: number

  constructor(key: Uint8Array, maxPayloadBytes: number) {
    this.key = Buffer.from(key)
    this.maxBytes = maxPayloadBytes + envelopeOverhead
  }

  open(datagram: Uint8Array, source: string): Opened {
    if (datagram.length > this.maxBytes) return { ok: false, reason: "oversized" }
    if (datagram.length < envelopeOverhead) return { ok: false, reason: "malformed-envelope" }
    const code = datagram[0]
    const channel: Channel | undefined = code === 1 ? "cdb" : code === 2 ? "monitor" : undefined
    const body = datagram.subarray(0, datagram.length - tagLength)
    const expected = createHmac("sha256", this.key).update(body).digest().subarray(0, tagLength)
    if (!timingSafeEqual(expected, datagram.subarray(datagram.length - tagLength)))
      return { ok: false, reason: "unauthenticated" }
    if (channel === undefined) return { ok: false, reason: "malformed-envelope" }
    const counter = Buffer.from(datagram.buffer, datagram.byteOffset + 1, 8).readBigUInt64BE(0)
    if (!this.accept(source, counter)) return { ok: false, reason: "replayed" }
    return { ok: true, channel, payload: datagram.subarray(9, datagram.length - tagLength) }
  }

  private accept(source: string, counter: bigint): boolean {
    const window = this.windows.get(source)
    if (window === undefined) {
      this.windows.set(source, { highest: counter, seen: 1n })
      return true
    }
    if (counter > window.highest) {
      const shift = counter - window.highest
      window.seen =
        shift >= BigInt(windowSize) ? 1n : ((window.seen << shift) | 1n) & ((1n << BigInt(windowSize)) - 1n)
      window.highest = counter
      return true
    }
    const back = window.highest - counter
    if (back >= BigInt(windowSize)) return false
    const bit = 1n << back
    if ((window.seen & bit) !== 0n) return false
    window.seen |= bit
    return true
  }
}
