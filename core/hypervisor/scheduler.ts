/**
 * The scheduler: chooses a node for a new or displaced system, as a pure function of the
 * cluster's nodes, the systems already placed and a policy. It explains every node's verdict,
 * so `--dry-run` can show the decision and why. Deterministic: the same input gives the same
 * answer (ties go to the lower node id).
 *
 * Rules, in order: the node must be alive, unfenced, able to run systems (its hypervisor
 * service up) and a compute node; memory committed to
 * systems may not exceed `memoryOvercommitPercent` of the node's memory, nor virtual CPUs
 * `cpuOvercommitPercent` of its CPUs; anti-affinity (either way round) excludes a node;
 * affinity requires the node its partners run on; a disk in a node-local storage pool pins the
 * system to that pool's node. Among the eligible, the most free memory
 * after placement wins, then the lower CPU usage, then fewer systems.
 */

export interface NodeCapacity {
  readonly id: string
  readonly alive: boolean
  readonly fenced: boolean
  /** Empty means every role. */
  readonly roles: ReadonlyArray<string>
  readonly cpuCount: number
  readonly memoryMiB: number
  /** Current CPU use in hundredths of a percent (0–10000), from the node's statistics. */
  readonly cpuUsageHundredths: number
  /** Set when the node cannot run systems now, with the reason (its hypervisor service is down). */
  readonly unavailable?: string
}

/** The nodes that can act now: alive and not fenced. */
export const liveNodes = (nodes: ReadonlyArray<NodeCapacity>): ReadonlyArray<string> =>
  nodes.filter((node) => node.alive && !node.fenced).map((node) => node.id)

export interface PlacedSystem {
  readonly id: string
  readonly node: string
  readonly cpus: number
  readonly memoryMiB: number
  readonly antiAffinity: ReadonlyArray<string>
}

export interface SystemRequest {
  readonly id: string
  readonly cpus: number
  readonly memoryMiB: number
  readonly affinity: ReadonlyArray<string>
  readonly antiAffinity: ReadonlyArray<string>
  /** The one node the system can run on (its disks are local to it), with why. */
  readonly pinned?: Pin
}

export interface Pin {
  readonly node: string
  readonly reason: string
}

/** What the scheduler reads of a system's spec. */
export interface Placeable {
  readonly node?: string
  readonly cpus: number
  readonly memoryMiB: number
  readonly placement: {
    readonly affinity: ReadonlyArray<string>
    readonly antiAffinity: ReadonlyArray<string>
  }
}

/** The systems that are on a node, as the scheduler counts them. */
export const placedSystems = (
  systems: ReadonlyArray<{ readonly id: string; readonly spec: Placeable }>,
): Array<PlacedSystem> =>
  systems.flatMap(({ id, spec }) =>
    spec.node === undefined
      ? []
      : [
          {
            id,
            node: spec.node,
            cpus: spec.cpus,
            memoryMiB: spec.memoryMiB,
            antiAffinity: spec.placement.antiAffinity,
          },
        ],
  )

export const requestFor = (id: string, spec: Placeable, pinned?: Pin): SystemRequest => ({
  id,
  cpus: spec.cpus,
  memoryMiB: spec.memoryMiB,
  affinity: spec.placement.affinity,
  antiAffinity: spec.placement.antiAffinity,
  ...(pinned === undefined ? {} : { pinned }),
})

export interface SchedulerPolicy {
  readonly memoryOvercommitPercent: number
  readonly cpuOvercommitPercent: number
}

export const defaultSchedulerPolicy: SchedulerPolicy = {
  memoryOvercommitPercent: 100,
  cpuOvercommitPercent: 400,
}

export interface Verdict {
  readonly node: string
  readonly eligible: boolean
  readonly reason: string
  readonly freeMemoryMiBAfter: number
}

export type Decision =
  | { readonly _tag: "Placed"; readonly node: string; readonly verdicts: ReadonlyArray<Verdict> }
  | { readonly _tag: "Unplaceable"; readonly reason: string; readonly verdicts: ReadonlyArray<Verdict> }

