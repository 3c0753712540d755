/**
 * A service's own writes that its node refused (a full disk, a busy stream): kept, the newest
 * per object and part, until the node takes them. A service core publishes a meta or a task
 * once and believes it published; without this, a refused write would leave the cluster with a
 * stale claim or a task that never ends. The node (`node.ts`) feeds it every write's outcome and
 * retries what it holds, so the service cores never see the refusal.
 *
 * A put is a decision taken on the object as it was (an HA move, a hand-over, a task's
 * progress): retried later it would carry a newer version and overwrite whatever was written
 * since (an operator's stop, a cancellation). So a held put remembers the version it was based
 * on and is dropped once the object has changed; the service sees the change in its view and
 * decides again. A meta slot is the node's own: it is always written again.
 */

export interface ServiceWrite {
  readonly op: "put" | "meta"
  readonly kind: string
  readonly id: string
  readonly value: Uint8Array
}

const keyOf = (write: ServiceWrite) => `${write.op}\u0000${write.kind}\u0000${write.id}`

/** The object's version as the store holds it now ("" for none): what a held put is based on. */
export type Basis = (write: ServiceWrite) => string

export class PendingWrites {
  /** In the order first refused; a newer write for the same key replaces an older one. */
  private readonly byKey = new Map<string, { readonly write: ServiceWrite; readonly basis: string }>()
  private retryAtMs = 0
  private readonly retryEveryMs: number

  constructor(retryEveryMs: number) {
    this.retryEveryMs = retryEveryMs
  }

  get size(): number {
    return this.byKey.size
  }

  /** From when what it holds is due again. */
  get retryAt(): number {
    return this.retryAtMs
  }

  /** The node took these: anything older held for the same keys is superseded. */
  accepted(writes: ReadonlyArray<ServiceWrite>): void {
    for (const write of writes) this.byKey.delete(keyOf(write))
  }

  /**
   * The node refused these: hold them (the newest per key), to try again from `nowMs +
   * retryEveryMs`. `basis` is read now, with the store as it is without them.
   */
  refused(writes: ReadonlyArray<ServiceWrite>, nowMs: number, basis: Basis): void {
    // A retried put comes back here only if its object had not changed (else `due` dropped it),
    // so the object as it is now is what it was decided on; a newer write for the key is a new
    // decision, on the object as it is now.
    for (const write of writes) {
      const key = keyOf(write)
      this.byKey.delete(key)
      this.byKey.set(key, { write, basis: write.op === "put" ? basis(write) : "" })
    }
    this.retryAtMs = nowMs + this.retryEveryMs
  }

  /**
   * What to write again now, if anything is due: every meta, and every put whose object is still
   * as it was when the put was decided. The caller reports its outcome as for any write.
   */
  due(nowMs: number, basis: Basis): ReadonlyArray<ServiceWrite> {
    if (this.byKey.size === 0 || nowMs < this.retryAtMs) return []
    const writes: Array<ServiceWrite> = []
    for (const { write, basis: held } of this.byKey.values())
      if (write.op !== "put" || basis(write) === held) writes.push(write)
    this.byKey.clear()
    return writes
  }
}
