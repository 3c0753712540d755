/**
 * The mutation harness: plants each bug of the catalogue (`catalogue.ts`) in its core, one at a
 * time, bundles the CLI with it, and runs the sweep a user would type on fresh seeds
 * (`acp sim sweep --seeds FROM.. --fail-fast`) for at most `--budget` seconds. A mutant the
 * sweep fails on is caught; then its printed replay command must fail the same way on the
 * mutant, pass on the unmutated code (the failure is the bug's, not the seed's), and shrink to a
 * schedule whose own replay still fails. Prints a table (mutant, caught, seconds, …) and, with
 * `--out`, writes it as JSON.
 *
 *   npm run mutants                        # the whole catalogue, 60 s each
 *   npm run mutants -- --only lease-without-margin,nack-skips-first --no-shrink
 *
 * Exit code 1 when a mutant is missed or a catch does not replay, pass unmutated, or shrink.
 */
import { execFile, spawn } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { resolve } from "node:path"
import { parseArgs } from "node:util"
import { build, type Plugin } from "esbuild"
import { bundleOptions } from "../../adapters/cli/bundle.ts"
import { progressOn } from "../../adapters/cli/progress.ts"
import { catalogue, type Mutant, plant } from "./catalogue.ts"

const { values: args } = parseArgs({
  options: {
    only: { type: "string" },
    from: { type: "string", default: "1000000" },
    budget: { type: "string", default: "60" },
    workers: { type: "string", default: String(availableParallelism()) },
    "no-shrink": { type: "boolean", default: false },
    "shrink-trials": { type: "string", default: "30" },
    out: { type: "string" },
  },
})

const budgetMs = Number(args.budget) * 1000
const fromSeed = Number(args.from)
const selected =
  args.only === undefined
    ? catalogue
    : args.only.split(",").map((name) => {
        const mutant = catalogue.find((candidate) => candidate.name === name.trim())
        if (mutant === undefined) throw new Error(`--only: no mutant ${name} in the catalogue`)
        return mutant
      })

const plantPlugin = (mutant: Mutant): Plugin => ({
  name: "plant-mutant",
  setup(builder) {
    const target = resolve(mutant.file)
    builder.onLoad({ filter: /\.ts$/ }, (loaded) =>
      loaded.path === target
        ? { contents: plant(mutant, readFileSync(target, "utf8")), loader: "ts" }
        : undefined,
    )
  },
})

/** The CLI bundled from the working tree, with the mutant planted (or none: the unmutated code to compare with). */
const bundle = async (mutant: Mutant | undefined): Promise<string> => {
  mkdirSync("dist/mutants", { recursive: true })
  const outfile = `dist/mutants/${mutant?.name ?? "unmutated"}.mjs`
  // Under dist/ so the bundle finds node_modules as the real one does.
  await build({
    ...bundleOptions(outfile),
    sourcemap: false,
    plugins: mutant === undefined ? [] : [plantPlugin(mutant)],
  })
  return outfile
}

interface Failure {
  readonly seed: number
  readonly outcome: string
  readonly violations: ReadonlyArray<{ readonly checker: string; readonly message: string }>
  readonly replay: string
}

/** The sweep a user types, until it fails or the budget is spent. */
const sweep = (
  cli: string,
  from: number,
  limitMs: number,
  onSecond: (seconds: number) => void,
): Promise<{ readonly failure?: Failure; readonly ms: number; readonly ran?: number }> =>
  new Promise((done, fail) => {
    const started = performance.now()
    const child = spawn(
      process.execPath,
      [
        cli,
        "sim",
        "sweep",
        `--seeds`,
        `${from}..${from + 999_999}`,
        "--fail-fast",
        "--json",
        "--workers",
        String(args.workers),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    )
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const ticker = setInterval(() => onSecond((performance.now() - started) / 1000), 1000)
    let stopped = false
    const limit = setTimeout(() => {
      stopped = true
      child.kill("SIGTERM")
    }, limitMs)
    child.on("error", fail)
    child.on("close", (code, signal) => {
      clearInterval(ticker)
      clearTimeout(limit)
      const ms = Math.round(performance.now() - started)
      // The CLI stops on SIGTERM with its own exit code (130), not by the signal.
      if (stopped || signal !== null) return done({ ms })
      const lines = stdout.trim().split("\n")
      try {
        const result = JSON.parse(lines[lines.length - 1] ?? "") as {
          ran: number
          failures: ReadonlyArray<Failure>
        }
        const failure = result.failures[0]
        done(failure === undefined ? { ms, ran: result.ran } : { failure, ms, ran: result.ran })
      } catch {
        fail(new Error(`sweep exited ${code} without a result: ${stderr.slice(-2000)}`))
      }
    })
  })

/** Runs a printed command (`npx acp sim …`) on a given bundle; resolves to its exit code and JSON. */
const runPrinted = (
  cli: string,
  command: string,
  extra: ReadonlyArray<string>,
  timeoutMs: number,
): Promise<{ readonly code: number | null; readonly json?: Record<string, unknown> }> => {
  const words = command.split(" ")
  if (words[0] !== "npx" || words[1] !== "acp") throw new Error(`not a printed acp command: ${command}`)
  return new Promise((done) => {
    execFile(
      process.execPath,
      [cli, ...words.slice(2), ...extra, "--json"],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
        try {
          done({ code, json: JSON.parse(stdout) as Record<string, unknown> })
        } catch {
          done({ code })
        }
      },
    )
  })
}

