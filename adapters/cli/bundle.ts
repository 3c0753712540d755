/**
 * How the `acp` CLI is bundled into one file: shared by the package's build (`build.ts`) and by
 * the mutation harness (`test/mutants/run.ts`), which bundles the same CLI with one bug planted.
 */
import type { BuildOptions } from "esbuild"

export const bundleOptions = (outfile: string): BuildOptions => ({
  entryPoints: ["adapters/cli/main.ts"],
  outfile,
  bundle: true,
  platform: "node",
  target: "node24",
  format: "esm",
  minify: true,
  sourcemap: "linked",
  // Native addons cannot be bundled; they load from node_modules at run time.
  external: ["koffi", "better-sqlite3", "netlink", "playwright-core"],
  banner: {
    js: [
      "#!/usr/bin/env node",
      'import { createRequire as __acpCreateRequire } from "node:module";',
      "const require = __acpCreateRequire(import.meta.url);",
    ].join("\n"),
  },
  logLevel: "warning",
})
