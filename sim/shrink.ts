/**
 * Shrinking: reduce a failing run's fault schedule to a smallest one that still fails the same
 * checker. The schedule is data, so each candidate is simply a replay with that schedule.
 * Passes, repeated until none helps: drop whole fault events; zero each continuous rate and the
 * clock drift; halve each remaining event's duration.
 */
import type { Schedule, SimOptions } from "./scenario.ts"
import { drawnTopology, drawScenario } from "./scenario.ts"
import { type SimResult, simulate } from "./world.ts"

export interface ShrinkStep {
  readonly trial: number
  readonly accepted: boolean
  readonly description: string
}

export interface ShrinkResult {
  readonly checker: string
  readonly original: Schedule
  readonly minimal: Schedule
  readonly result: SimResult
  readonly trials: number
  readonly steps: ReadonlyArray<ShrinkStep>
}

const failsWith = (result: SimResult, checker: string) =>
  result.violations.some((violation) => violation.checker === checker)

export const shrink = (
  given: SimOptions,
  failing: SimResult,
  maxTrials = 200,
  onStep: (step: ShrinkStep) => void = () => {},
): ShrinkResult | undefined => {
  const first = failing.violations[0]
  if (first === undefined) return undefined
  // The schedule is drawn for the topology the run had: drawn without it (one domain), a stay-down
  // meant for a plain node fell on a relay, and the shrinker chased a different failure.
  const options = drawnTopology(given)
  const checker = first.checker
  const original = options.schedule ?? drawScenario(options).schedule
  let best = original
  let bestResult = failing
  let trials = 0
  const steps: Array<ShrinkStep> = []
  const attempt = (candidate: Schedule, description: string): boolean => {
    if (trials >= maxTrials) return false
    trials++
    // A candidate only has to fail the same way: it stops at that checker's first violation.
    const result = simulate({ ...options, schedule: candidate, stopAt: checker })
    const accepted = failsWith(result, checker)
    const step = { trial: trials, accepted, description }
    steps.push(step)
    onStep(step)
    if (accepted) {
      best = candidate
      bestResult = result
    }
    return accepted
  }
  let improved = true
  while (improved && trials < maxTrials) {
    improved = false
    for (let index = best.events.length - 1; index >= 0; index--) {
      const event = best.events[index]!
      const events = best.events.filter((_, position) => position !== index)
      if (attempt({ ...best, events }, `drop ${event.kind} at ${event.atMs} ms`)) improved = true
    }
    const rates = best.rates
    for (const key of ["lossPermille", "duplicatePermille", "jitterUs"] as const) {
      if (rates[key] !== 0 && attempt({ ...best, rates: { ...best.rates, [key]: 0 } }, `${key} = 0`))
        improved = true
    }
    if (
      best.driftPpm.some((ppm) => ppm !== 0) &&
      attempt({ ...best, driftPpm: best.driftPpm.map(() => 0) }, "no clock drift")
    ) {
      improved = true
    }
    best.events.forEach((event, index) => {
      if (event.durationMs < 50) return
      const shorter = { ...event, durationMs: Math.floor(event.durationMs / 2) }
      const events = best.events.map((other, position) => (position === index ? shorter : other))
      if (attempt({ ...best, events }, `halve ${event.kind} at ${event.atMs} ms to ${shorter.durationMs} ms`))
        improved = true
    })
  }
  return { checker, original, minimal: best, result: bestResult, trials, steps }
}
