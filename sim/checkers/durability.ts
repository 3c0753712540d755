/**
 * Durability: every acknowledged write (a client's, a service's, an alarm) is paired with the
 * change it became; after convergence the cluster holds each key's newest acknowledged version
 * or a newer one.
 */
import type { Change } from "../../core/cdb/codec.ts"
import { entryKey, type SpecEntry } from "../../core/cdb/durable.ts"
import { compareVersions, type Version } from "../../core/cdb/hlc.ts"
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

  /** After convergence: no acknowledged write is lost from the entries every node holds. */
  final(reference: ReadonlyArray<[string, SpecEntry]>): void {
    const latest = new Map<string, AcknowledgedWrite>()
    for (const write of this.acknowledged) {
      const previous = latest.get(write.key)
      if (previous === undefined || compareVersions(write.version, previous.version) > 0)
        latest.set(write.key, write)
    }
    const entries = new Map(reference)
    for (const [key, write] of latest) {
      const entry = entries.get(key)
      if (entry === undefined || compareVersions(entry.version, write.version) < 0) {
        this.sim.violate(
          "durability",
          `the write to ${key.replace("\u0000", "/")} acknowledged by ${write.node} at ${write.atMs} ms is lost: the cluster holds ${entry === undefined ? "nothing" : `${entry.version.origin}@${entry.version.ms}.${entry.version.counter}`}`,
        )
      }
    }
  }
}
