/**
 * Durability: every acknowledged write (a client's, a service's, an alarm) is paired with the
 * change it became, and counted. What must survive is the model's to say (`model.ts`).
 */
import type { Change } from "../../core/cdb/codec.ts"
import { entryKey } from "../../core/cdb/durable.ts"
import type { Version } from "../../core/cdb/hlc.ts"
import type { WriteOp } from "../../core/cdb/node.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

interface AcknowledgedWrite {
  readonly key: string
  readonly version: Version
  readonly node: string
  readonly atMs: number
}

export class DurabilityChecker {
  private readonly sim: Sim
  private readonly acknowledged: Array<AcknowledgedWrite> = []

  constructor(sim: Sim) {
    this.sim = sim
  }

  get count(): number {
    return this.acknowledged.length
  }

  byNode(node: string): number {
    return this.acknowledged.filter((write) => write.node === node).length
  }

  /** Pairs each acknowledged request with the change it became. */
  record(node: SimNode, writes: ReadonlyArray<WriteOp>, own: ReadonlyArray<Change>): void {
    if (writes.length !== own.length) {
      this.sim.violate(
        "durability",
        `${node.id} acknowledged ${writes.length} writes but applied ${own.length}`,
      )
      return
    }
    writes.forEach((write, index) => {
      const change = own[index]!
      if (write.op === "meta") return
      this.acknowledged.push({
        key: entryKey(write.kind, write.id),
        version: { ms: change.ms, counter: change.counter, origin: change.origin },
        node: node.id,
        atMs: Math.floor(this.sim.nowUs / 1000),
      })
    })
  }
}
