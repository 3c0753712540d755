/**
 * Checkers on every change every node applies: per-origin order, no duplicate application, no
 * write a store refused ever applied anywhere (`refused`), and the canary, which must fail.
 */
import type { Change } from "../../core/cdb/codec.ts"
import type { Output } from "../../core/node/node.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

/** A change as the refused-writes checker knows it: key, version and a digest of its value, so a reused version is no match. */
const changeIdentity = (change: Change): string => {
  let digest = 0x811c9dc5
  const value = change.value ?? new Uint8Array()
  for (let index = 0; index < value.length; index++) digest = Math.imul(digest ^ value[index]!, 0x01000193)
  return `${change.kind}/${change.id}|${change.origin}@${change.ms}.${change.counter}|${value.length}.${digest >>> 0}`
}

export class StreamChecker {
  private readonly sim: Sim
  /** Writes a node's store refused (fault "disk-full"), by key, version and value: none may ever be applied. */
  private readonly refused = new Set<string>()
  /** Steps whose commit a node's store refused, each undone. */
  commitsRefused = 0

  constructor(sim: Sim) {
    this.sim = sim
  }

  /** A step whose commit the store refused: the puts it would have made visible, and the count. */
  noteRefused(node: SimNode, outputs: ReadonlyArray<Output>): void {
    this.commitsRefused++
    this.sim.trace.number(9)
    this.sim.trace.number(this.sim.nowUs)
    this.sim.trace.number(node.index)
    for (const output of outputs)
      if (output._tag === "Applied")
        for (const change of output.changes)
          if (change.origin === node.id && change.op === "put") this.refused.add(changeIdentity(change))
  }

  applied(node: SimNode, changes: ReadonlyArray<Change>): void {
    for (const change of changes) {
      const last = node.lastApplied.get(change.origin) ?? 0
      if (change.seq <= last)
        this.sim.violate(
          "duplicate",
          `${node.id} applied ${change.origin}#${change.seq} again (had #${last})`,
        )
      else if (change.seq !== last + 1)
        this.sim.violate("order", `${node.id} applied ${change.origin}#${change.seq} after #${last}`)
      node.lastApplied.set(change.origin, change.seq)
      if (this.refused.size > 0 && change.op === "put" && this.refused.has(changeIdentity(change)))
        this.sim.violate(
          "refused",
          `${node.id} applied ${change.kind}/${change.id} as ${change.origin}@${change.ms}.${change.counter}, a write ${change.origin}'s store refused`,
        )
      if (this.sim.options.canary && change.origin !== node.id) {
        this.sim.violate(
          "canary",
          `${node.id} applied a change from ${change.origin} (the canary says no node ever does)`,
        )
      }
    }
  }

  snapshotInstalled(node: SimNode, vector: ReadonlyArray<readonly [string, number]>): void {
    for (const [origin, seq] of vector) {
      if (seq < (node.lastApplied.get(origin) ?? 0)) {
        this.sim.violate("order", `${node.id} installed a snapshot that moves ${origin} back to #${seq}`)
      }
      node.lastApplied.set(origin, seq)
    }
  }
}
