/**
 * Hybrid logical clocks (Kulkarni et al.): a version that follows physical time where it can
 * and stays monotonic and causal where clocks drift. Spec conflicts resolve by comparing
 * versions: milliseconds, then the logical counter, then the writer's node id. Every node
 * compares the same way, so every node picks the same winner.
 */

export interface Version {
  readonly ms: number
  readonly counter: number
  readonly origin: string
}

export interface Clock {
  ms: number
  counter: number
}

export const compareVersions = (left: Version, right: Version): number => {
  if (left.ms !== right.ms) return left.ms < right.ms ? -1 : 1
  if (left.counter !== right.counter) return left.counter < right.counter ? -1 : 1
  if (left.origin === right.origin) return 0
  return left.origin < right.origin ? -1 : 1
}

/** Advances the clock for a local event at physical time `nowMs` and returns the event's version. */
export const tick = (clock: Clock, nowMs: number, origin: string): Version => {
  if (nowMs > clock.ms) {
    clock.ms = nowMs
    clock.counter = 0
  } else {
    clock.counter++
  }
  return { ms: clock.ms, counter: clock.counter, origin }
}

/** Folds a version seen from another node into the clock, so later local versions are greater. */
export const observe = (clock: Clock, seen: { readonly ms: number; readonly counter: number }): void => {
  if (seen.ms > clock.ms) {
    clock.ms = seen.ms
    clock.counter = seen.counter
  } else if (seen.ms === clock.ms && seen.counter > clock.counter) {
    clock.counter = seen.counter
  }
}
