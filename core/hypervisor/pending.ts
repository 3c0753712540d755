/**
 * A service's own writes that its node refused (a full disk, a busy stream): kept, the newest
 * per object and part, until the node takes them. A service core publishes a meta or a task
 * once and believes it published; without this, a refused write would leave the cluster with a
 * stale claim or a task that never ends. Both drivers (the real node and the simulator) feed it
 * every write's outcome and retry what it holds, so the cores never see the refusal.
 */

export interface ServiceWrite {
  readonly op: "put" | "meta"
  readonly kind: string
  readonly id: string
  readonly value: Uint8Array
}

const keyOf = (write: ServiceWrite) => `${write.op}\u0000${write.kind}\u0000${write.id}`

export class PendingWrites {
  /** In the order first refused; a newer write for the same key replaces an older one. */
  private readonly byKey = new Map<string, ServiceWrite>()
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

  /** The node refused these: hold them (the newest per key), to try again from `nowMs + retryEveryMs`. */
  refused(writes: ReadonlyArray<ServiceWrite>, nowMs: number): void {
    for (const write of writes) {
      this.byKey.delete(keyOf(write))
      this.byKey.set(keyOf(write), write)
    }
    this.retryAtMs = nowMs + this.retryEveryMs
  }

  /** What to write again now, if anything is due; the caller reports its outcome as for any write. */
  due(nowMs: number): ReadonlyArray<ServiceWrite> {
    if (this.byKey.size === 0 || nowMs < this.retryAtMs) return []
    const writes = [...this.byKey.values()]
    this.byKey.clear()
    return writes
  }
}
