/**
 * Bundles the `acp` CLI into one file, `dist/acp.mjs`, the package's `bin`. Runs on
 * `npm install` (the `prepare` script) so `npx acp` works right after install.
 */
import { chmodSync } from "node:fs"
import { build } from "esbuild"
import { bundleOptions } from "./bundle.ts"

const started = performance.now()
await build(bundleOptions("dist/acp.mjs"))
// The bundle is the package's `bin`: it must be executable, whether or not npm links it again.
chmodSync("dist/acp.mjs", 0o755)
console.log(`built dist/acp.mjs in ${Math.round(performance.now() - started)} ms`)
