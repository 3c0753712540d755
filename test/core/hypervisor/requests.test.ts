import { describe, expect, it } from "vitest"
import type { SystemSpecValue } from "../../../core/hypervisor/hypervisor.ts"
import { planOperation } from "../../../core/hypervisor/requests.ts"

const spec = {
  name: "web",
  node: "n2",
  cpus: 1,
  memoryMiB: 64,
  ha: false,
  desired: "running",
  disks: [],
  nics: [],
  placement: { affinity: [], antiAffinity: [] },
  epoch: 0,
} as unknown as SystemSpecValue

const request = (operation: string, live: ReadonlyArray<string>, inSync = true) => ({
  system: "web",
  spec,
  operation,
  parameters: {},
  nowMs: 1_000,
  nodes: ["n1", "n2", "n3"],
  live,
  inSync,
})

describe("planOperation", () => {
  it("refuses at once an operation for a system whose node cannot act, naming the node", () => {
    for (const operation of ["start", "stop", "reboot", "suspend", "resume"]) {
      expect(planOperation(request(operation, ["n1", "n3"]))).toEqual({
        reason: "node-unavailable",
        message: `system web is on n2, which cannot act now (not alive, or fenced): ${operation} would only wait`,
      })
    }
  })

  it("deletes a system whose node cannot act, with a task that is already done and says why", () => {
    const plan = planOperation(request("destroy", ["n1"]))
    expect(plan).toMatchObject({ system: null, task: { owner: "n2", state: "succeeded" } })
    expect("task" in plan && plan.task.log.at(-1)?.line).toContain("n2 removes its domain when it is back")
  })

  it("refuses, through a node whose store is not caught up, what would write the spec back; a task alone it takes", () => {
    for (const operation of ["start", "stop", "suspend", "resume"])
      expect(planOperation(request(operation, ["n2"], false))).toMatchObject({ reason: "not-in-sync" })
    expect(planOperation(request("reboot", ["n2"], false))).toMatchObject({
      system: undefined,
      task: { owner: "n2" },
    })
  })

  it("gives a live node's system a queued task", () => {
    expect(planOperation(request("stop", ["n2"]))).toMatchObject({
      system: { desired: "stopped" },
      task: { owner: "n2", state: "queued", operation: "hypervisor.stop" },
    })
  })
})
