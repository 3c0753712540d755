/**
 * A seeded source of randomness: sfc32, integer-only. Child generators are forked by label, so
 * adding draws to one part of a run does not shift another's. The simulator's only source of
 * randomness (`sim/prng.ts` re-exports it), and the fault harness's (`adapters/vortex/`), which
 * draws its schedule from a seed the same way.
 */
import { fnv1a32 } from "./hash.ts"

export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number, stream = 0) {
    this.a = seed >>> 0
    this.b = (stream ^ 0x9e3779b9) >>> 0
    this.c = (seed * 0x85ebca6b) >>> 0
    this.d = 1
    for (let index = 0; index < 16; index++) this.next()
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** An integer in [0, bound), bound ≤ 2^32, without modulo bias. */
  below(bound: number): number {
    if (bound <= 1) return 0
    const limit = 0x100000000 - (0x100000000 % bound)
    let value = this.next()
    while (value >= limit) value = this.next()
    return value % bound
  }

  /** An integer in [low, high]. */
  between(low: number, high: number): number {
    return low + this.below(high - low + 1)
  }

  /** True with probability permille / 1000. */
  chance(permille: number): boolean {
    return this.below(1000) < permille
  }

  pick<T>(items: ReadonlyArray<T>): T {
    return items[this.below(items.length)]!
  }

  /**
   * A generator of its own for one draw of a seed, labelled: unlike `fork`, it takes nothing
   * from another generator, so adding one moves none of a seed's other draws.
   */
  static labelled(seed: number, label: string): Prng {
    return new Prng(seed, fnv1a32(0x811c9dc5, label))
  }

  /** A child generator for one part of the simulation. */
  fork(label: string): Prng {
    const hash = fnv1a32(0x811c9dc5, label)
    return new Prng(this.next() ^ hash, hash)
  }
}
