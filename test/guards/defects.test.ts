/**
 * The outside findings kept as patches (test/vortex/defects/, reintroduced by
 * `node test/vortex/defects.ts`) still apply to the code as it is: a patch gone stale would
 * quietly stop showing that the fault harness catches its defect.
 */
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))
const here = join(root, "test/vortex/defects")
const patches = readdirSync(here).filter((file) => file.endsWith(".patch"))

describe("the reintroduced defects", () => {
  it("are three, one per outside finding", () => {
    expect(patches.sort()).toEqual([
      "replay-by-source.patch",
      "state-before-commit.patch",
      "wall-clock-leases.patch",
    ])
  })
  for (const patch of patches)
    it(`${patch} still applies`, () => {
      const checked = spawnSync("git", ["apply", "--check", join(here, patch)], {
        cwd: root,
        encoding: "utf8",
      })
      expect(checked.status, checked.stderr).toBe(0)
    })
})
