import { describe, expect, it } from "vitest"
import {
  defaultHypervisorTimings,
  HypervisorNode,
  type Output,
  type SystemSpecValue,
} from "../../../core/hypervisor/hypervisor.ts"

const spec: SystemSpecValue = {
  name: "vm" as SystemSpecValue["name"],
  node: "n1" as NonNullable<SystemSpecValue["node"]>,
  cpus: 1,
  memoryMiB: 64,
  disks: [],
  nics: [],
  ha: true,
  desired: "running",
  placement: { affinity: [], antiAffinity: [] },
}
const config = { ...defaultHypervisorTimings, self: "n1", volumeDir: "/v" }
const calls = (outputs: ReadonlyArray<Output>) =>
  outputs.flatMap((output) => (output._tag === "Call" ? [output.call._tag] : []))
const deadline = (outputs: ReadonlyArray<Output>) =>
  outputs.flatMap((output) => (output._tag === "ArmDeadline" ? [output.atMs] : []))[0]!
const lastMeta = (outputs: ReadonlyArray<Output>) =>
  outputs.flatMap((output) => (output._tag === "WriteMeta" ? [output.meta] : [])).at(-1)
const running = (domain: "running" | "shutoff") => ({
  _tag: "Observed" as const,
  domains: [{ name: "acp-vm", state: domain }],
})

describe("HA fencing in the hypervisor core", () => {
  it("destroys a running HA system just after its HA authority runs out, not at the next observation after it, and holds it", () => {
    const core = new HypervisorNode(config, 0)
    // The primary last pinged this node at 1000; the domain stays up; the core runs on its own deadlines.
    const authority = { leaderContactMs: 1_000, fenced: false }
    core.handle({ _tag: "ViewChanged", view: { systems: [{ id: "vm", spec }], tasks: [] } }, 1_000, authority)
    let outputs = core.handle(running("running"), 1_000, authority)
    let destroyed: { atMs: number; outputs: ReadonlyArray<Output> } | undefined
    for (let step = 0; step < 20 && destroyed === undefined; step++) {
      const at = deadline(outputs)
      outputs = core.handle({ _tag: "DeadlineReached" }, at, authority)
      if (outputs.some((output) => output._tag === "Observe"))
        outputs = [...outputs, ...core.handle(running("running"), at, authority)]
      if (calls(outputs).includes("destroy")) destroyed = { atMs: at, outputs }
    }
    expect(destroyed?.atMs).toBe(1_000 + config.haFenceMs + 1)
    expect(lastMeta(destroyed!.outputs)?.held).toBe(true)
  })

  it("waits to start a system while another live node's meta still claims it", () => {
    const core = new HypervisorNode(config, 0)
    const authority = { leaderContactMs: 5_000, fenced: false }
    const view = (claims: ReadonlyArray<{ node: string; state: string }>) => ({
      _tag: "ViewChanged" as const,
      view: { systems: [{ id: "vm", spec: { ...spec, ha: false }, claims }], tasks: [] },
    })
    core.handle(view([{ node: "n2", state: "running" }]), 5_000, authority)
    const observed = core.handle(running("shutoff"), 5_000, authority)
    expect(calls(observed)).toEqual(["define"])
    const request = observed.flatMap((output) => (output._tag === "Call" ? [output.requestId] : []))[0]!
    const defined = core.handle(
      { _tag: "CallDone", requestId: request, observed: "shutoff" },
      5_005,
      authority,
    )
    expect(calls(defined)).toEqual([])
    expect(lastMeta(defined)?.detail).toContain("n2 still reports it running")
    expect(calls(core.handle(view([{ node: "n2", state: "stopping" }]), 5_010, authority))).toEqual([])
    expect(calls(core.handle(view([]), 5_020, authority))).toEqual(["start"])
  })
})
