import { describe, expect, it } from "vitest"
import {
  type AlarmRecord,
  acknowledgeAlarm,
  decodeAlarm,
  encodeAlarm,
  evaluateAlarms,
  nodeUnreachableRule,
} from "../../../core/monitor/alarms.ts"
import { computeHealth } from "../../../core/monitor/health.ts"

const context = { nowMs: 10_000, term: 3, self: "n1", subjectKind: "node" }

/** The node-unreachable rule on one condition about n2, with the alarm the CDB holds for it, if any. */
const evaluateN2 = (active: boolean, sinceMs: number, existing?: AlarmRecord) =>
  evaluateAlarms(
    nodeUnreachableRule,
    [{ subject: "n2", active, sinceMs, message: "n2 unreachable" }],
    () => existing,
    context,
  )

describe("alarms", () => {
  describe("evaluateAlarms", () => {
    it("raises only after the condition has held for raiseAfterMs (a flapping link pages nobody)", () => {
      const brief = evaluateN2(true, 9_000)
      expect(brief).toEqual([])
      const long = evaluateN2(true, 6_000)
      expect(long).toMatchObject([
        { id: "node-unreachable.n2", record: { state: "raised", term: 3, raisedBy: "n1", occurrences: 1 } },
      ])
    })

    it("does not raise an alarm that is already open (deduplication), and raises a cleared one again, counting it", () => {
      const raised = evaluateN2(true, 0)[0]!.record
      expect(evaluateN2(true, 0, raised)).toEqual([])
      const cleared: AlarmRecord = { ...raised, state: "cleared" }
      const again = evaluateN2(true, 0, cleared)
      expect(again[0]?.record).toMatchObject({ state: "raised", occurrences: 2 })
    })

    it("clears only after the condition has been gone for clearAfterMs", () => {
      const raised = evaluateN2(true, 0)[0]!.record
      const soon = evaluateN2(false, 9_500, raised)
      expect(soon).toEqual([])
      const later = evaluateN2(false, 7_000, raised)
      expect(later[0]?.record.state).toBe("cleared")
    })

    it("round-trips through the bytes stored in the CDB, and rejects bytes that are not an alarm", () => {
      const record = evaluateN2(true, 0)[0]!.record
      expect(decodeAlarm(encodeAlarm(record))).toEqual(record)
      expect(decodeAlarm(new TextEncoder().encode("{not json"))).toBeUndefined()
      expect(decodeAlarm(new TextEncoder().encode('{"x":1}'))).toBeUndefined()
    })
  })

  describe("acknowledgeAlarm", () => {
    it("moves a raised alarm to acknowledged and records who; refuses a cleared one, naming its state", () => {
      const raised = evaluateN2(true, 0)[0]!.record
      const acked = acknowledgeAlarm("node-unreachable.n2", raised, "alice")
      expect(acked).toMatchObject({
        _tag: "Success",
        success: { state: "acknowledged", acknowledgedBy: "alice" },
      })
      const cleared = acknowledgeAlarm("node-unreachable.n2", { ...raised, state: "cleared" }, "bob")
      expect(cleared).toMatchObject({ _tag: "Failure", failure: { state: "cleared", event: "acknowledge" } })
    })
  })

  describe("computeHealth", () => {
    it("scores a healthy cluster 100 with no reasons", () => {
      const health = computeHealth({
        nowMs: 0,
        members: [{ id: "n1", state: "alive", sinceMs: 0 }],
        voters: 3,
        votersSeen: 3,
        primary: "n1",
        openAlarms: [],
        fenced: false,
      })
      expect(health.cluster).toEqual({ score: 100, reasons: [] })
    })

    it("explains every point it takes off, largest first", () => {
      const health = computeHealth({
        nowMs: 50_000,
        members: [
          { id: "n1", state: "alive", sinceMs: 0 },
          { id: "n2", state: "dead", sinceMs: 10_000 },
          { id: "n3", state: "suspect", sinceMs: 49_000 },
        ],
        voters: 3,
        votersSeen: 1,
        primary: null,
        openAlarms: [{ id: "node-unreachable.n2", severity: "major" }],
        fenced: false,
      })
      const total = health.cluster.reasons.reduce((sum, reason) => sum + reason.points, 0)
      expect(health.cluster.score).toBe(Math.max(0, 100 - total))
      expect(health.cluster.reasons.map((reason) => reason.reason)).toContain("node n2 unreachable for 40 s")
      expect(health.cluster.reasons.map((reason) => reason.reason)).toContain(
        "no primary monitor holds a lease",
      )
      const points = health.cluster.reasons.map((reason) => reason.points)
      expect(points).toEqual([...points].sort((a, b) => b - a))
      expect(health.nodes.n2).toEqual({
        score: 0,
        reasons: [{ points: 100, reason: "unreachable for 40 s" }],
      })
    })
  })
})
