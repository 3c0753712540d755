/**
 * The canonical model (after TigerBeetle's state checker): the history of every acknowledged
 * write, from which the checker computes what every replica must hold, key by key, and compares
 * each node's store with it. Three promises are checked where they are broken, not at the end:
 *
 * - a node's clock follows what it applied: each version it writes is later than every version
 *   it had applied before (the hybrid logical clock's promise; without it a later write loses);
 * - a write is visible to its writer at once: right after the acknowledgement its node holds
 *   that version of the key or a later one (a write that loses on its own node is lost);
 * - what a node acknowledged survives its restart: its store, at the next start, holds its
 *   stream up to the last change it acknowledged (`durability`).
 *
 * After the heal, when the cluster has converged, every up node must hold, for every key, the
 * newest version among the acknowledged writes of the nodes that are up and what any up node
 * holds (LWW by version, tombstones included); a mismatch names the key, the version expected
 * and the one found. A run that did not converge gets the first mismatches as its reasons.
 *
 * The order of versions (milliseconds, then the logical counter, then the writer's id) is the
 * oracle's own (`core/oracle/versions.ts`), not `core/cdb/hlc.ts`'s: an oracle that shared the
 * code it judges would be blind to a bug in it (the mutation harness plants some there).
 */
import type { Change } from "../../core/cdb/codec.ts"
import { later, show, type Version } from "../../core/oracle/versions.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

export { later, show, type Version }

interface Acknowledged {
  readonly version: Version
  readonly tomb: boolean
  readonly atMs: number
}

export class ModelChecker {
  private readonly sim: Sim
  /** Per key (kind NUL id), the newest acknowledged write of each origin. */
  private readonly history = new Map<string, Map<string, Acknowledged>>()
  /** Per node index, the latest version it applied or wrote. */
  private readonly seen: Array<Version | undefined>
  /** Per node index, the last change of its own stream it acknowledged (spec, meta). */
  private readonly acknowledgedUpTo: Array<number>
  mismatches = 0

  constructor(sim: Sim) {
    this.sim = sim
    this.seen = sim.nodes.map(() => undefined)
    this.acknowledgedUpTo = sim.nodes.map(() => 0)
  }

  /** A node applied changes of other origins (its own it acknowledges: `written`). */
  applied(node: SimNode, changes: ReadonlyArray<Change>): void {
    let seen = this.seen[node.index]
    for (const change of changes)
      if (
        change.op !== "meta" &&
        change.origin !== node.id &&
        (seen === undefined || later(change, seen) > 0)
      )
        seen = change
    this.seen[node.index] = seen
  }

  /** A node acknowledged writes (a client's, a service's, an alarm): the changes they became. */
  written(node: SimNode, changes: ReadonlyArray<Change>): void {
    const atMs = Math.floor(this.sim.nowUs / 1000)
    for (const change of changes) {
      this.acknowledgedUpTo[node.index] = Math.max(this.acknowledgedUpTo[node.index]!, change.seq)
      if (change.op === "meta") continue
      const seen = this.seen[node.index]
      if (seen !== undefined && later(change, seen) <= 0)
        this.sim.violate(
          "model",
          `${node.id} wrote ${change.kind}/${change.id} as ${show(change)}, not later than ${show(seen)} it had applied: its clock does not follow what it applies, and the newer write loses`,
        )
      else this.seen[node.index] = change
      const key = `${change.kind}\u0000${change.id}`
      let byOrigin = this.history.get(key)
      if (byOrigin === undefined) {
        byOrigin = new Map()
        this.history.set(key, byOrigin)
      }
      byOrigin.set(change.origin, { version: change, tomb: change.op === "delete", atMs })
    }
    // Visible to its writer at once: the last write of each key in this step.
    const last = new Map<string, Change>()
    for (const change of changes)
      if (change.op !== "meta") last.set(`${change.kind}\u0000${change.id}`, change)
    for (const change of last.values()) {
      const held = node.core?.cdbCore.entry(change.kind, change.id)
      if (held === undefined || later(held.version, change) < 0)
        this.sim.violate(
          "model",
          `${node.id} acknowledged ${change.kind}/${change.id} as ${show(change, change.op === "delete")} but holds ${show(held?.version, held?.value === null)} right after: its own write lost`,
        )
    }
  }

  /** A node starts again: its store must hold every change of its own it acknowledged. */
  started(node: SimNode): void {
    const durable = node.image.vector.get(node.id) ?? 0
    const acknowledged = this.acknowledgedUpTo[node.index]!
    if (durable < acknowledged) {
      this.sim.violate(
        "durability",
        `${node.id} acknowledged its changes up to #${acknowledged}, but its store, at its restart, ends at #${durable}: ${acknowledged - durable} acknowledged change(s) lost`,
      )
      this.acknowledgedUpTo[node.index] = durable
    }
  }

  /**
   * What every up node must hold for each key: the newest of the up nodes' acknowledged writes
   * and of what any up node holds. Returns a line for each node and key that differs.
   */
  compare(limit: number): ReadonlyArray<string> {
    const up = this.sim.nodes.filter((node) => node.core !== null)
    const upIds = new Set(up.map((node) => node.id))
    const expected = new Map<string, { version: Version; tomb: boolean; by: string }>()
    const consider = (key: string, version: Version, tomb: boolean, by: string) => {
      const current = expected.get(key)
      if (current === undefined || later(version, current.version) > 0)
        expected.set(key, { version, tomb, by })
    }
    for (const [key, byOrigin] of this.history)
      for (const [origin, write] of byOrigin)
        if (upIds.has(origin))
          consider(key, write.version, write.tomb, `acknowledged by ${origin} at ${write.atMs} ms`)
    for (const node of up)
      for (const [key, entry] of node.core!.cdbCore.allEntries())
        consider(key, entry.version, entry.value === null, `held by ${node.id}`)
    const lines: Array<string> = []
    for (const [key, want] of expected) {
      const [kind, id] = key.split("\u0000") as [string, string]
      for (const node of up) {
        const held = node.core!.cdbCore.entry(kind, id)
        if (held !== undefined && later(held.version, want.version) === 0) continue
        this.mismatches++
        if (lines.length < limit)
          lines.push(
            `${node.id} holds ${kind}/${id} as ${show(held?.version, held?.value === null)}; the model says ${show(want.version, want.tomb)} (${want.by})`,
          )
      }
    }
    return lines
  }

  /** After convergence: every up node holds what the model says, key by key. */
  final(): void {
    const lines = this.compare(3)
    for (const line of lines) this.sim.violate("model", line)
  }
}
