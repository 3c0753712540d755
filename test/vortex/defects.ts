/**
 * The outside findings, reintroduced one at a time on a scratch worktree, each run under the
 * fault harness until it is caught: `node test/vortex/defects.ts [--only a,b] [--duration S]
 * [--seed N] [--budget S]`. Each defect is a patch in this directory; the run prints, per defect,
 * the seed and the wall time it took and the checks that named it. Needs the bundle's build
 * (esbuild) and the harness's requirements (root for tmpfs, faketime for clocks).
 */
import { spawnSync } from "node:child_process"
import { readdirSync, rmSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const here = join(root, "test/vortex/defects")
const flag = (name: string) => {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? undefined : process.argv[index + 1]
}
const only = flag("only")?.split(",")
const duration = Number(flag("duration") ?? 120)
const firstSeed = Number(flag("seed") ?? 34)
const budgetS = Number(flag("budget") ?? 600)
const defects = readdirSync(here)
  .filter((file) => file.endsWith(".patch"))
  .map((file) => file.slice(0, -".patch".length))
  .filter((name) => only === undefined || only.includes(name))

const run = (command: string, args: ReadonlyArray<string>, cwd: string) => {
  const ran = spawnSync(command, args, { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  if (ran.status !== 0) throw new Error(`${command} ${args.join(" ")}: ${ran.stderr}${ran.stdout}`)
  return ran.stdout
}

const rows: Array<string> = []
for (const defect of defects) {
  const work = join("/tmp", `acp-defect-${defect}`)
  spawnSync("git", ["worktree", "remove", "--force", work], { cwd: root })
  rmSync(work, { recursive: true, force: true })
  run("git", ["worktree", "add", "--detach", work, "HEAD"], root)
  try {
    symlinkSync(join(root, "node_modules"), join(work, "node_modules"))
    run("git", ["apply", join(here, `${defect}.patch`)], work)
    run(process.execPath, ["adapters/cli/build.ts"], work)
    const started = performance.now()
    let caught: string | undefined
    for (let seed = firstSeed; (performance.now() - started) / 1000 < budgetS; seed++) {
      const ran = spawnSync(
        process.execPath,
        [
          join(work, "dist/acp.mjs"),
          "vortex",
          "--seed",
          String(seed),
          "--duration",
          String(duration),
          "--dir",
          join(work, `run-${seed}`),
        ],
        { cwd: work, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
      )
      const output = ran.stdout + ran.stderr
      const checks = [...new Set([...output.matchAll(/^ {2}([a-z-]+): /gm)].map((match) => match[1]))]
      const wallS = ((performance.now() - started) / 1000).toFixed(0)
      process.stdout.write(
        `${defect}: seed ${seed}: ${ran.status === 0 ? "passed" : `caught (${checks.join(", ")})`} at ${wallS} s\n`,
      )
      if (ran.status !== 0) {
        caught = `${defect}: caught by seed ${seed} after ${wallS} s of runs (${duration} s each): ${checks.join(", ")}`
        const first = output.split("\n").find((line) => /^ {2}[a-z-]+: /.test(line))
        if (first !== undefined) caught += `\n    ${first.trim()}`
        break
      }
    }
    rows.push(caught ?? `${defect}: NOT caught within ${budgetS} s`)
  } finally {
    spawnSync("git", ["worktree", "remove", "--force", work], { cwd: root })
  }
}
process.stdout.write(`\n${rows.join("\n")}\n`)
process.exitCode = rows.some((row) => row.includes("NOT caught")) ? 1 : 0
