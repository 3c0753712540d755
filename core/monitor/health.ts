/**
 * The health score: 0-100 for the cluster and for each node, computed from what the CDB and
 * the election say, always with its reasons, so a person can see why the score is what it is
 * ("-20: node n3 unreachable for 40 s").
 */

export interface HealthReason {
  readonly points: number
  readonly reason: string
}

export interface Score {
  readonly score: number
  readonly reasons: ReadonlyArray<HealthReason>
}

export interface HealthInput {
  readonly nowMs: number
  readonly members: ReadonlyArray<{
    readonly id: string
    readonly state: "alive" | "suspect" | "dead"
    readonly sinceMs: number
  }>
  readonly voters: number
  readonly votersSeen: number
  readonly primary: string | null
  readonly openAlarms: ReadonlyArray<{
    readonly id: string
    readonly severity: "info" | "warning" | "major" | "critical"
  }>
  readonly fenced: boolean
  /** The members' services that are failing or backing off, as their nodes report them, and what each costs. */
  readonly services?: ReadonlyArray<{
    readonly node: string
    readonly name: string
    readonly state: string
    readonly reason?: string
    readonly points: number
  }>
  /** Since when this node's store has refused commits, and what it said (a full disk, say). */
  readonly storeFailing?: { readonly sinceMs: number; readonly detail: string }
  /** Values this node's store held with a wrong checksum at its start (never served): how many, and what became of them. */
  readonly storeCorrupted?: Corrupted
}

/**
 * What a node's store held corrupted at its start (never served): how many values, and of its own
 * ones that its own log no longer held, how many are still missing (`lost`: asked of the peers,
 * or no peer to ask) and how many a peer's snapshot gave back (`repaired`).
 */
export interface Corrupted {
  readonly count: number
  readonly lost: number
  readonly repaired?: number
}

/** What became of a store's corrupted values, as health and the alarm say it. */
export const corruptedOutcome = (corrupted: Corrupted): string => {
  const own =
    corrupted.lost > 0
      ? `${corrupted.lost} of its own not yet back from a peer`
      : (corrupted.repaired ?? 0) > 0
        ? `${corrupted.repaired} of its own given back by a peer`
        : undefined
  const rest = "asked of peers again or restored from its own log"
  return own === undefined ? `all ${rest}` : `${own}, the rest ${rest}`
}

export interface Health {
  readonly cluster: Score
  readonly nodes: Readonly<Record<string, Score>>
}

const severityPoints = { info: 0, warning: 2, major: 5, critical: 15 } as const

const seconds = (ms: number) => `${Math.max(0, Math.round(ms / 1000))} s`

const finish = (reasons: ReadonlyArray<HealthReason>): Score => ({
  score: Math.max(0, 100 - reasons.reduce((sum, reason) => sum + reason.points, 0)),
  reasons: [...reasons].sort(
    (left, right) => right.points - left.points || (left.reason < right.reason ? -1 : 1),
  ),
})

export const computeHealth = (input: HealthInput): Health => {
  const cluster: Array<HealthReason> = []
  const nodes: Record<string, Score> = {}
  const perNode = Math.max(5, Math.floor(60 / Math.max(1, input.members.length)))
  for (const member of input.members) {
    const forMs = input.nowMs - member.sinceMs
    if (member.state === "dead") {
      cluster.push({ points: perNode, reason: `node ${member.id} unreachable for ${seconds(forMs)}` })
      nodes[member.id] = finish([{ points: 100, reason: `unreachable for ${seconds(forMs)}` }])
    } else if (member.state === "suspect") {
      cluster.push({
        points: Math.ceil(perNode / 2),
        reason: `node ${member.id} suspect (silent) for ${seconds(forMs)}`,
      })
      nodes[member.id] = finish([{ points: 50, reason: `suspect (silent) for ${seconds(forMs)}` }])
    } else {
      nodes[member.id] = finish([])
    }
  }
  const majority = Math.floor(input.voters / 2) + 1
  if (input.votersSeen < majority)
    cluster.push({
      points: 40,
      reason: `this node sees ${input.votersSeen} of ${input.voters} voters, under the majority of ${majority}`,
    })
  if (input.primary === null) cluster.push({ points: 20, reason: "no primary monitor holds a lease" })
  if (input.fenced) cluster.push({ points: 30, reason: "this node has fenced itself (no majority)" })
  if (input.storeFailing !== undefined)
    cluster.push({
      points: 30,
      reason: `this node's store refuses writes (${input.storeFailing.detail}) for ${seconds(input.nowMs - input.storeFailing.sinceMs)}`,
    })
  if (input.storeCorrupted !== undefined && input.storeCorrupted.count > 0)
    cluster.push({
      points: input.storeCorrupted.lost > 0 ? 30 : 5,
      reason: `this node's store held ${input.storeCorrupted.count} corrupted value(s) at start, not served: ${corruptedOutcome(input.storeCorrupted)}`,
    })
  for (const service of input.services ?? []) {
    const reason = `${service.name} on ${service.node} ${service.state}${service.reason === undefined ? "" : `: ${service.reason}`}`
    cluster.push({ points: service.points, reason })
    const node = nodes[service.node]
    if (node !== undefined)
      nodes[service.node] = finish([...node.reasons, { points: service.points, reason }])
  }
  for (const alarm of input.openAlarms) {
    const points = severityPoints[alarm.severity]
    if (points > 0) cluster.push({ points, reason: `${alarm.severity} alarm ${alarm.id} open` })
  }
  return { cluster: finish(cluster), nodes }
}
