/** How the decision log cuts a snapshot's text into chunks that each fit a datagram. */
import type { Snapshot } from "./log.ts"

/** A snapshot as JSON text and back (undefined for text that is not JSON): the default codec of its chunks. */
export const jsonSnapshotText = {
  encode: (snapshot: Snapshot<unknown>) => JSON.stringify(snapshot),
  decode: (text: string): Snapshot<unknown> | undefined => {
    try {
      return JSON.parse(text) as Snapshot<unknown>
    } catch {
      return undefined
    }
  },
}

const utf8 = new TextEncoder()

/**
 * The longest slice of `text` from `offset` whose JSON (as a string in a message) stays within
 * `budget` bytes of UTF-8, and at least one character; never splits a surrogate pair.
 */
export const chunkOf = (text: string, offset: number, budget: number): string => {
  if (!Number.isFinite(budget)) return text.slice(offset)
  let length = Math.max(1, Math.min(text.length - offset, Math.floor(budget / 2)))
  for (;;) {
    let end = offset + length
    const last = text.charCodeAt(end - 1)
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end = length > 1 ? end - 1 : end + 1
    const slice = text.slice(offset, end)
    if (slice.length <= 2 || utf8.encode(JSON.stringify(slice)).length <= budget) return slice
    length = Math.floor(length / 2)
  }
}
