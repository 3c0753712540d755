/**
 * The architecture rules, as a scanner over source text, so the guard tests can run it on the
 * real tree and on deliberate violations alike.
 *
 * 1. Determinism: `core/` and `sim/` never read the wall clock, randomness or timers.
 * 2. Dependencies: `core/` imports only `core/` and effect; `sim/` imports only `sim/`, `core/`,
 *    effect and fast-check, never `adapters/`; `adapters/` never imports `sim/`, except
 *    `adapters/cli/`, the composition root of the `acp` binary, which chooses between the real
 *    adapters and the simulated world and so must see both.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join, posix, relative } from "node:path"

export interface SourceFile {
  /** Path relative to the repository root, with `/` separators. */
  readonly path: string
  readonly text: string
}

export interface Violation {
  readonly rule: "determinism" | "imports"
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
