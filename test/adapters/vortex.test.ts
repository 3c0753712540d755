/**
 * The fault harness in CI: three real node processes for 45 s under seed 34's schedule (a full
 * disk under the primary, a pause, a wall-clock step of +7 s watched in quiet, a kill of the
 * primary with its datagrams replayed while it is down, replays), with the workload through the API and the CLI, and the checkers on the history:
 * no violation, and the figures printed. Longer runs are local: `acp vortex --duration 300`.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-vortex-"))
const basePort = 30_000 + (process.pid % 1_000) * 10

describe("the fault harness on real processes (CI run)", () => {
  afterAll(() => rmSync(home, { recursive: true, force: true }))

  it("runs seed 34 for 45 s: faults injected, writes acknowledged, no violation", () => {
    const dir = join(home, "run")
    const ran = spawnSync(
      process.execPath,
      [bundle, "vortex", "--seed", "34", "--duration", "45", "--base-port", String(basePort), "--dir", dir],
      { cwd: root, encoding: "utf8", timeout: 170_000 },
    )
    const output = ran.stdout + ran.stderr
    process.stdout.write(output)
    expect(ran.status, output).toBe(0)
    expect(output).toContain("acp vortex --seed 34 --nodes 3 --duration 45")
    expect(output).toContain("violations: none")
    const acknowledged = Number(/writes: (\d+) acknowledged/.exec(output)?.[1])
    expect(acknowledged).toBeGreaterThan(200)
    const asRoot = process.getuid?.() === 0
    for (const kind of ["kill", "pause", "clock", "replay", ...(asRoot ? ["disk-full"] : [])])
      expect(output).toMatch(new RegExp(`faults:.*\\b${kind} \\d`))
    expect(output).toMatch(/new primaries: [1-9]/)
    // A passing run leaves nothing behind.
    expect(existsSync(dir)).toBe(false)
  }, 180_000)
})
