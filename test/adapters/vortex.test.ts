/**
 * The fault harness in CI: three real node processes for 45 s under seed 41's schedule (a kill
 * of the primary with its datagrams replayed, a pause, a partition, a one-way cut, replays and a
 * clock step), with the workload through the API and the CLI, and the checkers on the history:
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

  it("runs seed 41 for 45 s: faults injected, writes acknowledged, no violation", () => {
    const dir = join(home, "run")
    const ran = spawnSync(
      process.execPath,
      [bundle, "vortex", "--seed", "41", "--duration", "45", "--base-port", String(basePort), "--dir", dir],
      { cwd: root, encoding: "utf8", timeout: 170_000 },
    )
    const output = ran.stdout + ran.stderr
    process.stdout.write(output)
    expect(ran.status, output).toBe(0)
    expect(output).toContain("acp vortex --seed 41 --nodes 3 --duration 45")
    expect(output).toContain("violations: none")
    const acknowledged = Number(/writes: (\d+) acknowledged/.exec(output)?.[1])
    expect(acknowledged).toBeGreaterThan(200)
    for (const kind of ["kill", "pause", "partition", "one-way", "replay"])
      expect(output).toMatch(new RegExp(`faults:.*\\b${kind} \\d`))
    expect(output).toMatch(/new primaries: [1-9]/)
    // A passing run leaves nothing behind.
    expect(existsSync(dir)).toBe(false)
  }, 180_000)
})
