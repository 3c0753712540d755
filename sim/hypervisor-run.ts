/**
 * One node's hypervisor core against the simulated VMM, in virtual time: operator requests
 * (desired-state changes, each with its task) arrive on a schedule, the VMM injects faults, and
 * the run records every meta state and task the core wrote. Deterministic for a seed. Used by
 * the property tests of the reconcile loop; the whole-cluster simulation drives the same core.
 */
import {
  defaultHypervisorTimings,
  HypervisorNode,
  type Input,
  type Output,
  type SystemSpecValue,
  type TaskSpecValue,
} from "../core/hypervisor/hypervisor.ts"
import { newTask } from "../core/hypervisor/requests.ts"
import { Prng } from "./prng.ts"
import { callDone, SimVmm, type SimVmmFaults } from "./vmm.ts"

export interface Request {
  readonly atMs: number
  readonly desired: "running" | "stopped" | "paused"
}

export interface HypervisorRun {
  readonly metaStates: ReadonlyArray<string>
  readonly tasks: ReadonlyArray<TaskSpecValue>
  readonly finalObserved: string
  readonly finalDesired: string
  readonly calls: number
}

const operationFor = (desired: Request["desired"]) =>
  desired === "running" ? "start" : desired === "stopped" ? "stop" : "suspend"

export const runHypervisor = (
  seed: number,
  requests: ReadonlyArray<Request>,
  faults: SimVmmFaults,
  endMs: number,
): HypervisorRun => {
  const prng = new Prng(seed)
  const vmm = new SimVmm(prng.fork("vmm"), faults)
  const core = new HypervisorNode(
    {
      ...defaultHypervisorTimings,
      self: "n1",
      volumeDir: "/var/lib/acp/volumes",
      stopTimeoutMs: 2_000,
      retryMs: 200,
      observeEveryMs: 250,
      taskTimeoutMs: 30_000,
    },
    0,
  )
  let spec: SystemSpecValue = {
    name: "vm",
    node: "n1" as NonNullable<SystemSpecValue["node"]>,
    cpus: 1,
    memoryMiB: 64,
    disks: [],
    nics: [],
    ha: false,
    desired: "running",
    placement: { affinity: [], antiAffinity: [] },
  }
  const tasks = new Map<string, TaskSpecValue>([["t0", newTask("create", "vm", "n1", {}, 0)]])
  const metaStates: Array<string> = []
  const pending: Array<{ atMs: number; input: Input }> = []
  let deadlineMs = 0
  let calls = 0
  const view = (): Input => ({
    _tag: "ViewChanged",
    view: {
      systems: [{ id: "vm", spec }],
      tasks: [...tasks]
        .filter(([, task]) => task.state === "queued" || task.state === "running")
        .map(([id, task]) => ({ id, spec: task })),
    },
  })
  const carry = (outputs: ReadonlyArray<Output>, nowMs: number) => {
    let changed = false
    for (const output of outputs) {
      switch (output._tag) {
        case "Call": {
          calls++
          const result = vmm.execute(output.domain, output.call, nowMs * 1000)
          pending.push({
            atMs: nowMs + Math.max(1, Math.round(result.latencyUs / 1000)),
            input: callDone(output.requestId, result),
          })
          break
        }
        case "Observe":
          pending.push({ atMs: nowMs + 1, input: { _tag: "Observed", domains: vmm.list() } })
          break
        case "WriteMeta":
          metaStates.push(output.meta.state)
          break
        case "WriteTask":
          tasks.set(output.id, output.spec)
          break
        case "WriteSpec":
          spec = output.spec
          changed = true
          break
        case "ArmDeadline":
          deadlineMs = output.atMs
          break
      }
    }
    return changed
  }
  const authority = (nowMs: number) => ({ leaderContactMs: nowMs, fenced: false })
  const step = (input: Input, nowMs: number) => {
    if (carry(core.handle(input, nowMs, authority(nowMs)), nowMs))
      carry(core.handle(view(), nowMs, authority(nowMs)), nowMs)
  }
  step(view(), 0)
  let nextRequest = 0
  for (let nowMs = 1; nowMs <= endMs; nowMs++) {
    vmm.advance(nowMs * 1000, 1000)
    const request = requests[nextRequest]
    if (request !== undefined && request.atMs <= nowMs) {
      nextRequest++
      spec = { ...spec, desired: request.desired }
      tasks.set(`t${nextRequest}`, newTask(operationFor(request.desired), "vm", "n1", {}, nowMs))
      step(view(), nowMs)
    }
    for (let index = 0; index < pending.length; ) {
      if (pending[index]!.atMs <= nowMs) {
        const [due] = pending.splice(index, 1)
        step(due!.input, nowMs)
      } else index++
    }
    if (nowMs >= deadlineMs) step({ _tag: "DeadlineReached" }, nowMs)
  }
  return {
    metaStates,
    tasks: [...tasks.values()],
    finalObserved: vmm.list().find((domain) => domain.name === "acp-vm")?.state ?? "absent",
    finalDesired: spec.desired,
    calls,
  }
}
