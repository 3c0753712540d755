import { describe } from "vitest"
import { sweep } from "./sweep.ts"

// 9 nodes in 3 L2 domains joined by relays, every fault, 10 s of virtual faults then the heal.
describe("sweep: 9 nodes, 3 domains, all faults", () =>
  sweep(1001, 1100, { nodes: 9, domains: 3, durationMs: 10_000 }))
