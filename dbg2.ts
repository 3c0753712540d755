import { defaultSimOptions } from "./sim/scenario.ts"
import { World } from "./sim/world.ts"

const w = new World({ ...defaultSimOptions, seed: 1165, durationMs: 20000, systems: 12 }) as any
const orig = w.dispatch.bind(w)
let last = 0
w.dispatch = (e: any) => {
  orig(e)
  if (w.nowUs > 8_000_000 && w.nowUs < 13_400_000 && w.nowUs - last > 500_000) {
    last = w.nowUs
    console.log(
      Math.floor(w.nowUs / 1000),
      w.nodes
        .map((n: any) => {
          const el = n.core?.electionCore as any
          return el
            ? `${n.id}:${el.role[0]}${el.term}${el.fenced ? "F" : ""}${n.core.storeFailing ? "S" : ""}`
            : `${n.id}:down`
        })
        .join(" "),
    )
  }
}
w.run()
