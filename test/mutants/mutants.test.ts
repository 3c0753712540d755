/**
 * The mutation harness in CI: the whole catalogue still applies (each mutant's text occurs once
 * in its file), it covers what the design promises, and one mutant is planted, caught by the
 * default sweep, replayed, passes unmutated — the harness end to end (`npm run mutants` runs
 * the whole catalogue, nightly-sized).
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { catalogue, plant } from "./catalogue.ts"

describe("the mutation catalogue", () => {
  it.each(catalogue.map((mutant) => [mutant.name, mutant] as const))(
    "%s still applies to its file",
    (_, mutant) => {
      const source = readFileSync(mutant.file, "utf8")
      const planted = plant(mutant, source)
      expect(planted).not.toBe(source)
    },
  )

  it("names each mutant once and covers every promise the design makes", () => {
    expect(new Set(catalogue.map((mutant) => mutant.name)).size).toBe(catalogue.length)
    expect(new Set(catalogue.map((mutant) => mutant.covers))).toEqual(
      new Set([
        "conflict resolution",
        "repair ranges",
        "digests",
        "flow control",
        "tombstones",
        "relays",
        "ack/persist order",
        "votes",
        "leases",
        "fencing",
        "slot expiry",
        "hypervisor",
        "alarms",
        "decisions",
        "storage",
      ]),
    )
  })

  it("refuses a mutant whose text is gone (the catalogue gone stale)", () => {
    const mutant = catalogue[0]!
    expect(() => plant(mutant, "nothing of it here")).toThrow(/occurs nowhere/)
    expect(() => plant(mutant, `${mutant.find}${mutant.find}`)).toThrow(/more than once/)
  })

  it("plants one mutant, catches it with the default sweep, replays it and passes it unmutated", () => {
    const output = execFileSync(
      process.execPath,
      ["test/mutants/run.ts", "--only", "digest-counts-buffered", "--no-shrink", "--workers", "1"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 },
    )
    expect(output).toContain("1 of 1 mutants caught")
    expect(output).toMatch(
      /\| digest-counts-buffered \| digests \| yes \| [\d.]+ \| \d+ \| digest \| yes \| yes \|/,
    )
  }, 150_000)
})
