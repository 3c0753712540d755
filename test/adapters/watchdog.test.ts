/**
 * The node's watchdog on real processes: a process that runs it and is then stopped (SIGSTOP,
 * as a stuck host or the fault harness stops a node) is killed within the timeout; one that
 * ends by itself takes its watchdog with it.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, describe, expect, it } from "vitest"
import { alive } from "../../adapters/cli/commands/cluster.ts"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const watchdogModule = join(root, "adapters/node/watchdog.ts")

/** A process that runs the watchdog (timeout `timeoutMs`), prints its watchdog's pid, and ends on a line on stdin. */
const fed = (timeoutMs: number) => {
  const script = `
    import { Effect } from "effect"
    import { watchdog } from ${JSON.stringify(watchdogModule)}
    const program = Effect.scoped(Effect.gen(function* () {
      const { child } = yield* watchdog(${timeoutMs})
      console.log(child.pid)
      yield* Effect.callback((resume) => { process.stdin.once("data", () => resume(Effect.void)) })
    }))
    await Effect.runPromise(program)
    process.exit(0)
  `
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"],
  })
  const watchdogPid = new Promise<number>((resolve) =>
    child.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
  )
  return { child, watchdogPid }
}

const started: Array<ChildProcess> = []
afterEach(() => {
  for (const child of started.splice(0)) child.kill("SIGKILL")
})

describe("the node's watchdog", () => {
  it("kills the node it watches once the node has been stopped for longer than the timeout", async () => {
    const { child, watchdogPid } = fed(600)
    started.push(child)
    const watcher = await watchdogPid
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once("exit", (_code, signal) => resolve(signal)),
    )
    const stoppedAt = performance.now()
    child.kill("SIGSTOP")
    expect(await exited).toBe("SIGKILL")
    const tookMs = performance.now() - stoppedAt
    expect(tookMs).toBeGreaterThanOrEqual(550)
    expect(tookMs).toBeLessThan(5_000)
    await eventually(() => !alive(watcher), 5_000)
  })

  it("ends with the node it watches when the node ends by itself", async () => {
    const { child, watchdogPid } = fed(600)
    started.push(child)
    const watcher = await watchdogPid
    expect(alive(watcher)).toBe(true)
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    child.stdin.write("stop\n")
    expect(await exited).toBe(0)
    await eventually(() => !alive(watcher), 5_000)
  })
})
