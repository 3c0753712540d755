import { describe, expect, it } from "vitest"
import { ReplayWindow, SealClock, windowCountersKept } from "../../../core/transport/replay.ts"

describe("the replay window", () => {
  it("takes each counter once per sender and incarnation, and nothing of an older incarnation", () => {
    const window = new ReplayWindow(64)
    expect(window.accept("n1", 1, 10n)).toBe(true)
    expect(window.accept("n1", 1, 10n)).toBe(false)
    expect(window.accept("n1", 1, 9n)).toBe(true)
    expect(window.accept("n2", 1, 10n)).toBe(true)
    expect(window.accept("n1", 2, 1n)).toBe(true)
    expect(window.accept("n1", 1, 11n)).toBe(false)
  })

  it("takes a datagram overtaken by later ones within the span of the counter's clock, once, and none older", () => {
    // The counter is a clock in µs: a sender sealing 5,000 datagrams within 40 ms, delivered in
    // reverse (the worst reordering 40 ms of jitter makes), loses none; a second copy of each is refused.
    const window = new ReplayWindow(200_000)
    const start = 1_700_000_000_000_000
    const counters = Array.from({ length: 5_000 }, (_, index) => BigInt(start + index * 8))
    expect(counters.toReversed().filter((counter) => window.accept("n1", 1, counter))).toHaveLength(5_000)
    expect(counters.filter((counter) => window.accept("n1", 1, counter))).toHaveLength(0)
    // Older than the span below the highest counter seen: refused, seen or not.
    expect(window.accept("n1", 1, BigInt(start + 4_999 * 8 - 200_000))).toBe(false)
    // Within the span and never seen: taken.
    expect(window.accept("n1", 1, BigInt(start + 3))).toBe(true)
  })

  it("takes a reordered datagram whose counter is below zero (a wall clock stepped back before the epoch)", () => {
    // Sim seed 152: the window's floor started at -1, so a reordered -1,948,997 after -1,948,993 was "too late".
    const window = new ReplayWindow(200_000, -10_000_000n)
    expect(window.judge("n1", 2, -1_948_993n)).toBe("new")
    expect(window.judge("n1", 2, -1_948_997n)).toBe("new")
    expect(window.judge("n1", 2, -1_948_997n)).toBe("seen")
    expect(window.judge("n1", 2, -2_200_000n)).toBe("too-late")
  })

  it("a restarted receiver takes what was sealed just before its start only while that may still be on its way", () => {
    // Started at 10 s (wall µs), tolerating clocks 0.5 s apart.
    const window = new ReplayWindow(200_000, 9_500_000n, 500_000)
    // Sealed 0.3 s before the start, arriving 0.1 s after it: in flight, or a clock behind. Taken.
    expect(window.accept("n1", 4, 9_700_000n, 100_000)).toBe(true)
    // Sealed before the start, arriving 1.5 s after it: nothing is that slow on the wire; a replay,
    // even of a sender whose window is new, and of one whose window is open.
    expect(window.accept("n2", 7, 9_800_000n, 1_500_000)).toBe(false)
    expect(window.accept("n1", 4, 9_600_000n, 1_500_000)).toBe(false)
    // Sealed before the tolerated offset: never.
    expect(window.accept("n3", 1, 9_400_000n, 0)).toBe(false)
    // Sealed after the start: taken, whenever it comes.
    expect(window.accept("n2", 7, 10_200_000n, 1_500_000)).toBe(true)
  })

  it("says why it refuses: seen, too late, an older run of the sender, sealed before the receiver's start", () => {
    const window = new ReplayWindow(200_000, 9_500_000n, 500_000)
    expect(window.judge("n1", 2, 10_000_000n, 0)).toBe("new")
    expect(window.judge("n1", 2, 10_000_000n, 0)).toBe("seen")
    expect(window.judge("n1", 2, 10_300_000n, 0)).toBe("new")
    expect(window.judge("n1", 2, 10_100_001n, 0)).toBe("new")
    expect(window.judge("n1", 2, 10_100_000n, 0)).toBe("too-late")
    expect(window.judge("n1", 1, 10_400_000n, 0)).toBe("old-incarnation")
    expect(window.judge("n2", 1, 9_400_000n, 0)).toBe("before-start")
    expect(window.judge("n2", 1, 9_900_000n, 600_000)).toBe("before-start")
  })

  it("keeps at most windowCountersKept counters per sender: one that old is too late, not taken twice", () => {
    // A sender whose counter rises by one a datagram (its clock behind the cluster's).
    const window = new ReplayWindow(200_000)
    const total = windowCountersKept + 100
    for (let counter = 1; counter <= total; counter++)
      expect(window.accept("n1", 1, BigInt(counter))).toBe(true)
    expect(window.judge("n1", 1, 50n)).toBe("too-late")
    expect(window.judge("n1", 1, BigInt(total - 10))).toBe("seen")
  })
})

