/**
 * Alarms: only a primary with a valid lease writes them (`alarm`); a node-unreachable alarm
 * raised about a node that was, in truth, up and connected at that moment counts as false.
 */
import type { AlarmChange } from "../../core/monitor/alarms.ts"
import type { Sim } from "../events.ts"
import type { Faults } from "../faults.ts"
import type { SimNode } from "../host.ts"

export class AlarmChecker {
  private readonly sim: Sim
  private readonly faults: Faults
  raised = 0
  /** Alarms raised about a node that was up and connected (ground truth) when it was raised. */
  falseAlarms = 0

  constructor(sim: Sim, faults: Faults) {
    this.sim = sim
    this.faults = faults
  }

  written(node: SimNode, changes: ReadonlyArray<AlarmChange>): void {
    if (node.leaseUntilUs <= this.sim.nowUs) {
      this.sim.violate("alarm", `${node.id} wrote alarms without a valid lease`)
    }
    for (const change of changes) {
      if (change.record.state !== "raised") continue
      this.raised++
      if (change.record.subject.kind !== "node") continue
      // Ground truth at the moment of raising: is the subject really down or cut off?
      const subject = this.sim.byId.get(change.record.subject.id)
      const real =
        subject === undefined ||
        subject.core === null ||
        subject.cutOffSinceUs !== null ||
        this.faults.blocked(subject.index, node.index) ||
        this.faults.blocked(node.index, subject.index)
      if (!real) this.falseAlarms++
    }
  }
}
