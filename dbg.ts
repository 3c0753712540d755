import { defaultSimOptions } from "./sim/scenario.ts"
import { World } from "./sim/world.ts"

const w = new World({ ...defaultSimOptions, seed: 1085, durationMs: 20000, systems: 12 }) as any
const orig = w.dispatch.bind(w)
let last = 0
w.dispatch = (e: any) => {
  orig(e)
  if (w.nowUs > 12_700_000 && w.nowUs < 15_700_000 && w.nowUs - last > 250_000) {
    last = w.nowUs
    const n = w.nodes[2]
    const el = n.core?.electionCore as any
    if (el)
      console.log(
        Math.floor(w.nowUs / 1000),
        "local",
        n.localMs(w.nowUs),
        "role",
        el.role,
        "fenced",
        el.fenced,
        "lastMaj",
        el.lastMajorityMs,
        "heard",
        el.heardCount(n.localMs(w.nowUs)),
        [...el.lastHeardMs].map(([k, v]: any) => k + ":" + v).join(","),
        "nodefenced",
        n.fenced,
      )
  }
}
w.run()
