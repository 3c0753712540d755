/**
 * The architecture rules, as a scanner over source text, so the guard tests can run it on the
 * real tree and on deliberate violations alike.
 *
 * 1. Determinism: `core/` and `sim/` never read the wall clock, randomness or timers.
 * 2. Dependencies: `core/` imports only `core/` and effect; `sim/` imports only `sim/`, `core/`,
 *    effect and fast-check, never `adapters/`; `adapters/` never imports `sim/`, except
 *    `adapters/cli/`, the composition root of the `acp` binary, which chooses between the real
 *    adapters and the simulated world and so must see both.
 * 3. One composition: the node's drivers (`adapters/node/`, `sim/`) drive `core/node/` and never
 *    wire what it owns themselves — the CDB, election and hypervisor cores, alarm evaluation,
 *    health, HA placement and freshness, held service writes. Types they may name.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join, posix, relative } from "node:path"

export interface SourceFile {
  /** Path relative to the repository root, with `/` separators. */
  readonly path: string
  readonly text: string
}

export interface Violation {
  readonly rule: "determinism" | "imports" | "composition"
  readonly path: string
  readonly line: number
  readonly detail: string
}

const forbidden: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bDate\.now\b/, "Date.now"],
  [/\bnew Date\b/, "new Date"],
  [/\bMath\.random\b/, "Math.random"],
  [/\bperformance\.now\b/, "performance.now"],
  [/\b(?:setTimeout|setInterval|setImmediate|queueMicrotask)\b/, "a timer"],
  [/\bprocess\.hrtime\b/, "process.hrtime"],
  [/\brandomUUID\b/, "crypto.randomUUID"],
  [/\bgetRandomValues\b|\brandomBytes\b|\brandomInt\b/, "crypto randomness"],
  [/\bnode:timers\b/, "node:timers"],
  // Output is the driving side's job; a console call left in the core or the simulator is a leftover.
  [/\bconsole\.\w+\(/, "console output"],
]

const allowedPackages: Readonly<Record<string, ReadonlyArray<string>>> = {
  core: ["effect"],
  sim: ["effect", "fast-check"],
}
const forbiddenLayers: Readonly<Record<string, ReadonlyArray<string>>> = {
  core: ["adapters", "sim", "bench", "test"],
  sim: ["adapters", "bench", "test"],
  adapters: ["sim", "test"],
}

/** Removes comments while keeping line numbers, so prose about `Date.now` is not a violation. */
const stripComments = (text: string): string =>
  text
    .replace(/\/\*[\s\S]*?\*\//g, (block) => block.replace(/[^\n]/g, " "))
    .replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1")

const importPattern =
  /(?:\bimport\s+(?:type\s+)?(?:[\w*{}\s,$]+\s+from\s+)?|\bexport\s+(?:type\s+)?[\w*{}\s,$]+\s+from\s+|\bimport\s*\()\s*["']([^"']+)["']/g

/** What the node's composition owns: a driver that imports one of these (as a value) wires it again. */
const ownedByComposition: Readonly<Record<string, ReadonlyArray<string>>> = {
  "core/cdb/node.ts": ["CdbNode"],
  "core/monitor/election.ts": ["ElectionNode"],
  "core/monitor/alarms.ts": ["evaluateAlarms", "nodeConditions", "nodeUnreachableRule"],
  "core/monitor/health.ts": ["computeHealth"],
  "core/hypervisor/hypervisor.ts": ["HypervisorNode"],
  "core/hypervisor/ha.ts": ["haActions", "withPlacements"],
  "core/node/pending.ts": ["PendingWrites"],
}
/** The hypervisor core's own harness (one service core against the simulated VMM, no node) is no driver. */
const isDriver = (path: string) =>
  (path.startsWith("adapters/node/") || path.startsWith("sim/")) && path !== "sim/hypervisor-run.ts"
const namedImportPattern = /\bimport\s+(type\s+)?\{([^}]*)\}\s*from\s*["']([^"']+)["']/g

const layerOf = (path: string): string => path.split("/")[0] ?? ""
const isTestFile = (path: string) => /\.test\.ts$/.test(path)

export const scan = (files: ReadonlyArray<SourceFile>): ReadonlyArray<Violation> => {
  const violations: Array<Violation> = []
  for (const file of files) {
    const layer = layerOf(file.path)
    const isCompositionRoot = file.path.startsWith("adapters/cli/")
    const code = stripComments(file.text)
    const lines = code.split("\n")
    if ((layer === "core" || layer === "sim") && !isTestFile(file.path)) {
      lines.forEach((line, index) => {
        for (const [pattern, name] of forbidden) {
          if (pattern.test(line))
            violations.push({ rule: "determinism", path: file.path, line: index + 1, detail: `uses ${name}` })
        }
      })
    }
    if (isDriver(file.path) && !isTestFile(file.path))
      for (const match of code.matchAll(namedImportPattern)) {
        if (match[1] !== undefined) continue
        const target = posix.normalize(posix.join(posix.dirname(file.path), match[3]!))
        const owned = ownedByComposition[target] ?? []
        for (const specifier of match[2]!.split(",").map((part) => part.trim())) {
          if (specifier.startsWith("type ")) continue
          const name = specifier.split(/\s+as\s+/)[0]!
          if (owned.includes(name))
            violations.push({
              rule: "composition",
              path: file.path,
              line: code.slice(0, match.index).split("\n").length,
              detail: `wires ${name} (${target}) itself: the node's composition (core/node/) owns it`,
            })
        }
      }
    for (const match of code.matchAll(importPattern)) {
      const specifier = match[1]!
      const line = code.slice(0, match.index).split("\n").length
      const target = specifier.startsWith(".")
        ? layerOf(posix.normalize(posix.join(posix.dirname(file.path), specifier)))
        : undefined
      const exempt = isCompositionRoot && target === "sim"
      if (target !== undefined && !exempt && (forbiddenLayers[layer] ?? []).includes(target)) {
        violations.push({
          rule: "imports",
          path: file.path,
          line,
          detail: `${layer}/ imports ${target}/ ("${specifier}")`,
        })
      }
      const packages = allowedPackages[layer]
      if (target === undefined && packages !== undefined) {
        const root = specifier.startsWith("@")
          ? specifier.split("/").slice(0, 2).join("/")
          : specifier.split("/")[0]!
        if (!packages.includes(root)) {
          violations.push({
            rule: "imports",
            path: file.path,
            line,
            detail: `${layer}/ imports package "${specifier}"`,
          })
        }
      }
    }
  }
  return violations
}

export const readSourceTree = (root: string, layers: ReadonlyArray<string>): ReadonlyArray<SourceFile> => {
  const files: Array<SourceFile> = []
  const walk = (directory: string) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (/\.(?:ts|mts|js|mjs)$/.test(entry.name)) {
        files.push({ path: relative(root, path).split("\\").join("/"), text: readFileSync(path, "utf8") })
      }
    }
  }
  for (const layer of layers) if (existsSync(join(root, layer))) walk(join(root, layer))
  return files
}
