import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = `${root}dist/acp.mjs`
mkdirSync(`${root}reports`, { recursive: true })

/** Runs the bundled `acp` binary exactly as `npx acp` would, on the pinned Node. */
const acp = (...args: ReadonlyArray<string>) => {
  const result = spawnSync(process.execPath, [bundle, ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 30_000,
  })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

describe("acp (bundled CLI)", () => {
  it("exists after install: the prepare script bundles it", () => {
    expect(existsSync(bundle), "dist/acp.mjs is missing: run `npm install` or `npm run build`").toBe(true)
  })

  it("is executable and runs through its shebang, as npx runs it", () => {
    expect(statSync(bundle).mode & 0o111).not.toBe(0)
    const direct = spawnSync(bundle, ["--version"], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` },
    })
    expect(direct.status, direct.stderr).toBe(0)
  })

  it("lists the command groups that exist in --help", () => {
    const help = acp("--help")
    expect(help.status).toBe(0)
    const subcommands = help.stdout.split("SUBCOMMANDS")[1] ?? ""
    expect(subcommands).toMatch(/^\s+model\s/m)
    expect(subcommands).toMatch(/^\s+sim\s/m)
  })

  it("prints a lifecycle table as JSON that matches the core's table", () => {
    const out = acp("model", "lifecycle", "task", "--json")
    expect(out.status).toBe(0)
    const parsed = JSON.parse(out.stdout) as {
      initial: string
      transitions: Array<{ state: string; event: string; next: string }>
    }
    expect(parsed.initial).toBe("queued")
    expect(parsed.transitions).toContainEqual({ state: "running", event: "succeed", next: "succeeded" })
  })

  it("refuses an unknown kind with a non-zero exit and names the known kinds", () => {
    const out = acp("model", "lifecycle", "spaceship")
    expect(out.status).not.toBe(0)
    expect(out.stderr + out.stdout).toContain('"spaceship"')
    expect(out.stderr + out.stdout).toContain('"system"')
  })

  describe("sim", () => {
    it("prints the same traceHash twice for the same seed, with the fields the contract names", () => {
      const runs = [
        acp("sim", "--seed", "42", "--duration", "10s", "--json"),
        acp("sim", "--seed", "42", "--duration", "10s", "--json"),
      ]
      const [first, second] = runs.map((run) => {
        expect(run.status).toBe(0)
        return JSON.parse(run.stdout) as Record<string, unknown>
      }) as [Record<string, unknown>, Record<string, unknown>]
      for (const field of [
        "seed",
        "nodes",
        "virtualMs",
        "wallMs",
        "events",
        "datagramsDelivered",
        "changesApplied",
        "traceHash",
        "converged",
        "convergenceMs",
        "violations",
        "replay",
      ]) {
        expect(first).toHaveProperty(field)
      }
      expect(second.traceHash).toBe(first.traceHash)
      expect(first.violations).toEqual([])
      expect(first.replay).toContain("--seed 42")
    })

    it("exits 4 on a safety violation (the canary; a lost acknowledged write, when it is lost), 2 on bad usage", () => {
      expect(acp("sim", "--seed", "7", "--duration", "2s", "--canary").status).toBe(4)
      // fsync-lie: a disk that forgets what it said was durable. The loss is a safety violation
      // found at the node's restart, not a liveness failure at the end.
      const lied = acp("sim", "--seed", "3", "--duration", "20s", "--faults", "fsync-lie")
      expect(lied.status).toBe(4)
      expect(lied.stdout).toMatch(
        /VIOLATION durability at \d+ ms: n\d acknowledged its changes up to #\d+, but its store, at its restart, ends at #\d+/,
      )
      const usage = acp("sim", "--faults", "gremlins")
      expect(usage.status).toBe(2)
      expect(usage.stderr).toContain("unknown fault(s) gremlins")
    })

    it("writes a timeline report that names the seed and draws every node", () => {
      const file = `${root}reports/test-timeline.html`
      expect(acp("sim", "--seed", "5", "--duration", "5s", "--report", file).status).toBe(0)
      const html = readFileSync(file, "utf8")
      expect(html).toContain("ACP simulation, seed 5")
      for (const node of ["n1", "n2", "n3", "n4", "n5"]) expect(html).toContain(`>${node}</text>`)
    })

    it("sweeps a range of seeds on worker threads and reports the failing ones", () => {
      const out = acp(
        "sim",
        "sweep",
        "--seeds",
        "1..4",
        "--duration",
        "2s",
        "--workers",
        "2",
        "--canary",
        "--json",
      )
      expect(out.status).toBe(4)
      const report = JSON.parse(out.stdout) as {
        seeds: number
        failing: number
        failures: Array<{ seed: number; replay: string }>
      }
      expect(report.seeds).toBe(4)
      expect(report.failing).toBe(4)
      expect(report.failures.map((failure) => failure.seed)).toEqual([1, 2, 3, 4])
      expect(report.failures[0]?.replay).toContain("--canary")
    })

    it("prints each failure with its replay as it happens, stops at the first with --fail-fast, and stops a seed at its wall limit", () => {
      const failFast = acp(
        "sim",
        "sweep",
        "--seeds",
        "1..6",
        "--duration",
        "2s",
        "--workers",
        "1",
        "--canary",
        "--fail-fast",
        "--json",
      )
      expect(failFast.status).toBe(4)
      const stopped = JSON.parse(failFast.stdout) as { seeds: number; ran: number; failing: number }
      expect(stopped).toMatchObject({ seeds: 6, ran: 1, failing: 1 })
      expect(failFast.stderr).toContain("seed 1 (safety): ")
      expect(failFast.stderr).toContain("  replay: npx acp sim --seed 1 ")
      const limited = acp(
        "sim",
        "sweep",
        "--seeds",
        "1..2",
        "--workers",
        "1",
        "--seed-limit",
        "1ms",
        "--json",
      )
      expect(limited.status).toBe(5)
      const report = JSON.parse(limited.stdout) as {
        failures: Array<{ seed: number; violations: Array<{ checker: string }>; replay: string }>
      }
      expect(report.failures.map((failure) => [failure.seed, failure.violations[0]?.checker])).toEqual([
        [1, "time-limit"],
        [2, "time-limit"],
      ])
      expect(report.failures[1]?.replay).toContain("--seed 2 ")
      expect(acp("sim", "sweep", "--seeds", "1..2", "--seed-limit", "soon").stderr).toContain(
        "--seed-limit soon: expected a duration",
      )
    })

    it("sweeps in disjoint shards that merge into the whole sweep, and names a shard that is missing or doubled", () => {
      const dir = mkdtempSync(join(tmpdir(), "acp-shards-"))
      const sweep = ["sim", "sweep", "--seeds", "1..7", "--duration", "2s", "--workers", "1"]
      for (const index of [0, 1, 2]) {
        const out = acp(...sweep, "--shard", `${index}/3`, "--out", join(dir, `shard-${index}.json`))
        expect(out.status, out.stderr).toBe(0)
      }
      const shard = JSON.parse(readFileSync(join(dir, "shard-1.json"), "utf8")) as {
        outcomes: Array<{ seed: number; traceHash: string }>
      }
      expect(shard.outcomes.map((outcome) => outcome.seed)).toEqual([2, 5])
      const files = [0, 1, 2].map((index) => join(dir, `shard-${index}.json`))
      const merged = acp("sim", "sweep", "merge", ...files, "--json")
      expect(merged.status, merged.stderr).toBe(0)
      expect(JSON.parse(merged.stdout)).toMatchObject({ seeds: 7, shards: 3, failing: 0 })
      // A shard's seed is the same run as that seed alone.
      const alone = JSON.parse(acp("sim", "--seed", "5", "--duration", "2s", "--json").stdout) as {
        traceHash: string
      }
      expect(shard.outcomes[1]?.traceHash).toBe(alone.traceHash)
      const missing = acp("sim", "sweep", "merge", files[0]!, files[2]!)
      expect(missing.status).toBe(2)
      expect(missing.stderr).toContain("2 of 7 seeds missing (from shard(s) 1)")
      const doubled = acp("sim", "sweep", "merge", ...files, files[1]!)
      expect(doubled.status).toBe(2)
      expect(doubled.stderr).toMatch(/seed 2 is in both .*shard-1\.json and .*shard-1\.json/)
      rmSync(dir, { recursive: true, force: true })
    }, 60_000)
  })
})
