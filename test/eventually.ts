/**
 * The one polling helper of the tests: calls `check` until it returns a value (anything but
 * `undefined` or `false`, or a promise of one) and returns that value; fails after `ms`. A thrown
 * or rejected check counts as "not yet". The bound only limits a failure: a passing check returns
 * as soon as it holds.
 */
export const eventually = async <A>(
  check: () => A | undefined | false | Promise<A | undefined | false>,
  ms = 20_000,
  everyMs = 100,
): Promise<A> => {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${ms} ms${last === undefined ? "" : `: ${String(last)}`}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
