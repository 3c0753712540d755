import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = `${root}dist/acp.mjs`

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

  it("lists the command groups that exist in --help", () => {
    const help = acp("--help")
    expect(help.status).toBe(0)
    const subcommands = help.stdout.split("SUBCOMMANDS")[1] ?? ""
    expect(subcommands).toMatch(/^\s+model\s/m)
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
})
