import { describe, expect, it } from "vitest"
import { ReplayWindow } from "../../../core/transport/replay.ts"

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

  it("a restarted receiver takes what was sealed just before its start only while that may still be on its way", () => {
    // Started at 10 s (wall µs), tolerating clocks 0.5 s apart.
    const window = new ReplayWindow(1024, 9_500_000n, 500_000)
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
})
