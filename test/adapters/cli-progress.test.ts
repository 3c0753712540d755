import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { nearestClusterDir } from "../../adapters/cli/client.ts"
import { progressOn } from "../../adapters/cli/progress.ts"

const recorder = (isTTY: boolean) => {
  const written: Array<string> = []
  return { stream: { isTTY, write: (text: string) => written.push(text) }, written }
}

describe("progressOn", () => {
  it("redraws one line in place on a terminal", () => {
    const { stream, written } = recorder(true)
    const progress = progressOn(stream)
    for (let seed = 1; seed <= 3; seed++) progress.update(`seed ${seed}/3`, seed / 3)
    progress.done("3 seeds, 0 failing")
    expect(written).toEqual([
      "\rseed 1/3\x1b[K",
      "\rseed 2/3\x1b[K",
      "\rseed 3/3\x1b[K",
      "\n",
      "3 seeds, 0 failing\n",
    ])
  })

  it("writes plain lines elsewhere: one at the start and at each tenth of the work, and only changed texts without a fraction", () => {
    const { stream, written } = recorder(false)
    const progress = progressOn(stream)
    for (let seed = 1; seed <= 500; seed++) progress.update(`seed ${seed}/500`, seed / 500)
    progress.done()
    expect(written.length).toBe(11) // the start, then each tenth up to the whole
    expect(written.every((line) => line.endsWith("\n") && !line.includes("\r"))).toBe(true)
    expect(written.at(-1)).toBe("seed 500/500\n")
    const { stream: other, written: lines } = recorder(false)
    const steps = progressOn(other)
    for (const line of ["electing", "electing", "primary: n1", "primary: n1"]) steps.update(line)
    expect(lines).toEqual(["electing\n", "primary: n1\n"])
  })

  it("a note stays above the redrawn line on a terminal, and is one plain line elsewhere, even with progress off", () => {
    const { stream, written } = recorder(true)
    const progress = progressOn(stream)
    progress.update("1/3", 1 / 3)
    progress.note("seed 1 (safety): …")
    progress.update("2/3", 2 / 3)
    expect(written).toEqual(["\r1/3\x1b[K", "\r\x1b[K", "seed 1 (safety): …\n", "\r2/3\x1b[K"])
    const { stream: plain, written: lines } = recorder(false)
    progressOn(plain, false).note("seed 2 (liveness): …")
    expect(lines).toEqual(["seed 2 (liveness): …\n"])
  })

  it("writes nothing when it is off (--json)", () => {
    const { stream, written } = recorder(true)
    const progress = progressOn(stream, false)
    progress.update("x", 0.5)
    progress.done("y")
    expect(written).toEqual([])
  })
})

describe("nearestClusterDir", () => {
  const saved = { cwd: process.cwd(), home: process.env.ACP_HOME }
  const top = mkdtempSync(join(tmpdir(), "acp-find-"))
  afterEach(() => {
    process.chdir(saved.cwd)
    if (saved.home === undefined) delete process.env.ACP_HOME
    else process.env.ACP_HOME = saved.home
  })

  it("finds the nearest .acp in this directory or one above it, and ACP_HOME before either", () => {
    delete process.env.ACP_HOME
    mkdirSync(join(top, ".acp"), { recursive: true })
    mkdirSync(join(top, "a", "b"), { recursive: true })
    process.chdir(join(top, "a", "b"))
    expect(nearestClusterDir()).toBe(join(top, ".acp"))
    process.env.ACP_HOME = join(top, "elsewhere")
    expect(nearestClusterDir()).toBe(join(top, "elsewhere"))
    delete process.env.ACP_HOME
    rmSync(join(top, ".acp"), { recursive: true })
    expect(nearestClusterDir()?.startsWith(top)).not.toBe(true)
    rmSync(top, { recursive: true, force: true })
  })
})
