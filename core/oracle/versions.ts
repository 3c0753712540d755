/**
 * The order of versions as the checkers write it — milliseconds, then the logical counter, then
 * the writer's id — on purpose not imported from `core/cdb/hlc.ts`: an oracle that shared the
 * code it judges would be blind to a bug in it (the mutation harness plants some there). Used by
 * the simulator's model checker and the fault harness's checkers, never by the product.
 */
export interface Version {
  readonly ms: number
  readonly counter: number
  readonly origin: string
}

/** The order of versions, as the oracle writes it (positive: `left` is the later). */
export const later = (left: Version, right: Version): number =>
  left.ms !== right.ms
    ? left.ms - right.ms
    : left.counter !== right.counter
      ? left.counter - right.counter
      : left.origin === right.origin
        ? 0
        : left.origin < right.origin
          ? -1
          : 1

/** A version as the checkers print it (`origin@ms.counter`), or "nothing". */
export const show = (version: Version | undefined, tomb?: boolean): string =>
  version === undefined
    ? "nothing"
    : `${version.origin}@${version.ms}.${version.counter}${tomb === true ? " (deleted)" : ""}`
