/**
 * Bundles the `acp` CLI into one file, `dist/acp.mjs`, the package's `bin`. Runs on
 * `npm install` (the `prepare` script) so `npx acp` works right after install.
 */
import { chmodSync } from "node:fs"
import { build } from "esbuild"

const started = performance.now()
await build({
  entryPoints: ["adapters/cli/main.ts"],
  outfile: "dist/acp.mjs",
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
// The bundle is the package's `bin`: it must be executable, whether or not npm links it again.
chmodSync("dist/acp.mjs", 0o755)
console.log(`built dist/acp.mjs in ${Math.round(performance.now() - started)} ms`)
