/**
 * The storage service on a real node. Its core runs inside the node's composition
 * (`core/storage/service.ts`, the same object the simulator plugs in); here is its port: the
 * executor that carries the core's driver calls out through the storage driver, each on its own
 * fiber, and answers with what the call made. Each observation (every 2 s) also publishes the
 * pools' figures and the volumes' allocation as statistics: what `acp storage pool list` shows.
 */
import { Effect } from "effect"
import { encodeValue as json } from "../../core/hypervisor/values.ts"
import { ShareServer, Storage, type StorageError } from "../../core/ports/storage.ts"
import { deviceId, type Observed, type StorageCall } from "../../core/storage/storage.ts"
import { io, makeDirectory } from "../storage/common.ts"
import { listDevices } from "../storage/devices.ts"
import type { RunningNode, ServiceExecutor } from "./node.ts"

const asFailure = (error: StorageError) => ({ reason: error.reason, detail: error.detail })

const executor = (
  running: RunningNode,
  storage: Storage["Service"],
  shares: ShareServer["Service"],
): ServiceExecutor<"storage"> => {
  const execute = (call: StorageCall) => {
    switch (call._tag) {
      case "ensurePool":
        return storage.ensurePool(call.pool).pipe(Effect.map((pool) => ({ pool })))
      case "createVolume":
        return storage.createVolume(call.pool, call.volume).pipe(Effect.map((volume) => ({ volume })))
      case "resizeVolume":
        return storage
          .resizeVolume(call.pool, call.volume, call.sizeBytes)
          .pipe(Effect.map((volume) => ({ volume })))
      case "deleteVolume":
        return storage.deleteVolume(call.pool, call.volume).pipe(Effect.as({}))
      case "discardPartial":
        return storage.discardPartial(call.pool, call.volume).pipe(Effect.as({}))
      case "createSnapshot":
        return storage.createSnapshot(call.pool, call.volume, call.snapshot).pipe(Effect.as({}))
      case "deleteSnapshot":
        return storage.deleteSnapshot(call.pool, call.volume, call.snapshot).pipe(Effect.as({}))
      case "revertSnapshot":
        return storage.revertSnapshot(call.pool, call.volume, call.snapshot).pipe(Effect.as({}))
    }
  }
  return (effect, answer) => {
    if (effect._tag === "ApplyShares")
      return Effect.gen(function* () {
        // A share's directory is made inside its pool, then the server serves the whole set.
        for (const share of effect.shares) yield* io("share", share.id, () => makeDirectory(share.path))
        yield* shares.apply(effect.shares)
      }).pipe(
        Effect.as({ _tag: "SharesApplied" as const, requestId: effect.requestId }),
        Effect.catch((error: StorageError) =>
          Effect.succeed({
            _tag: "SharesApplied" as const,
            requestId: effect.requestId,
            error: asFailure(error),
          }),
        ),
        Effect.flatMap(answer),
      )
    if (effect._tag === "ObserveDevices")
      return Effect.gen(function* () {
        const devices = yield* listDevices
        if (devices.length > 0)
          yield* running.setStats(
            devices.map((device) => ({
              kind: "storage-device",
              id: deviceId(running.id, device.name),
              value: json({ sizeBytes: device.sizeBytes, readBytes: 0, writeBytes: 0 }),
            })),
          )
        yield* answer({ _tag: "DevicesObserved", devices })
      })
    if (effect._tag === "Observe")
      return Effect.gen(function* () {
        const pools: Array<Observed> = []
        const stats: Array<{ kind: string; id: string; value: Uint8Array }> = []
        for (const pool of effect.pools) {
          const seen = yield* Effect.all([
            storage.poolInfo(pool),
            storage.listVolumes(pool),
            storage.listPartials(pool),
          ]).pipe(
            Effect.map(
              ([info, volumes, partials]): Observed => ({
                pool: pool.id,
                info,
                volumes,
                ...(partials.length === 0 ? {} : { partials }),
              }),
            ),
            Effect.catch((error: StorageError) =>
              Effect.succeed<Observed>({ pool: pool.id, error: asFailure(error) }),
            ),
          )
          pools.push(seen)
          if (seen.info !== undefined)
            stats.push({ kind: "storage-pool", id: pool.id, value: json(seen.info) })
          for (const volume of seen.volumes ?? [])
            stats.push({
              kind: "storage-volume",
              id: volume.id,
              value: json({
                allocationBytes: volume.allocationBytes,
                snapshots: volume.snapshots?.length ?? 0,
              }),
            })
        }
        if (stats.length > 0) yield* running.setStats(stats)
        yield* answer({ _tag: "Observed", pools })
      })
    return execute(effect.call).pipe(
      Effect.map((made) => ({ _tag: "CallDone" as const, requestId: effect.requestId, ...made })),
      Effect.catch((error: StorageError) =>
        Effect.logWarning("storage call failed", {
          target: effect.target,
          call: effect.call._tag,
          reason: error.reason,
          detail: error.detail,
        }).pipe(
          Effect.as({ _tag: "CallDone" as const, requestId: effect.requestId, error: asFailure(error) }),
        ),
      ),
      Effect.flatMap(answer),
    )
  }
}

/** The storage service's run: plugs its executor into the node until it is stopped. */
export const runStorage = (running: RunningNode, ready: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const shares = yield* ShareServer
    yield* Effect.acquireRelease(
      Effect.sync(() => running.attach("storage", executor(running, storage, shares))),
      () => Effect.sync(() => running.attach("storage", undefined)),
    )
    yield* ready
    return yield* Effect.never
  })
