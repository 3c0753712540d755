/** What CDB tests hand a node: three members of one domain, and a datagram from one of them. */
import { type Body, encode } from "../../../core/cdb/codec.ts"
import { defaultCdbConfig, type Member } from "../../../core/cdb/node.ts"

export const threeMembers: ReadonlyArray<Member> = ["a", "b", "c"].map((id) => ({
  id,
  domain: "d1",
  relay: false,
}))
export const cluster = defaultCdbConfig.cluster

/** The input of a datagram with this body, sent by `sender` (incarnation 0), received in the domain. */
export const datagramFrom = (sender: string, body: Body) =>
  ({
    _tag: "DatagramReceived",
    bytes: encode({ cluster, sender, incarnation: 0, body }),
    via: "domain",
  }) as const
