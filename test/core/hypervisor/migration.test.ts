import { describe, expect, it } from "vitest"
import { haActions } from "../../../core/hypervisor/ha.ts"
import type { SystemSpecValue } from "../../../core/hypervisor/hypervisor.ts"
import { defaultSchedulerPolicy } from "../../../core/hypervisor/scheduler.ts"
import type { NodeId } from "../../../core/model/ids.ts"

const spec: SystemSpecValue = {
  name: "vm1",
  cpus: 1,
  memoryMiB: 1024,
  disks: [],
  nics: [],
  ha: true,
  desired: "running",
  placement: { affinity: [], antiAffinity: [] },
  node: "n1" as NodeId,
  epoch: 3,
}
const node = (id: string, alive: boolean) => ({
  id,
  alive,
  fenced: false,
  roles: [],
  cpuCount: 16,
  memoryMiB: 32_768,
  cpuUsageHundredths: 0,
})

const round = (target: { readonly id: string; readonly alive: boolean }) =>
  haActions({
    nowMs: 100_000,
    self: "n2",
    primarySinceMs: 0,
    systems: [{ id: "vm1", spec }],
    placements: { vm1: { node: "n1", epoch: 3 } },
    retired: [],
    // n1 stopped vm1 for a cold migration to the target, in the system's current epoch.
    metaOf: (_, of) =>
      of === "n1"
        ? ({
            state: "stopped",
            sinceMs: 90_000,
            domainName: "acp-vm1",
            epoch: 3,
            handoverTo: target.id as NodeId,
          } as const)
        : undefined,
    lastHeardMs: () => 99_900,
    nodes: [node("n1", true), node("n2", true), node(target.id, target.alive)],
    timings: { haFenceMs: 4_000, quorumWindowMs: 1_000, marginMs: 500 },
    policy: defaultSchedulerPolicy,
  })

describe("HA: a cold migration", () => {
  it("moves the system to its target once its node has stopped it", () => {
    expect(round({ id: "n3", alive: true })).toMatchObject([
      { _tag: "Move", system: "vm1", from: "n1", to: "n3", expect: 3 },
    ])
  })

  it("gives the system back to its node when the target cannot take it (it died meanwhile)", () => {
    expect(round({ id: "n3", alive: false })).toMatchObject([
      { _tag: "Release", system: "vm1", node: "n1", expect: 3 },
    ])
    const [release] = round({ id: "n3", alive: false })
    expect(release?._tag === "Release" ? release.reason : undefined).toMatch(/^migration to n3 failed: /)
  })
})
