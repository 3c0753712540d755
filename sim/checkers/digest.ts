/**
 * Digests and flow control, checked against what the nodes have really applied:
 *
 * - a digest says how far its sender has applied each origin's stream: it never claims more
 *   (a digest that overstates makes its receivers believe a change is safe everywhere, or ask
 *   the sender for what it does not have);
 * - flow control: a node takes a client's write only while its own stream runs at most
 *   `maxUnconfirmedChanges` ahead of every live member whose digests it counts, as far as those
 *   members have really applied it (what it believes comes from digests, so it may only lag);
 * - flow control holds back clients' writes only: the node's own (its services', its alarms')
 *   are never refused as busy (a member a window behind kept the primary from releasing an HA
 *   system; seed 5000182);
 * - numbering: within one run (incarnation) of a node, its digests (per part), statistics and
 *   snapshots (per receiver) never go back to a lower number than one it has sent: relays forward a
 *   digest only if it is newer than the last they forwarded, receivers drop statistics they have
 *   seen the number of, and merge the chunks of snapshots of one number. A CDB core rebuilt after
 *   a refused commit numbered its digests from 1 again; HA liveness noticed (seed 1000299).
 */

import type { Change } from "../../core/cdb/codec.ts"
import { decode } from "../../core/cdb/codec.ts"
import type { Destination } from "../../core/ports/transport.ts"
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

  /**
   * A datagram a node sends: if it is a digest of its own, every position in it is one it has
   * applied; its digests, statistics and snapshots are numbered as receivers rely on.
   */
  sent(node: SimNode, bytes: Uint8Array, to: Destination): void {
    const cdb = node.core?.cdbCore
    if (cdb === undefined) return
    const decoded = decode(bytes, this.cluster, this.mtu)
    if (!decoded.ok || decoded.datagram.sender !== node.id) return
    const { body, incarnation } = decoded.datagram
    if (body.type === "stats") this.numbered(node, incarnation, "statistics", "stats", body.counter)
    // Snapshots per receiver: the one kept for a receiver goes to it again after newer ones to others.
    if (body.type === "snapshot" && to._tag !== "Domain")
      this.numbered(node, incarnation, `snapshots to ${to.node}`, `snapshot ${to.node}`, body.snapshotId)
    if (body.type !== "digest") return
    this.numbered(node, incarnation, `digests (part ${body.part})`, `digest ${body.part}`, body.digestSeq)
    this.digests++
    for (const [origin, seq] of body.vector) {
      const applied = cdb.appliedUpTo(origin)
      if (seq > applied)
        this.sim.violate(
          "digest",
          `${node.id}'s digest says it applied ${origin}'s stream up to #${seq}; it has applied up to #${applied}`,
        )
    }
  }

  /** A write a node refused: never one of its own for flow control. */
  refused(node: SimNode, source: string, reason: string): void {
    if (source !== "client" && reason === "busy")
      this.sim.violate(
        "flow",
        `${node.id} refused a write of its own (${source}) as busy: flow control is for clients`,
      )
  }

  /** The last number each node's run gave each kind of its datagrams. */
  private readonly numbers = new Map<string, number>()

  private numbered(node: SimNode, incarnation: number, what: string, kind: string, number: number): void {
    const key = `${node.id}\u0000${incarnation}\u0000${kind}`
    const last = this.numbers.get(key)
    this.numbers.set(key, last === undefined ? number : Math.max(last, number))
    // The same number again is the same datagram (to the domain and to each relay) or a chunk of
    // the same snapshot; only a lower one breaks what receivers rely on.
    if (last === undefined || number >= last) return
    this.sim.violate(
      "numbering",
      `${node.id} numbered its ${what} #${number} after #${last} in the same run (incarnation ${incarnation})`,
    )
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
