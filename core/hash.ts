/** FNV-1a over a string's UTF-16 code units, continuing from `hash` (0x811c9dc5 to start). */
export const fnv1a32 = (hash: number, text: string): number => {
  let h = hash
  for (let index = 0; index < text.length; index++) {
    h ^= text.charCodeAt(index)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}
