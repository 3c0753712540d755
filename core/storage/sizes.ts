/**
 * Sizes as operators write them: a whole number of bytes, or a number with a unit — binary
 * (KiB, MiB, GiB, TiB) or decimal (K/KB, M/MB, G/GB, T/TB), case-insensitive, e.g. `1GiB`,
 * `512M`, `1.5 GiB`. A string that is not one is an error naming it and what was expected.
 */
const units: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1e12,
  tb: 1e12,
  tib: 1024 ** 4,
}

export type ParsedSize = { readonly bytes: number } | { readonly error: string }

export const parseSize = (text: string): ParsedSize => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = match === null ? undefined : units[match[2]!.toLowerCase()]
  if (match === null || unit === undefined)
    return {
      error: `"${text}" is not a size: expected bytes or a number with KiB, MiB, GiB, TiB (or K, M, G, T), e.g. 2GiB`,
    }
  const bytes = Math.round(Number(match[1]) * unit)
  if (!Number.isSafeInteger(bytes) || bytes <= 0) return { error: `"${text}" is not a size above 0 bytes` }
  return { bytes }
}

/** Bytes as a person reads them: the largest binary unit with at most one decimal. */
export const formatSize = (bytes: number): string => {
  for (const [unit, size] of [
    ["TiB", 1024 ** 4],
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const)
    if (bytes >= size) return `${(bytes / size).toFixed(1).replace(/\.0$/, "")} ${unit}`
  return `${bytes} B`
}
