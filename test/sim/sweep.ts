/** A bounded sweep for CI: each seed is one test, named by its seed, failing with its replay command. */
import { expect, it } from "vitest"
import { defaultSimOptions, type SimOptions } from "../../sim/scenario.ts"
import { simulate } from "../../sim/world.ts"

export const sweep = (from: number, to: number, overrides: Partial<SimOptions>): void => {
  for (let seed = from; seed <= to; seed++) {
    it(`seed ${seed}: no violations, converges`, () => {
      const result = simulate({ ...defaultSimOptions, ...overrides, seed })
      expect(result.violations, `replay: ${result.replay}`).toEqual([])
      expect(result.converged).toBe(true)
    })
  }
}
