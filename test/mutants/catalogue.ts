/**
 * Bugs planted in the cores, one at a time, to show the simulator finds each (`npm run mutants`).
 * Each is a realistic slip a person could make in that line — a missing margin, an off-by-one in
 * a repair range, a shortcut in a snapshot — written as one exact text replacement in one file:
 * the harness refuses a mutant whose text no longer occurs exactly once (the catalogue has gone
 * stale), so a rename cannot quietly turn a mutant into the original code.
 *
 * `covers` says which promise of the design the mutant breaks; `flags` are the sweep's flags for
 * it beyond the defaults (none: every mutant must be caught by the sweep a user types).
 */

export interface Mutant {
  readonly name: string
  readonly covers:
    | "conflict resolution"
    | "repair ranges"
    | "digests"
    | "flow control"
    | "tombstones"
    | "relays"
    | "ack/persist order"
    | "votes"
    | "leases"
    | "fencing"
    | "slot expiry"
    | "hypervisor"
    | "alarms"
    | "decisions"
    | "storage"
  readonly file: string
  readonly find: string
  readonly replace: string
  readonly why: string
}

export const catalogue: ReadonlyArray<Mutant> = [
  // ---- the CDB: conflict resolution --------------------------------------------------------
  {
    name: "hlc-ignores-counter",
    covers: "conflict resolution",
    file: "core/cdb/hlc.ts",
    find: "  if (left.counter !== right.counter) return left.counter < right.counter ? -1 : 1\n",
    replace: "",
    why: "versions of one millisecond compare by origin only: a node's second write in a millisecond loses to its first",
  },
  {
    name: "hlc-no-observe",
    covers: "conflict resolution",
    file: "core/cdb/node.ts",
    find: "      observe(this.clock, change)\n      this.mergeSpec(changeToEntry(change))",
    replace: "      this.mergeSpec(changeToEntry(change))",
    why: "the clock does not follow versions it applies: a write made after seeing a faster clock's write loses to it",
  },
  {
    name: "lww-keeps-first",
    covers: "conflict resolution",
    file: "core/cdb/durable.ts",
    find: "compareVersions(incoming.version, existing.version) <= 0) return false",
    replace: "compareVersions(incoming.version, existing.version) >= 0) return false",
    why: "the merge keeps the older version: first writer wins where the design says last",
  },
  {
    name: "lww-per-writer",
    covers: "conflict resolution",
    file: "core/cdb/durable.ts",
    find: "export const mergeEntry = (entries: Map<string, SpecEntry>, incoming: SpecEntry): boolean => {\n  const key = entryKey(incoming.kind, incoming.id)\n  const existing = entries.get(key)\n  if (existing !== undefined && compareVersions",
    replace:
      "export const mergeEntry = (entries: Map<string, SpecEntry>, incoming: SpecEntry): boolean => {\n  const key = entryKey(incoming.kind, incoming.id)\n  const existing = entries.get(key)\n  if (existing !== undefined && existing.version.origin === incoming.version.origin && compareVersions",
    why: "versions are compared only within one writer: another node's older write replaces a newer one",
  },
  // ---- the CDB: repair ---------------------------------------------------------------------
  {
    name: "nack-skips-first",
    covers: "repair ranges",
    file: "core/cdb/node.ts",
    find: "      const from = have + 1\n",
    replace: "      const from = have + 2\n",
    why: "a repair request starts one change late: the first missing change is never asked for",
  },
  {
    name: "repair-drops-last",
    covers: "repair ranges",
    file: "core/cdb/node.ts",
    find: "seq <= last && changes.length < this.config.maxRepairChanges",
    replace: "seq < last && changes.length < this.config.maxRepairChanges",
    why: "a repair answer leaves out the last change of the range asked for",
  },
  {
    name: "repair-from-log-start",
    covers: "repair ranges",
    file: "core/cdb/node.ts",
    find: "      if (log === undefined || range.from < log.start || range.from > end) {",
    replace: "      if (log === undefined || range.from > end) {",
    why: "a request older than the retained log is answered from the log's start (a hole) instead of with a snapshot",
  },
  {
    name: "dead-holder-asked-forever",
    covers: "repair ranges",
    file: "core/cdb/node.ts",
    find: '      if (this.memberState(gap.holder === this.config.self ? origin : gap.holder) === "dead") {',
    replace: "      if (false) {",
    why: "a gap keeps asking its holder after the holder died, though a survivor holds the changes",
  },
  // ---- the CDB: digests and flow control ---------------------------------------------------
  {
    name: "digest-counts-buffered",
    covers: "digests",
    file: "core/cdb/node.ts",
    find: "    for (const [origin, seq] of [...this.contiguous, [this.config.self, this.ownSeq] as const]) {",
    replace:
      "    for (const [origin, seq] of [...[...this.contiguous].map(([origin, seq]) => [origin, Math.max(seq, ...(this.pending.get(origin)?.keys() ?? []))] as const), [this.config.self, this.ownSeq] as const]) {",
    why: "a digest reports the highest change received, buffered ones included, not what was applied in order",
  },
  {
    name: "digest-confirms-all",
    covers: "flow control",
    file: "core/cdb/node.ts",
    find: "else this.confirmed.set(datagram.sender, Math.max(this.confirmed.get(datagram.sender) ?? 0, seq))",
    replace: "else this.confirmed.set(datagram.sender, this.ownSeq)",
    why: "any digest from a member confirms this node's whole stream: flow control never holds a writer back",
  },
  {
    name: "digests-renumbered-on-rebuild",
    covers: "digests",
    file: "core/cdb/node.ts",
    find: "    this.digestSeq = Math.max(this.digestSeq, previous.digestSeq)\n",
    replace: "",
    why: "a core rebuilt after a refused commit numbers its digests from 1 again: relays drop them as already forwarded",
  },
  {
    name: "own-writes-throttled",
    covers: "flow control",
    file: "core/node/node.ts",
    find: 'const unthrottled = context.source !== "client"',
    replace: "const unthrottled = false",
    why: "flow control holds back the node's own writes too: a member a window behind keeps the primary from releasing an HA system",
  },
  // ---- the CDB: tombstones -----------------------------------------------------------------
  {
    name: "snapshot-drops-tombstones",
    covers: "tombstones",
    file: "core/cdb/node.ts",
    find: "    for (const entry of this.entries.values()) {\n      entries.push({",
    replace:
      "    for (const entry of this.entries.values()) {\n      if (entry.value === null) continue\n      entries.push({",
    why: "a snapshot leaves deleted entries out (they are gone, after all): a receiver keeps what was deleted",
  },
  // ---- the CDB: relays ---------------------------------------------------------------------
  {
    name: "relay-forwards-always",
    covers: "relays",
    file: "core/cdb/node.ts",
    find: "        if (fresh) this.forward(bytes, via, from)",
    replace: "        this.forward(bytes, via, from)",
    why: "a relay forwards every changes datagram, not only the first time it brings something new",
  },
  {
    name: "relay-digest-key-without-incarnation",
    covers: "relays",
    file: "core/cdb/node.ts",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the text of a template literal in the source
    find: "const key = `d\\u0000${datagram.sender}\\u0000${datagram.incarnation}\\u0000${body.part}`",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the text of a template literal in the source
    replace: "const key = `d\\u0000${datagram.sender}\\u0000${body.part}`",
    why: "a relay remembers digest numbers per sender, not per run: a restarted node's digests (numbered from 1 again) are dropped as old",
  },
  // ---- the composition: acknowledgement and persistence ------------------------------------
  {
    name: "refused-commit-acknowledged",
    covers: "ack/persist order",
    file: "core/node/node.ts",
    find: '    for (const write of this.lastStepWrites) {\n      this.outputs.push({\n        _tag: "WriteRefused",',
    replace:
      '    for (const write of this.lastStepWrites.slice(1)) {\n      this.outputs.push({\n        _tag: "WriteRefused",',
    why: "when a commit is refused, the step's first write is not refused (it was acknowledged by the step, never durable)",
  },
  {
    name: "batch-commits-last-input",
    covers: "ack/persist order",
    file: "core/node/node.ts",
    find: "    for (const input of inputs) {\n      this.apply(input)\n",
    replace: "    for (const input of inputs) {\n      this.persists = []\n      this.apply(input)\n",
    why: "a batch of datagrams commits only what its last one persisted: the rest is applied and sent on, never durable",
  },
  // ---- the monitor: votes and leases -------------------------------------------------------
  {
    name: "vote-granted-twice",
    covers: "votes",
    file: "core/monitor/election.ts",
    find: "    const granted = (this.votedFor === null || this.votedFor === message.from) && this.logUpToDate(message)\n",
    replace: "    const granted = this.logUpToDate(message)\n",
    why: "a voter grants every candidate of a term: two primaries in one term",
  },
  {
    name: "restart-without-promise",
    covers: "votes",
    file: "core/monitor/election.ts",
    find: "    this.promiseUntilMs = nowMs + config.leaseMs\n",
    replace: "",
    why: "a restarted voter votes at once, though before its crash it may have promised a leader, whose lease still runs, not to",
  },
  {
    name: "lease-majority-minus-one",
    covers: "leases",
    file: "core/monitor/election.ts",
    find: "    if (acks.size >= this.majority()) {\n      const margin",
    replace: "    if (acks.size >= this.majority() - 1) {\n      const margin",
    why: "a lease is renewed by one acknowledgement short of a majority",
  },
  {
    name: "lease-outlasts-promise",
    covers: "leases",
    file: "core/monitor/election.ts",
    find: "      const until = sentMs + Math.floor(this.config.leaseMs - margin)",
    replace: "      const until = sentMs + Math.floor(2 * this.config.leaseMs - margin)",
    why: "the lease is twice as long as the voters' promise (a unit slip): a new primary is elected while the old one's lease runs",
  },
  {
    name: "promise-of-nothing",
    covers: "leases",
    file: "core/monitor/election.ts",
    find: "    this.promiseUntilMs = nowMs + this.config.leaseMs\n",
    replace: "    this.promiseUntilMs = nowMs\n",
    why: "a voter that hears the primary promises nothing: it votes for another at once, while the primary's lease runs",
  },
  // ---- the hypervisor: fencing and a dead node's systems -----------------------------------
  {
    name: "fence-ignored",
    covers: "fencing",
    file: "core/hypervisor/hypervisor.ts",
    find: "    return !authority.fenced && nowMs - authority.leaderContactMs <= this.config.haFenceMs",
    replace: "    return nowMs - authority.leaderContactMs <= this.config.haFenceMs * 2",
    why: "a host ignores its fence and trusts its last primary contact for twice the window: it runs HA systems the primary has moved",
  },
  {
    name: "dead-slots-never-expire",
    covers: "slot expiry",
    file: "core/cdb/node.ts",
    find: '      if (this.memberState(slot.node) !== "dead") slots.push(slot)',
    replace: "      slots.push(slot)",
    why: "a dead node's meta slots still count: its claim on a system keeps every other node from starting it",
  },
  {
    name: "migration-to-dead-stuck",
    covers: "slot expiry",
    file: "core/hypervisor/ha.ts",
    find: '      if (heard) {\n        actions.push({\n          _tag: "Release",',
    replace: '      if (false) {\n        actions.push({\n          _tag: "Release",',
    why: "a system stopped for a cold migration to a node that then died waits for that node for good",
  },
  // ---- the hypervisor's own core ----------------------------------------------------------
  {
    name: "start-despite-claim",
    covers: "hypervisor",
    file: "core/hypervisor/hypervisor.ts",
    find: '    if (claimedElsewhere !== undefined && (desired === "running" || desired === "paused")) {',
    replace: '    if (claimedElsewhere !== undefined && desired === "paused") {',
    why: "a node starts a system another node still reports running (the claim is checked only for a paused one)",
  },
  // ---- alarms -------------------------------------------------------------------------------
  {
    name: "service-alarm-inverted",
    covers: "alarms",
    file: "core/node/health.ts",
    find: '      serviceFailing(status) && memberState(status.node) === "alive",',
    replace: '      serviceFailing(status) && memberState(status.node) !== "alive",',
    why: "a failing service is alarmed only while its node is not alive (the condition the wrong way round)",
  },
  {
    name: "unreachable-never-clears",
    covers: "alarms",
    file: "core/monitor/alarms.ts",
    find: '  name: "node-unreachable",\n  severity: "major",\n  raiseAfterMs: 3_000,\n  clearAfterMs: 2_000,',
    replace:
      '  name: "node-unreachable",\n  severity: "major",\n  raiseAfterMs: 3_000,\n  clearAfterMs: 2_000_000,',
    why: "a node-unreachable alarm waits half an hour (a unit slip) before it clears once the node is back",
  },
  // ---- found by the simulator this far: each fix, undone -----------------------------------
  {
    name: "replay-window-narrow",
    covers: "relays",
    file: "core/transport/replay.ts",
    find: "export const reorderToleratedUs = 200_000",
    replace: "export const reorderToleratedUs = 1_024",
    why: "the replay window spans 1,024 counters, a millisecond of the sender's clock: reordered datagrams are dropped as replays",
  },
  {
    name: "seal-clock-no-observe",
    covers: "relays",
    file: "core/transport/replay.ts",
    find: "    this.last = counter\n    return jump\n",
    replace: "    return jump\n",
    why: "the seal's counter follows only the sender's wall clock: a node whose clock was stepped back is deaf to every node that restarts until its clock catches up (found by the fault harness, seed 3012)",
  },
  {
    name: "seal-clock-stands-still",
    covers: "relays",
    file: "core/transport/replay.ts",
    find: "    const now = Math.floor(nowUs) + this.lead\n",
    replace: "    const now = Math.floor(nowUs)\n",
    why: "the seal clock is a plain hybrid clock: once a peer's clock was stepped ahead it stands still at that peer's counter, and a node restarted takes replays of what was sealed while it was down (seed 8001586)",
  },
  {
    name: "ping-hears-any-process",
    covers: "fencing",
    file: "core/monitor/election.ts",
    find: "node === this.config.self && heard === epoch",
    replace: "node === this.config.self",
    why: "a ping that heard an earlier run of this node counts as hearing it: pings played back from before a restart make a node cut off believe it has a majority, and it does not fence (seeds 1000207, 1000230)",
  },
  {
    name: "rebuilt-clock-starts-over",
    covers: "conflict resolution",
    file: "core/cdb/node.ts",
    find: "    observe(this.clock, previous.clock)\n",
    replace: "",
    why: "a CDB rebuilt after a refused commit starts its hybrid clock over from the store: with the wall clock behind, a write redone gets the refused write's version (seed 1000087)",
  },
  {
    name: "snapshot-rebuilt-each-time",
    covers: "repair ranges",
    file: "core/cdb/node.ts",
    find: "    if (kept !== undefined && nowMs - kept.builtMs < this.config.snapshotIntervalMs * snapshotKeptIntervals) {",
    replace: "    if (false) {",
    why: "every request for a snapshot builds a new one, and the receiver starts over: on a lossy link a large one never arrives whole",
  },
  {
    name: "no-wake-on-caught-up",
    covers: "hypervisor",
    file: "core/node/node.ts",
    find: "      this.wakeOnCaughtUp()\n    }\n    return this.finish()",
    replace: "    }\n    return this.finish()",
    why: "a service that waits for the decision log to be caught up is not woken when it is: under reordering the moment passes before it looks",
  },
  {
    name: "member-change-no-reread",
    covers: "hypervisor",
    file: "core/node/node.ts",
    find: "          // (seed 1000101).\n          this.changed(undefined)\n",
    replace: "          // (seed 1000101).\n",
    why: "a service does not read the store again when a member dies: it keeps waiting on the dead node's claim",
  },
  {
    name: "refused-commit-no-reread",
    covers: "hypervisor",
    file: "core/node/node.ts",
    find: "    // the refused step's changes; found by the simulator's view checker).\n    this.changed(undefined)\n",
    replace: "    // the refused step's changes; found by the simulator's view checker).\n",
    why: "after a refused commit the services keep the view they had: of changes that are gone, of members dead whom the rebuilt core counts alive",
  },
  {
    name: "operate-on-stale-store",
    covers: "hypervisor",
    file: "core/hypervisor/requests.ts",
    find: "  if (writesSpec && !request.inSync)",
    replace: "  if (writesSpec && false)",
    why: "an operation through a node cut off writes back the whole spec it holds, undoing a migration it has not seen",
  },
  // ---- the decision log -----------------------------------------------------------------------
  {
    name: "vote-ignores-log",
    covers: "decisions",
    file: "core/monitor/election.ts",
    find: "    if (own === undefined) return true\n",
    replace: "    if (own !== null) return true\n",
    why: "a voter grants a candidate whose decision log is behind its own: a primary without a committed decision overwrites it",
  },
  {
    name: "decision-commits-alone",
    covers: "decisions",
    file: "core/decision/log.ts",
    find: "    const majority = Math.floor(voters.length / 2) + 1\n    // A primary that no longer votes",
    replace: "    const majority = 1\n    // A primary that no longer votes",
    why: "the primary commits (and answers) a decision its own disk holds, before a majority does: a new primary without it grants the same value again",
  },
  {
    name: "follower-applies-uncommitted",
    covers: "decisions",
    file: "core/decision/log.ts",
    find: "    if (message.commit > this.commitIndex) this.commit(Math.min(message.commit, lastNew))\n",
    replace: "    if (lastNew > this.commitIndex) this.commit(lastNew)\n",
    why: "a follower applies the entries it holds before the primary says a majority does: the target of a placement only it heard starts the system, which the other side, not having seen it, places elsewhere",
  },
  // ---- storage ----------------------------------------------------------------------------------
  {
    name: "storage-fit-ignores-others",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: "  const free = Math.max(0, limit - othersBytes)\n",
    replace: "  const free = limit\n",
    why: "a pool's node checks a new volume against the pool's whole capacity, not what its other volumes left: the pool gives more than it has",
  },
  {
    name: "storage-fit-forgets-inflight",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: '      if (call._tag === "createVolume" && !files.has(call.volume.id))\n        givenBytes += sizeMade(call.volume, files)\n',
    replace: "",
    why: "a volume being made does not count until its file is there: a second create admitted while the first is still copying overfills the pool",
  },
  {
    name: "storage-deletes-live",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: "      if (!this.view.deleted(file.id) || this.inFlight.has(file.id)",
    replace:
      "      if (this.view.volumes.some((volume) => volume.id !== file.id) || this.inFlight.has(file.id)",
    why: "a file goes when its pool holds no other volume the store names, deleted or not: a node takes a live volume's disk",
  },
  {
    name: "storage-revert-only-says-so",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: '      this.call(\n        snapshot.id,\n        { _tag: "revertSnapshot", pool, volume: file.id, snapshot: snapshot.id },\n        file.id,\n        id,\n      )\n',
    replace: '      this.finishTask(id, nowMs, undefined, "reverted")\n',
    why: "a revert task is marked succeeded without the driver reverting anything: the volume keeps what was written after the snapshot",
  },
  {
    name: "storage-revert-wrong-snapshot",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: '{ _tag: "revertSnapshot", pool, volume: file.id, snapshot: snapshot.id }',
    replace: '{ _tag: "revertSnapshot", pool, volume: file.id, snapshot: [...onDisk][0] ?? snapshot.id }',
    why: "a revert goes to the volume's oldest snapshot on disk, not the one asked for",
  },
  {
    name: "storage-partial-left",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: '      this.call(volume, { _tag: "discardPartial", pool, volume })\n',
    replace: "      continue\n",
    why: "what a create broken off by a crash left is never cleaned up: it holds its space, and the volume's next create trips over it",
  },
  {
    name: "storage-available-while-creating",
    covers: "storage",
    file: "core/storage/storage.ts",
    find: '          },\n        })\n        this.publishVolume(id, { state: "creating" })\n',
    replace:
      '          },\n        })\n        this.publishVolume(id, { state: "available", path: pool.path + "/" + id + "." + volume.format })\n',
    why: "a volume is published available as its create is asked for: a crash before the create's end leaves the cluster told of a disk that is not there",
  },
  {
    name: "storage-shares-unshareable",
    covers: "storage",
    file: "core/storage/disks.ts",
    find: "            candidate.id !== system && candidate.spec.disks.some((d) => d.volume === disk.volume),",
    replace:
      "            candidate.id === system && candidate.spec.disks.some((d) => d.volume === disk.volume),",
    why: "a volume that is another system's disk can be attached to a second one: two guests write one image",
  },
]

/** The source of `mutant.file` with its bug planted; throws if its text is not there exactly once. */
export const plant = (mutant: Mutant, source: string): string => {
  const at = source.indexOf(mutant.find)
  if (at < 0 || source.indexOf(mutant.find, at + 1) >= 0)
    throw new Error(
      `mutant ${mutant.name}: its text occurs ${at < 0 ? "nowhere" : "more than once"} in ${mutant.file} (the catalogue is stale)`,
    )
  return source.slice(0, at) + mutant.replace + source.slice(at + mutant.find.length)
}
