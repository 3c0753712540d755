/**
 * The anti-replay window (IPsec's, RFC 4303 §3.4.3), kept per sender as the seal names it — never
 * per socket address. A sender's datagrams carry its incarnation (its durable restart count) and
 * a counter that rises with every datagram. The window holds, per sender, the latest
 * incarnation, the highest counter seen in it and which of the `size` below it arrived: a higher
 * incarnation starts a new window, anything from an older one or seen before is a replay.
 *
 * A receiver that restarted has no windows, so anything sealed before it started would pass: a
 * sender's counter is therefore also a clock (never below its wall clock in microseconds), and a
 * new window takes only counters from `freshFrom` on — the receiver's own start in the cluster's
 * time (its wall clock plus the lead its seal clock kept), less the clock offset the cluster
 * tolerates. And once that offset has passed since the receiver started (its
 * own monotonic time, `sinceStartUs`), nothing sealed before its start (`startedAt`) can still be
 * on its way: such a counter is a replay, even the first of its sender. (The simulator found the
 * gap: an adversary replayed, 1.5 s after a node restarted, pings a dead node had sent just
 * before; the restarted node heard a majority that was not there and fenced late.) A sender
 * whose clock is more than the offset behind would lose its datagrams until its counter passed
 * the receiver's start — so the counter is a hybrid logical clock (`SealClock`): never below the
 * sender's wall clock plus the lead it took from peers, nor below any counter it has taken. A sender whose wall clock
 * was stepped back keeps sealing at the cluster's time, as it hears it. (The fault harness found
 * the gap: a node 92 s behind was deaf to a restarted one, and the cluster took 15 s to elect.)
 * Leads differ while a partition lasts, and a lead outlives the step it made up for: a receiver
 * that restarted with a lead its sender has not learnt (taken on its side from a stepped clock,
 * or taken while its own clock was stepped back and set right since, so its start is ahead of
 * the cluster's time) drops that sender's datagrams as before-start until the sender hears it,
 * one ping later (seeds 2029 and 47).
 * The real transport (adapters/transport/envelope.ts) and the simulated network share both.
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

/**
 * How far out of order a sender's datagrams may arrive and still be taken: the window spans this
 * much of the sender's counter, which is a clock in microseconds. A window of 1024 counters (the
 * IPsec bitmap this replaced) spanned a millisecond of such a clock: a datagram overtaken by one
 * sent a millisecond later was dropped as a replay — three of four from a relay during a
 * snapshot at 40 ms of jitter, so the snapshot never completed (found by counting HA liveness
 * under reordering, seed 1000083). A datagram later than this is dropped, and repaired like a
 * lost one.
 */
export const reorderToleratedUs = 200_000

/**
 * How many counters a window keeps below its highest: a sender whose counter advances by one a
 * datagram (its wall clock stepped back, or far behind the cluster's) would otherwise fill the
 * span with 200,000 of them. Anything at or below the last one let go is `too-late`.
 */
export const windowCountersKept = 65_536

/**
 * How much a seal clock's lead grows before its node's store takes it again: a restarted receiver
 * starts at most this much (plus the clock offset tolerated) before the cluster's time, and a
 * drifting clock does not write the store at every datagram.
 */
export const sealLeadPersistedUs = 10_000

/**
 * The counter a node seals its datagrams with, in microseconds: its wall clock plus the largest
 * lead it has taken from a peer (`observe`: how far a peer's counter was ahead of this node's
 * wall clock), and always one more than the last. A hybrid logical clock (Kulkarni et al.) that
 * keeps running with time when it is ahead of the wall clock: a plain one (max(last + 1, now,
 * observed)) stood still once a peer's clock was stepped ahead — for as long as the step, every
 * node sealed with nearly the same counter, so a receiver that restarted could not tell a
 * datagram sealed a second before its start from one sealed now. The simulator found it (seed
 * 8001586): a node's clock stepped 27 s ahead for a second and back; for the rest of the run the
 * cluster's counters stood 27 s ahead of its wall clocks, and a node restarted at 15 s took the
 * adversary's replays of pings sealed while it was down, so a primary cut off did not fence.
 *
 * The lead only grows (every node's ends at the cluster's largest), and a node keeps it across
 * restarts (the store's `recordStart`), so a restarted receiver's start, in the cluster's time,
 * is its wall clock plus the lead it had: what was sealed before that is known to be old. A
 * node whose wall clock was stepped back seals at the cluster's time as soon as it hears a peer.
 */
export class SealClock {
  private last: number
  private lead: number

