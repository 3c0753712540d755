/** Services (seed 000's Services object and its sub-types) and accelerators (seed 002). */
import { Schema } from "effect"
import { acceleratorLifecycle, serviceLifecycle } from "../lifecycle/tables.ts"
import { NodeId, SystemId } from "./ids.ts"
import { Bytes, Count, Labels, PercentHundredths } from "./quantities.ts"

export const serviceSubtypes = [
  "cluster",
  "monitor",
  "framework",
  "hypervisor",
  "network",
  "storage",
  "agent",
  "api",
  "web",
  "scheduler",
  "balancer",
  "accelerator",
] as const
export const ServiceSubtype = Schema.Literals(serviceSubtypes)

export const ServiceSpec = Schema.Struct({
  subtype: ServiceSubtype,
  node: NodeId,
  enabled: Schema.Boolean,
  /** Names of services on the same node that must be running first. */
  after: Schema.Array(ServiceSubtype),
  settings: Labels,
})
export const ServiceMeta = Schema.Struct({
  state: Schema.Literals(serviceLifecycle.states),
  restarts: Count,
  pid: Schema.optionalKey(Count),
  /** Why it last failed, while it is failed or backing off (e.g. "cannot load libvirt.so.0 …"). */
  reason: Schema.optionalKey(Schema.String),
})
export const ServiceStats = Schema.Struct({
  cpuUsage: PercentHundredths,
  memoryBytes: Bytes,
  requests: Count,
})

export const AcceleratorSpec = Schema.Struct({
  node: NodeId,
  deviceType: Schema.Literals(["GPU", "FPGA", "CRYPTO", "NIC", "AI"]),
  vendor: Schema.String,
  model: Schema.String,
  /** PCI address, e.g. 0000:3b:00.0. */
  pciAddress: Schema.String.check(
    Schema.isPattern(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/, { message: "Expected a PCI address" }),
  ),
  driver: Schema.String,
  capabilities: Labels,
})
export const AcceleratorMeta = Schema.Struct({
  state: Schema.Literals(acceleratorLifecycle.states),
  assignedTo: Schema.optionalKey(SystemId),
})
export const AcceleratorStats = Schema.Struct({
  utilization: PercentHundredths,
  memoryTotalBytes: Bytes,
  memoryUsedBytes: Bytes,
  temperatureCelsius: Schema.optionalKey(Schema.Int),
})
