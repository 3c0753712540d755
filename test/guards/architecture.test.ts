import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { readSourceTree, scan } from "./scan.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))

describe("architecture", () => {
  describe("the source tree", () => {
    const files = readSourceTree(root, ["core", "sim", "adapters", "bench"])

    it("has files in core/ to check", () => {
      expect(files.filter((file) => file.path.startsWith("core/")).length).toBeGreaterThan(5)
    })

    it("core/ and sim/ read no wall clock, randomness or timers", () => {
      expect(scan(files).filter((violation) => violation.rule === "determinism")).toEqual([])
    })

    it("the real node and the simulator drive the node's one composition, wiring none of what it owns", () => {
      expect(scan(files).filter((violation) => violation.rule === "composition")).toEqual([])
    })

    it("core/ imports only core/ and effect; adapters/ and sim/ never import each other", () => {
      expect(scan(files).filter((violation) => violation.rule === "imports")).toEqual([])
    })
  })

  describe("scan", () => {
    it("reports a wall-clock read in core/, with its line", () => {
      const violations = scan([{ path: "core/cdb/x.ts", text: "const a = 1\nconst now = Date.now()\n" }])
      expect(violations).toEqual([
        { rule: "determinism", path: "core/cdb/x.ts", line: 2, detail: "uses Date.now" },
      ])
    })

    it("reports Math.random, timers, hrtime and randomUUID in sim/", () => {
      const text = [
        "Math.random()",
        "setTimeout(f, 1)",
        "process.hrtime.bigint()",
        "crypto.randomUUID()",
        "performance.now()",
        "console.log(event)",
      ].join("\n")
      const details = scan([{ path: "sim/loop.ts", text }]).map((violation) => violation.detail)
      expect(details).toEqual([
        "uses Math.random",
        "uses a timer",
        "uses process.hrtime",
        "uses crypto.randomUUID",
        "uses performance.now",
        "uses console output",
      ])
    })

    it("allows the wall clock in adapters/ and in comments", () => {
      expect(scan([{ path: "adapters/x.ts", text: "Date.now()" }])).toEqual([])
      expect(scan([{ path: "core/x.ts", text: "// never Date.now()\n/* nor Math.random() */" }])).toEqual([])
    })

    it("reports core/ importing a Node module, a package, an adapter or the simulator", () => {
      const text = [
        'import { readFileSync } from "node:fs"',
        'import fc from "fast-check"',
        'import { udp } from "../../adapters/udp.ts"',
        'export { world } from "../../sim/world.ts"',
        'import { Schema } from "effect"',
        'import type { Option } from "effect/Option"',
        'import { hlc } from "./hlc.ts"',
      ].join("\n")
      const details = scan([{ path: "core/cdb/store.ts", text }]).map((violation) => violation.detail)
      expect(details).toEqual([
        'core/ imports package "node:fs"',
        'core/ imports package "fast-check"',
        'core/ imports adapters/ ("../../adapters/udp.ts")',
        'core/ imports sim/ ("../../sim/world.ts")',
      ])
    })

    it("reports adapters/ importing sim/ and sim/ importing adapters/, including dynamic imports", () => {
      const violations = scan([
        { path: "adapters/transport/udp.ts", text: 'const m = await import("../../sim/network.ts")' },
        { path: "sim/net.ts", text: 'import { socket } from "../adapters/transport/udp.ts"' },
        { path: "sim/cli.ts", text: 'import { acp } from "../adapters/cli/main.ts"' },
      ])
      expect(violations.map((violation) => violation.detail)).toEqual([
        'adapters/ imports sim/ ("../../sim/network.ts")',
        'sim/ imports adapters/ ("../adapters/transport/udp.ts")',
        'sim/ imports adapters/ ("../adapters/cli/main.ts")',
      ])
    })

    it("reports a driver wiring what the composition owns, but not a type or another layer doing so", () => {
      const text = [
        'import { computeHealth, type Health } from "../../core/monitor/health.ts"',
        "import {",
        "  type DurableVote,",
        "  ElectionNode as Election,",
        '} from "../../core/monitor/election.ts"',
        'import type { CdbNode } from "../../core/cdb/node.ts"',
        'import { NodeCore } from "../../core/node/node.ts"',
      ].join("\n")
      const details = scan([
        { path: "adapters/node/node.ts", text },
        { path: "adapters/api/server.ts", text },
      ]).map((violation) => `${violation.path}:${violation.line} ${violation.detail}`)
      expect(details).toEqual([
        "adapters/node/node.ts:1 wires computeHealth (core/monitor/health.ts) itself: the node's composition (core/node/) owns it",
        "adapters/node/node.ts:2 wires ElectionNode (core/monitor/election.ts) itself: the node's composition (core/node/) owns it",
      ])
    })

    it("lets the CLI, the composition root, import the simulator", () => {
      expect(
        scan([{ path: "adapters/cli/commands/sim.ts", text: 'import { run } from "../../../sim/run.ts"' }]),
      ).toEqual([])
    })
  })
})