interface Row {
  readonly mutant: string
  readonly covers: string
  readonly caught: boolean
  readonly seconds: number
  readonly seed?: number
  readonly outcome?: string
  readonly checker?: string
  readonly message?: string
  readonly replays?: boolean
  readonly passesUnmutated?: boolean
  readonly shrunk?: string
  readonly replay?: string
  /** Seeds the sweep met that fail the unmutated code too (passed over). */
  readonly alsoUnmutated?: ReadonlyArray<number>
}

const progress = progressOn(process.stderr)
const rows: Array<Row> = []
// Every bundle comes from the tree as it is now: the unmutated one too, to compare with.
const unmutatedCli = await bundle(undefined)
for (const [index, mutant] of selected.entries()) {
  const label = `[${index + 1}/${selected.length}] ${mutant.name}`
  progress.update(`${label}: bundling`)
  const cli = await bundle(mutant)
  // The sweep goes on past a seed that fails the unmutated code too (a bug of the code, not of
  // the mutant: it is listed, and the time it took counts).
  let from = fromSeed
  let spentMs = 0
  let failure: Failure | undefined
  const alsoUnmutated: Array<number> = []
  while (spentMs < budgetMs) {
    const swept = await sweep(cli, from, budgetMs - spentMs, (seconds) =>
      progress.update(
        `${label}: sweeping, ${Math.round(spentMs / 1000 + seconds)} s`,
        (spentMs / 1000 + seconds) / (budgetMs / 1000),
      ),
    )
    spentMs += swept.ms
    if (swept.failure === undefined) break
    const unmutated = await runPrinted(unmutatedCli, swept.failure.replay, [], 120_000)
    if (unmutated.code === 0) {
      failure = swept.failure
      break
    }
    alsoUnmutated.push(swept.failure.seed)
    progress.note(`${label}: seed ${swept.failure.seed} fails the unmutated code too; sweeping on`)
    from = swept.failure.seed + 1
  }
  const seconds = Math.round(spentMs / 100) / 10
  if (failure === undefined) {
    progress.note(`${label}: MISSED (${seconds} s)`)
    rows.push({ mutant: mutant.name, covers: mutant.covers, caught: false, seconds, alsoUnmutated })
    continue
  }
  const first = failure.violations[0]
  progress.update(`${label}: caught by seed ${failure.seed}; replaying`)
  const replayed = await runPrinted(cli, failure.replay, [], 120_000)
  const replays =
    replayed.code !== 0 && (replayed.json?.traceHash ?? "") !== "" && replayed.json !== undefined
  // Checked above: the seed passes the unmutated code.
  const passesUnmutated = true
  let shrunk: string | undefined
  if (!args["no-shrink"]) {
    progress.update(`${label}: caught by seed ${failure.seed}; shrinking`)
    // Bounded: a candidate is a whole replay (a liveness failure runs its full minute after the
    // heal), so the first passes (whole fault events dropped, rates zeroed) are what fits.
    const shrinking = await runPrinted(
      cli,
      failure.replay,
      ["--shrink", "--shrink-trials", String(args["shrink-trials"])],
      300_000,
    )
    const report = shrinking.json?.shrunk as
      | { readonly schedule: { readonly events: ReadonlyArray<unknown> }; readonly replay: string }
      | undefined
    const scenario = shrinking.json?.scenario as
      | { readonly schedule: { readonly events: ReadonlyArray<unknown> } }
      | undefined
    if (report === undefined) shrunk = shrinking.code === null ? "no (timed out)" : "no"
    else {
      const again = await runPrinted(cli, report.replay, [], 120_000)
      shrunk =
        again.code !== 0
          ? `${scenario?.schedule.events.length ?? "?"} → ${report.schedule.events.length} fault events`
          : "no (the shrunk replay passes)"
    }
  }
  progress.note(
    `${label}: caught in ${seconds} s by seed ${failure.seed} (${failure.outcome}, ${first?.checker ?? "?"}): ${first?.message.slice(0, 160) ?? ""}`,
  )
  rows.push({
    mutant: mutant.name,
    covers: mutant.covers,
    caught: true,
    seconds,
    seed: failure.seed,
    outcome: failure.outcome,
    ...(first === undefined ? {} : { checker: first.checker, message: first.message }),
    replays,
    passesUnmutated,
    ...(shrunk === undefined ? {} : { shrunk }),
    replay: failure.replay,
    alsoUnmutated,
  })
}
progress.done()

const table = [
  "| mutant | covers | caught | seconds | seed | checker | replays | passes unmutated | shrinks |",
  "|---|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (row) =>
      `| ${row.mutant} | ${row.covers} | ${row.caught ? "yes" : "**no**"} | ${row.seconds} | ${row.seed ?? ""} | ${row.checker ?? ""} | ${row.replays === undefined ? "" : row.replays ? "yes" : "**no**"} | ${row.passesUnmutated === undefined ? "" : row.passesUnmutated ? "yes" : "**no**"} | ${row.shrunk ?? ""} |`,
  ),
]
const caught = rows.filter((row) => row.caught).length
console.log(table.join("\n"))
const failingUnmutated = [...new Set(rows.flatMap((row) => row.alsoUnmutated ?? []))]
if (failingUnmutated.length > 0)
  console.log(`\nseeds that fail the unmutated code too (passed over): ${failingUnmutated.join(", ")}`)
console.log(
  `\n${caught} of ${rows.length} mutants caught within ${budgetMs / 1000} s each (seeds from ${fromSeed}, ${args.workers} workers)`,
)
if (args.out !== undefined)
  writeFileSync(args.out, `${JSON.stringify({ fromSeed, budgetMs, rows }, null, 2)}\n`)
const sound = rows.every(
  (row) =>
    row.caught &&
    row.replays === true &&
    row.passesUnmutated === true &&
    (row.shrunk === undefined || row.shrunk.includes("→")),
)
process.exitCode = sound ? 0 : 1
