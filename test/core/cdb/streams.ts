/** A generator of origin streams for CDB tests: each origin's changes numbered 1..n, on a few shared keys. */
import fc from "fast-check"
import type { Change } from "../../../core/cdb/codec.ts"

export const changeStreams = (options: {
  readonly origins: ReadonlyArray<string>
  readonly ops: ReadonlyArray<Change["op"]>
  readonly minLength: number
}): fc.Arbitrary<Array<Change>> =>
  fc
    .array(
      fc.record({
        origin: fc.constantFrom(...options.origins),
        op: fc.constantFrom(...options.ops),
        id: fc.constantFrom("k1", "k2", "k3"),
        ms: fc.integer({ min: 1, max: 50 }),
        counter: fc.nat(3),
        byte: fc.nat(255),
      }),
      { minLength: options.minLength, maxLength: 40 },
    )
    .map((drafts) => {
      const seqs = new Map<string, number>()
      return drafts.map((draft): Change => {
        const seq = (seqs.get(draft.origin) ?? 0) + 1
        seqs.set(draft.origin, seq)
        return {
          origin: draft.origin,
          seq,
          op: draft.op,
          kind: draft.op === "meta" ? "service" : "system",
          id: draft.id,
          ms: draft.op === "meta" ? 0 : draft.ms,
          counter: draft.op === "meta" ? 0 : draft.counter,
          value: draft.op === "delete" ? null : new Uint8Array([draft.byte, 7]),
        }
      })
    })
