/**
 * Digests and flow control, checked against what the nodes have really applied:
 *
 * - a digest says how far its sender has applied each origin's stream: it never claims more
 *   (a digest that overstates makes its receivers believe a change is safe everywhere, or ask
 *   the sender for what it does not have);
 * - flow control: a node takes a client's write only while its own stream runs at most
 *   `maxUnconfirmedChanges` ahead of every live member whose digests it counts, as far as those
 *   members have really applied it (what it believes comes from digests, so it may only lag).
 */

import type { Change } from "../../core/cdb/codec.ts"
import { decode } from "../../core/cdb/codec.ts"
import type { Sim } from "../events.ts"
import type { SimNode } from "../host.ts"

export class DigestChecker {
  private readonly sim: Sim
  private readonly cluster: number
  private readonly mtu: number
  private readonly window: number
  digests = 0

  constructor(
    sim: Sim,
    config: { readonly cluster: number; readonly mtu: number; readonly maxUnconfirmedChanges: number },
  ) {
    this.sim = sim
    this.cluster = config.cluster
    this.mtu = config.mtu
    this.window = config.maxUnconfirmedChanges
  }

  /** A datagram a node sends: if it is a digest of its own, every position in it is one it has applied. */
  sent(node: SimNode, bytes: Uint8Array): void {
    const cdb = node.core?.cdbCore
    if (cdb === undefined) return
    const decoded = decode(bytes, this.cluster, this.mtu)
    if (!decoded.ok || decoded.datagram.body.type !== "digest" || decoded.datagram.sender !== node.id) return
    this.digests++
    for (const [origin, seq] of decoded.datagram.body.vector) {
      const applied = cdb.appliedUpTo(origin)
      if (seq > applied)
        this.sim.violate(
          "digest",
          `${node.id}'s digest says it applied ${origin}'s stream up to #${seq}; it has applied up to #${applied}`,
        )
    }
  }

  /** A client's writes a node took: its stream was within the window of every member it counts. */
  written(node: SimNode, changes: ReadonlyArray<Change>, source: string): void {
    const cdb = node.core?.cdbCore
    const first = changes.find((change) => change.op !== "meta")
    if (cdb === undefined || source !== "client" || first === undefined) return
    // The window is checked once for a batch of writes, before its first change (a meta change
    // too: it takes a number of the stream; seed 5000047, a meta change first, was no violation).
    const before = changes[0]!.seq - 1
    for (const member of this.sim.nodes) {
      if (member === node || member.core === null || cdb.memberState(member.id) !== "alive") continue
      if (cdb.confirmedBy(member.id) === undefined) continue
      const applied = member.core.cdbCore.appliedUpTo(node.id)
      if (before - applied >= this.window)
        this.sim.violate(
          "flow",
          `${node.id} took a write at #${first.seq} while ${member.id} (alive, counted) had applied its stream only up to #${applied}: ${before - applied} unconfirmed, the window is ${this.window}`,
        )
    }
  }
}
