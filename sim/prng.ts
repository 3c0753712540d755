/**
 * The simulator's randomness (`Prng`, from core/random.ts), the hash of its trace, and its event
 * queue.
 */
export { Prng } from "../core/random.ts"

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