export const place = (
  request: SystemRequest,
  nodes: ReadonlyArray<NodeCapacity>,
  placed: ReadonlyArray<PlacedSystem>,
  policy: SchedulerPolicy = defaultSchedulerPolicy,
): Decision => {
  // Sorted, so the explanation (which partner repels) does not depend on the input's order either.
  const others = placed
    .filter((system) => system.id !== request.id)
    .sort((left, right) => (left.id < right.id ? -1 : left.id > right.id ? 1 : 0))
  const partnerNodes = [
    ...new Set(others.filter((system) => request.affinity.includes(system.id)).map((system) => system.node)),
  ].sort()
  const sorted = [...nodes].sort((left, right) => (left.id < right.id ? -1 : left.id > right.id ? 1 : 0))
  const verdicts = sorted.map((node): Verdict & { readonly cpuUsage: number; readonly count: number } => {
    const here = others.filter((system) => system.node === node.id)
    const memoryLimit = Math.floor((node.memoryMiB * policy.memoryOvercommitPercent) / 100)
    const cpuLimit = Math.floor((node.cpuCount * policy.cpuOvercommitPercent) / 100)
    const memoryCommitted = here.reduce((sum, system) => sum + system.memoryMiB, 0)
    const cpusCommitted = here.reduce((sum, system) => sum + system.cpus, 0)
    const freeMemoryMiBAfter = memoryLimit - memoryCommitted - request.memoryMiB
    const base = { node: node.id, freeMemoryMiBAfter, cpuUsage: node.cpuUsageHundredths, count: here.length }
    const excluded = (reason: string) => ({ ...base, eligible: false, reason })
    if (!node.alive) return excluded("not alive")
    if (node.fenced) return excluded("fenced")
    if (node.unavailable !== undefined) return excluded(node.unavailable)
    if (node.roles.length > 0 && !node.roles.includes("compute")) return excluded("not a compute node")
    if (request.pinned !== undefined && request.pinned.node !== node.id)
      return excluded(request.pinned.reason)
    if (freeMemoryMiBAfter < 0)
      return excluded(
        `memory: ${memoryCommitted} + ${request.memoryMiB} MiB > ${memoryLimit} MiB (${policy.memoryOvercommitPercent}% of ${node.memoryMiB})`,
      )
    if (cpusCommitted + request.cpus > cpuLimit)
      return excluded(
        `cpus: ${cpusCommitted} + ${request.cpus} > ${cpuLimit} (${policy.cpuOvercommitPercent}% of ${node.cpuCount})`,
      )
    const repelled = here.find(
      (system) => request.antiAffinity.includes(system.id) || system.antiAffinity.includes(request.id),
    )
    if (repelled !== undefined) return excluded(`anti-affinity with ${repelled.id}`)
    if (partnerNodes.length > 0 && partnerNodes[0] !== node.id)
      return excluded(`affinity: partners run on ${partnerNodes.join(", ")}`)
    return { ...base, eligible: true, reason: `${freeMemoryMiBAfter} MiB free after placement` }
  })
  const plain = verdicts.map(({ node, eligible, reason, freeMemoryMiBAfter }) => ({
    node,
    eligible,
    reason,
    freeMemoryMiBAfter,
  }))
  if (partnerNodes.length > 1)
    return {
      _tag: "Unplaceable",
      reason: `affinity partners run on different nodes: ${partnerNodes.join(", ")}`,
      verdicts: plain,
    }
  const best = verdicts
    .filter((verdict) => verdict.eligible)
    .sort(
      (left, right) =>
        right.freeMemoryMiBAfter - left.freeMemoryMiBAfter ||
        left.cpuUsage - right.cpuUsage ||
        left.count - right.count ||
        (left.node < right.node ? -1 : 1),
    )[0]
  if (best === undefined)
    return {
      _tag: "Unplaceable",
      reason: nodes.length === 0 ? "no nodes" : "no node is eligible",
      verdicts: plain,
    }
  return { _tag: "Placed", node: best.node, verdicts: plain }
}