describe("the seal clock", () => {
  it("rises by one a datagram, never below the wall clock plus the lead taken, nor below a counter taken", () => {
    const clock = new SealClock(1_000)
    expect(clock.next(500)).toBe(1_001)
    expect(clock.next(2_000)).toBe(2_000)
    // A peer 30 s ahead, heard at 2,000: ours jumps to it, and says by how much.
    expect(clock.observe(30_002_000, 2_000)).toBe(30_000_000)
    expect(clock.leadUs).toBe(30_000_000)
    // From then on it runs with the wall clock, 30 s ahead of it — not one counter a datagram.
    expect(clock.next(2_100)).toBe(30_002_100)
    expect(clock.next(1_002_100)).toBe(31_002_100)
    // Nothing lower moves it, nor its lead.
    expect(clock.observe(2_500, 1_002_200)).toBe(0)
    expect(clock.leadUs).toBe(30_000_000)
    expect(clock.next(1_002_200)).toBe(31_002_200)
  })

  it("a restarted receiver that kept its lead refuses what was sealed while it was down, after a peer's clock was stepped ahead and back", () => {
    const secondUs = 1_000_000
    // n2's wall clock is stepped 27 s ahead at 2 s, for a second; n1 and n5 hear it.
    const n1 = new SealClock(0)
    const n5 = new SealClock(0)
    const stepped = new SealClock(2 * secondUs).next(29 * secondUs)
    n1.observe(stepped, 2 * secondUs)
    n5.observe(stepped, 2 * secondUs)
    // n5 goes down at 12 s; n1 seals a ping at 13 s, which an adversary records.
    const recorded = n1.next(13 * secondUs)
    // n5 restarts at 15 s with the lead its store kept (as the simulator and the real node start it).
    const lead = n5.leadUs
    const restarted = new ReplayWindow(200_000, BigInt(15 * secondUs + lead - 100_000), 100_000)
    expect(restarted.judge("n1", 1, BigInt(recorded), 0)).toBe("before-start")
    // n1's pings sealed now are taken.
    expect(restarted.judge("n1", 1, BigInt(n1.next(15 * secondUs)), 0)).toBe("new")
    // A clock that stood still when ahead (the plain hybrid clock) sealed the two 2 s apart with
    // counters 1 µs apart: the restarted receiver could not have told them apart.
    expect(n1.next(15 * secondUs) - recorded).toBeGreaterThan(1_900_000)
  })

  it("a node whose wall clock was stepped back stays audible to a receiver that restarts, while it hears the cluster", () => {
    const secondUs = 1_000_000
    // n1's wall clock is 92 s behind; n2's is right. n1 hears n2's datagrams.
    const n1Wall = (us: number) => us - 92 * secondUs
    const n1 = new SealClock(n1Wall(1_000 * secondUs))
    const n2 = new SealClock(1_000 * secondUs)
    for (let tick = 0; tick < 10; tick++) {
      const nowUs = 1_000 * secondUs + tick * 100_000
      n1.observe(n2.next(nowUs), n1Wall(nowUs))
    }
    // n3 restarts at 1,001 s (its clock right), tolerating 100 ms of offset.
    const restarted = new ReplayWindow(200_000, BigInt(1_001 * secondUs - 100_000), 100_000)
    expect(restarted.judge("n1", 3, BigInt(n1.next(n1Wall(1_001 * secondUs))), 0)).toBe("new")
    // Without what it heard, its counter would be 92 s before the start: refused as a replay.
    const deaf = new SealClock(n1Wall(1_001 * secondUs))
    expect(restarted.judge("n4", 1, BigInt(deaf.next(n1Wall(1_001 * secondUs))), 0)).toBe("before-start")
  })
})
