/** Nearest-rank percentiles: the one definition the simulator, the benchmarks and the CLI report. */

/** The p-th percentile (0 < p ≤ 100) of values sorted ascending; undefined when there are none. */
export const percentileOfSorted = (sorted: ArrayLike<number>, p: number): number | undefined =>
  sorted.length === 0
    ? undefined
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]

export interface Percentiles {
  readonly samples: number
  readonly p50: number | null
  readonly p99: number | null
  readonly max: number | null
}

export const percentiles = (values: ReadonlyArray<number>): Percentiles => {
  const sorted = [...values].sort((left, right) => left - right)
  const at = (p: number) => percentileOfSorted(sorted, p) ?? null
  return { samples: sorted.length, p50: at(50), p99: at(99), max: sorted.at(-1) ?? null }
}
