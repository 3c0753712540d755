/**
 * The anti-replay window (IPsec's, RFC 4303 §3.4.3), kept per sender as the seal names it — never
 * per socket address. A sender's datagrams carry its incarnation (its durable restart count) and
 * a counter that rises with every datagram. The window holds, per sender, the latest
 * incarnation, the highest counter seen in it and which of the `size` below it arrived: a higher
 * incarnation starts a new window, anything from an older one or seen before is a replay.
 *
 * A receiver that restarted has no windows, so anything sealed before it started would pass: a
 * sender's counter is therefore also a clock (never below its wall clock in microseconds), and a
 * new window takes only counters from `freshFrom` on — the receiver's own start, less the clock
 * offset the cluster tolerates. And once that offset has passed since the receiver started (its
 * own monotonic time, `sinceStartUs`), nothing sealed before its start (`startedAt`) can still be
 * on its way: such a counter is a replay, even the first of its sender. (The simulator found the
 * gap: an adversary replayed, 1.5 s after a node restarted, pings a dead node had sent just
 * before; the restarted node heard a majority that was not there and fenced late.) A sender
 * whose clock is more than the offset behind loses its datagrams until its counter passes the
 * receiver's start, as it did before until it passed `freshFrom`.
 * The real transport (adapters/transport/envelope.ts) and the simulated network share it.
 */

/**
 * How far apart two nodes' wall clocks may be for a restarted receiver to take the other's
 * datagrams at once (NTP keeps hosts within milliseconds). It also bounds what an adversary can
 * still do with datagrams captured just before a receiver's start: play each back once, within
 * this long of the start, as if delayed by at most twice this — a fence at most that late, which
 * the primary's HA margin (500 ms) covers. A sender further behind is deaf to a restarted
 * receiver until its clock passes the receiver's start.
 */
export const clockOffsetToleratedMs = 100

interface Window {
  incarnation: number
  highest: bigint
  /** Bit i set: counter highest - i has been seen. */
  seen: bigint
}

export class ReplayWindow {
  private readonly windows = new Map<string, Window>()
  private readonly size: bigint
  private readonly freshFrom: bigint
  private readonly startedAt: bigint
  private readonly graceUs: number

  /** `freshFrom`: the receiver's start less the tolerated clock offset (`graceUs`). */
  constructor(size = 1024, freshFrom = 0n, graceUs = 0) {
    this.size = BigInt(size)
    this.freshFrom = freshFrom
    this.startedAt = freshFrom + BigInt(graceUs)
    this.graceUs = graceUs
  }

  /**
   * True if this (sender, incarnation, counter) is new, and records it; false for a replay.
   * `sinceStartUs`: how long the receiver has run, on its monotonic clock.
   */
  accept(sender: string, incarnation: number, counter: bigint, sinceStartUs = 0): boolean {
    if (counter < this.startedAt && sinceStartUs > this.graceUs) return false
    const window = this.windows.get(sender)
    if (window === undefined || incarnation > window.incarnation) {
      if (counter < this.freshFrom) return false
      this.windows.set(sender, { incarnation, highest: counter, seen: 1n })
      return true
    }
    if (incarnation < window.incarnation) return false
    if (counter > window.highest) {
      const shift = counter - window.highest
      window.seen = shift >= this.size ? 1n : ((window.seen << shift) | 1n) & ((1n << this.size) - 1n)
      window.highest = counter
      return true
    }
    const back = window.highest - counter
    if (back >= this.size) return false
    const bit = 1n << back
    if ((window.seen & bit) !== 0n) return false
    window.seen |= bit
    return true
  }
}
