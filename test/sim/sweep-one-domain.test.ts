import { describe } from "vitest"
import { sweep } from "./sweep.ts"

// 5 nodes, one L2 domain, every fault, 10 s of virtual faults then the heal.
describe("sweep: 5 nodes, 1 domain, all faults", () => sweep(1, 200, { durationMs: 10_000 }))