  /** Started at wall clock `nowUs`, with the lead this node had (0 for a new one). */
  constructor(nowUs: number, leadUs = 0) {
    this.lead = Math.max(0, Math.floor(leadUs))
    this.last = Math.floor(nowUs) + this.lead
  }

  /** How far this clock runs ahead of its node's wall clock (µs): the largest lead taken. */
  get leadUs(): number {
    return this.lead
  }

  /** The next counter, at wall clock `nowUs`. */
  next(nowUs: number): number {
    const now = Math.floor(nowUs) + this.lead
    this.last = now > this.last ? now : this.last + 1
    return this.last
  }

  /**
   * A counter taken from a peer (authenticated, not a replay) at wall clock `nowUs`: ours never
   * falls below it, and keeps its lead over our wall clock from then on. Says how far ours jumped
   * (0 if it did not). A jump of more than the reordering tolerated drops, as too late, what this
   * node sealed just before it and is still on its way: once, repaired as a loss.
   */
  observe(counter: number, nowUs: number): number {
    const lead = counter - Math.floor(nowUs)
    if (lead > this.lead) this.lead = lead
    if (counter <= this.last) return 0
    const jump = counter - this.last
    this.last = counter
    return jump
  }
}

/** What the window says of a datagram: taken, or why not. */
export type Verdict = "new" | "seen" | "too-late" | "before-start" | "old-incarnation"

interface Window {
  incarnation: number
  highest: number
  /** The counters seen within the span below `highest`, ascending. */
  seen: Array<number>
  /** The highest counter let go of to keep `seen` within `windowCountersKept`. */
  floor: number
}

export class ReplayWindow {
  private readonly windows = new Map<string, Window>()
  private readonly spanUs: number
  private readonly freshFrom: bigint
  private readonly startedAt: bigint
  private readonly graceUs: number

  /**
   * `spanUs`: how far below the highest counter seen a counter is still taken (once);
   * `freshFrom`: the receiver's start less the tolerated clock offset (`graceUs`).
   */
  constructor(spanUs = reorderToleratedUs, freshFrom = 0n, graceUs = 0) {
    this.spanUs = spanUs
    this.freshFrom = freshFrom
    this.startedAt = freshFrom + BigInt(graceUs)
    this.graceUs = graceUs
  }

  /**
   * True if this (sender, incarnation, counter) is new, and records it; false for a replay.
   * `sinceStartUs`: how long the receiver has run, on its monotonic clock.
   */
  accept(sender: string, incarnation: number, counter: bigint, sinceStartUs = 0): boolean {
    return this.judge(sender, incarnation, counter, sinceStartUs) === "new"
  }

  /**
   * As `accept`, saying why a datagram is refused: sealed before this receiver started
   * (`before-start`), in an older run of its sender (`old-incarnation`), further out of order
   * than the window spans (`too-late`), or taken before (`seen`).
   */
  judge(sender: string, incarnation: number, counter: bigint, sinceStartUs = 0): Verdict {
    if (counter < this.startedAt && sinceStartUs > this.graceUs) return "before-start"
    // Counters are microseconds of a wall clock: well within a double's exact integers.
    const value = Number(counter)
    const window = this.windows.get(sender)
    if (window === undefined || incarnation > window.incarnation) {
      if (counter < this.freshFrom) return "before-start"
      // No floor yet: counters may be below zero (a wall clock stepped back to before the epoch,
      // as the simulator's clock steps do; seed 152 took a reordered datagram for a late one).
      this.windows.set(sender, {
        incarnation,
        highest: value,
        seen: [value],
        floor: Number.NEGATIVE_INFINITY,
      })
      return "new"
    }
    if (incarnation < window.incarnation) return "old-incarnation"
    const seen = window.seen
    if (value > window.highest) {
      window.highest = value
      seen.push(value)
      const floor = value - this.spanUs
      let drop = 0
      while (drop < seen.length && seen[drop]! <= floor) drop++
      if (seen.length - drop > windowCountersKept) drop = seen.length - windowCountersKept
      if (drop > 0) {
        window.floor = Math.max(window.floor, seen[drop - 1]!)
        seen.splice(0, drop)
      }
      return "new"
    }
    if (value <= window.highest - this.spanUs || value <= window.floor) return "too-late"
    // Binary search for the first counter not below this one.
    let low = 0
    let high = seen.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (seen[middle]! < value) low = middle + 1
      else high = middle
    }
    if (seen[low] === value) return "seen"
    seen.splice(low, 0, value)
    if (seen.length > windowCountersKept) window.floor = Math.max(window.floor, seen.shift()!)
    return "new"
  }
}
