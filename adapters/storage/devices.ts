/**
 * The host's block devices, for the storage service: `systeminformation`'s `blockDevices`
 * (lsblk underneath) for disks, partitions and loop devices with a size, and `smartctl -j -H`
 * (smartmontools) for each disk's SMART health where it is installed and the device has SMART
 * (a virtual disk has none: `unknown`, as it is where smartctl is missing).
 */
import { execFile } from "node:child_process"
import { Effect } from "effect"
import si from "systeminformation"
import type { DeviceInfo } from "../../core/ports/storage.ts"

const smartOf = (path: string) =>
  Effect.callback<DeviceInfo["smart"]>((resume) => {
    execFile("smartctl", ["-j", "-H", path], { timeout: 10_000 }, (_error, stdout) => {
      // smartctl's exit status is a bit mask even when it answers; its JSON says what it found.
      try {
        const passed = (JSON.parse(stdout) as { smart_status?: { passed?: boolean } }).smart_status?.passed
        resume(Effect.succeed(passed === true ? "passed" : passed === false ? "failed" : "unknown"))
      } catch {
        resume(Effect.succeed("unknown"))
      }
    })
  })

export const listDevices: Effect.Effect<ReadonlyArray<DeviceInfo>> = Effect.gen(function* () {
  const devices = yield* Effect.promise(() => si.blockDevices()).pipe(Effect.orElseSucceed(() => []))
  const found: Array<DeviceInfo> = []
  for (const device of devices) {
    const type =
      device.type === "disk" || device.type === "part" || device.type === "loop" ? device.type : undefined
    if (type === undefined || !(device.size > 0)) continue
    found.push({
      name: device.name,
      path: device.device || `/dev/${device.name}`,
      sizeBytes: device.size,
      type,
      rotational: device.physical === "HDD",
      ...(device.model === "" ? {} : { model: device.model }),
      ...(device.serial === "" ? {} : { serial: device.serial }),
      smart: type === "disk" ? yield* smartOf(device.device || `/dev/${device.name}`) : "unknown",
    })
  }
  return found
})
