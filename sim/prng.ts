/**
 * The simulator's only source of randomness: sfc32, integer-only, seeded. Child generators are
 * forked by label, so adding draws to one part of the simulator does not shift another's.
 */
import { fnv1a32 } from "../core/hash.ts"

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

/** A 64-bit FNV-1a hash in two 32-bit lanes, for the trace. */
export class TraceHash {
  private high = 0xcbf29ce4
  private low = 0x84222325

  private byte(value: number) {
    this.low ^= value & 0xff
    // Multiply the 64-bit state by the FNV prime 2^40 + 0x1b3, in 32-bit pieces.
    const lowProduct = this.low * 0x1b3
    const carry = Math.floor(lowProduct / 0x100000000)
    this.high = (Math.imul(this.high, 0x1b3) + Math.imul(this.low, 0x100) + carry) >>> 0
    this.low = lowProduct >>> 0
  }

  number(value: number): void {
    let rest = value
    for (let index = 0; index < 7; index++) {
      this.byte(rest & 0xff)
      rest = Math.floor(rest / 256)
    }
  }

  text(value: string): void {
    for (let index = 0; index < value.length; index++) this.byte(value.charCodeAt(index))
    this.byte(0)
  }

  /** A datagram: its length and a 32-bit digest of its bytes (one tight loop, then one number). */
  bytes(value: Uint8Array): void {
    this.number(value.length)
    let digest = 0x811c9dc5
    for (let index = 0; index < value.length; index++) digest = Math.imul(digest ^ value[index]!, 0x01000193)
    this.number(digest >>> 0)
  }

  hex(): string {
    return this.high.toString(16).padStart(8, "0") + this.low.toString(16).padStart(8, "0")
  }
}

/** A binary min-heap of events ordered by time, then by insertion, so ties break the same way every run. */
export class EventQueue<T> {
  private readonly times: Array<number> = []
  private readonly orders: Array<number> = []
  private readonly items: Array<T> = []
  private inserted = 0

  get size(): number {
    return this.items.length
  }

  push(timeUs: number, item: T): void {
    this.times.push(timeUs)
    this.orders.push(this.inserted++)
    this.items.push(item)
    let index = this.items.length - 1
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (!this.less(index, parent)) break
      this.swap(index, parent)
      index = parent
    }
  }

  peekTime(): number {
    return this.times[0] ?? Number.MAX_SAFE_INTEGER
  }

  pop(): { timeUs: number; item: T } | undefined {
    if (this.items.length === 0) return undefined
    const top = { timeUs: this.times[0]!, item: this.items[0]! }
    const last = this.items.length - 1
    this.swap(0, last)
    this.times.pop()
    this.orders.pop()
    this.items.pop()
    let index = 0
    for (;;) {
      const left = index * 2 + 1
      const right = left + 1
      let smallest = index
      if (left < this.items.length && this.less(left, smallest)) smallest = left
      if (right < this.items.length && this.less(right, smallest)) smallest = right
      if (smallest === index) break
      this.swap(index, smallest)
      index = smallest
    }
    return top
  }

  private less(left: number, right: number): boolean {
    const lt = this.times[left]!
    const rt = this.times[right]!
    return lt < rt || (lt === rt && this.orders[left]! < this.orders[right]!)
  }

  private swap(left: number, right: number): void {
    const time = this.times[left]!
    this.times[left] = this.times[right]!
    this.times[right] = time
    const order = this.orders[left]!
    this.orders[left] = this.orders[right]!
    this.orders[right] = order
    const item = this.items[left]!
    this.items[left] = this.items[right]!
    this.items[right] = item
  }
}
