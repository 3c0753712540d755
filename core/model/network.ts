/** Networks: bridges, VLANs, trunks, VXLAN segments and VPP devices (seed 000, seed 003's network controller). */
import { Schema } from "effect"
import { networkLifecycle } from "../lifecycle/tables.ts"
import { NetworkId, ProjectId } from "./ids.ts"
import { Bytes, Count, IpAddress, Ipv4Cidr, Mtu, Name, Port, VlanId, Vni } from "./quantities.ts"

const common = {
  name: Name,
  project: Schema.optionalKey(ProjectId),
  mtu: Mtu,
  /** The prefix from which fixed IPs are allocated to systems on this network. */
  subnet: Schema.optionalKey(Ipv4Cidr),
}

export const BridgeNetwork = Schema.TaggedStruct("bridge", {
  ...common,
  interfaces: Schema.Array(Schema.String),
})
export const VlanNetwork = Schema.TaggedStruct("vlan", { ...common, vlanId: VlanId, parent: NetworkId })
export const TrunkNetwork = Schema.TaggedStruct("trunk", {
  ...common,
  interfaces: Schema.Array(Schema.String),
  vlanIds: Schema.Array(VlanId),
})
export const VxlanNetwork = Schema.TaggedStruct("vxlan", {
  ...common,
  vni: Vni,
  group: Schema.optionalKey(IpAddress),
  port: Port,
})
export const VppNetwork = Schema.TaggedStruct("vpp", { ...common, vlanId: VlanId, device: Schema.String })

export const NetworkSpec = Schema.Union([BridgeNetwork, VlanNetwork, TrunkNetwork, VxlanNetwork, VppNetwork])
export type NetworkSpec = typeof NetworkSpec.Type
export const networkSubtypes = ["bridge", "vlan", "trunk", "vxlan", "vpp"] as const

export const NetworkMeta = Schema.Struct({
  state: Schema.Literals(networkLifecycle.states),
  /** The kernel or VPP interface this node made for the network. */
  interface: Schema.optionalKey(Schema.String),
})
export const NetworkStats = Schema.Struct({
  rxBytes: Bytes,
  txBytes: Bytes,
  rxPackets: Count,
  txPackets: Count,
  errors: Count,
})
