/**
 * The storage alarms the primary raises (`core/monitor/alarms.ts` does the raising, clearing and
 * deduplication): a pool fuller than 85% of its capacity, cleared only once it is below 80%
 * again (hysteresis on the level as well as in time, so a pool at 85% does not flap), and a
 * pool that is not active on its node while that node is alive (failed to build, its directory
 * gone), and a device whose SMART health says it is failing. Pure functions of the CDB's pools
 * and devices, their meta and statistics.
 */
import type { CdbNode, MemberState } from "../cdb/node.ts"
import { decodeValue } from "../hypervisor/values.ts"
import type { AlarmRule, Condition } from "../monitor/alarms.ts"
import type { ConditionBook } from "../node/health.ts"
import type { DeviceMetaValue, DeviceSpecValue, PoolMetaValue, StoragePoolSpecValue } from "./storage.ts"

export const poolFullRule: AlarmRule = {
  name: "pool-full",
  severity: "warning",
  raiseAfterMs: 2_000,
  clearAfterMs: 2_000,
}
export const poolInactiveRule: AlarmRule = {
  name: "pool-inactive",
  severity: "major",
  raiseAfterMs: 10_000,
  clearAfterMs: 2_000,
}

/** Raised above this share of a pool's capacity in use; cleared below `poolFullClear`. */
export const poolFullRaise = 0.85
export const poolFullClear = 0.8

const percent = (share: number) => `${(share * 100).toFixed(1)}%`

const localPools = (cdb: CdbNode) =>
  cdb.entriesOf("storage-pool").flatMap((entry) => {
    const spec = decodeValue<StoragePoolSpecValue>(entry.value)
    return spec?.node === undefined || spec.shared ? [] : [{ id: entry.id, node: spec.node }]
  })

/** `open`: whether the pool-full alarm of this pool is open now (it then holds down to 80%). */
export const poolFullConditions = (
  cdb: CdbNode,
  open: (pool: string) => boolean,
  memberState: (node: string) => MemberState,
  book: ConditionBook,
  nowMs: number,
): ReadonlyArray<Condition> =>
  localPools(cdb).flatMap(({ id, node }) => {
    const stats = decodeValue<{ capacityBytes: number; availableBytes: number }>(
      cdb.statsOf("storage-pool", id, node),
    )
    if (stats === undefined || !(stats.capacityBytes > 0)) return []
    const used = (stats.capacityBytes - stats.availableBytes) / stats.capacityBytes
    const active = memberState(node) === "alive" && used > (open(id) ? poolFullClear : poolFullRaise)
    return [
      book.observe(
        id,
        active,
        `pool ${id} on ${node} is ${percent(used)} full (alarm above ${percent(poolFullRaise)}, cleared below ${percent(poolFullClear)})`,
        nowMs,
        poolFullRule.name,
      ),
    ]
  })

export const poolInactiveConditions = (
  cdb: CdbNode,
  memberState: (node: string) => MemberState,
  book: ConditionBook,
  nowMs: number,
): ReadonlyArray<Condition> =>
  localPools(cdb).map(({ id, node }) => {
    const meta = decodeValue<PoolMetaValue>(
      cdb.metaOf("storage-pool", id).find((slot) => slot.node === node)?.value,
    )
    const active = memberState(node) === "alive" && meta?.state !== "active"
    return book.observe(
      id,
      active,
      active
        ? `pool ${id} is ${meta?.state ?? "not reported"} on ${node}${meta?.detail === undefined ? "" : `: ${meta.detail}`}`
        : `pool ${id} is active on ${node}`,
      nowMs,
      poolInactiveRule.name,
    )
  })

export const deviceFailingRule: AlarmRule = {
  name: "device-failing",
  severity: "critical",
  raiseAfterMs: 0,
  clearAfterMs: 2_000,
}

export const deviceConditions = (
  cdb: CdbNode,
  memberState: (node: string) => MemberState,
  book: ConditionBook,
  nowMs: number,
): ReadonlyArray<Condition> =>
  cdb.entriesOf("storage-device").flatMap((entry) => {
    const spec = decodeValue<DeviceSpecValue>(entry.value)
    if (spec === undefined) return []
    const meta = decodeValue<DeviceMetaValue>(
      cdb.metaOf("storage-device", entry.id).find((slot) => slot.node === spec.node)?.value,
    )
    const active = memberState(spec.node) === "alive" && meta?.smart === "failed"
    const what = [meta?.model, meta?.serial].filter((part) => part !== undefined).join(" ")
    return [
      book.observe(
        entry.id,
        active,
        active
          ? `device ${spec.path} on ${spec.node}${what === "" ? "" : ` (${what})`}: SMART health check failed`
          : `device ${spec.path} on ${spec.node}: SMART ${meta?.smart ?? "unknown"}`,
        nowMs,
        deviceFailingRule.name,
      ),
    ]
  })
