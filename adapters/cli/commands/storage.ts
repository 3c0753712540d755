/**
 * `acp storage pool|volume …`: pools and the volumes carved from them, through the node's API
 * (the same objects `acp object` writes, with the storage rules' refusals). A create follows the
 * object until its node reports it made or failed (`--detach` returns at once); lists are tables
 * with the pools' figures, or `--json`.
 */
import { Console, Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import {
  StorageDeviceMeta,
  StorageDeviceSpec,
  StoragePoolMeta,
  StoragePoolSpec,
  StoragePoolStats,
  StorageShareMeta,
  StorageShareSpec,
  StorageSnapshotMeta,
  StorageSnapshotSpec,
  StorageVolumeMeta,
  StorageVolumeSpec,
} from "../../../core/model/storage.ts"
import { PoolDrivers, VolumeFormats } from "../../../core/ports/storage.ts"
import { formatSize, parseSize } from "../../../core/storage/sizes.ts"
import type { ObjectView } from "../../api/definition.ts"
import { type AcpClient, CliError } from "../client.ts"
import { renderTable } from "../render.ts"
import { dirFlag, jsonFlag, nodeFlag, withApi } from "../target.ts"
import { decodeSlots, followTask } from "./system.ts"

const sizeFlag = (name: string, description: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(description),
    Flag.mapTryCatch(
      (text) => {
        const parsed = parseSize(text)
        if ("error" in parsed) throw new Error(parsed.error)
        return parsed.bytes
      },
      (error) => (error instanceof Error ? error.message : String(error)),
    ),
  )
const detachFlag = Flag.Boolean("detach").pipe(
  Flag.withDescription("Return once the object is written, without waiting for its node to make it"),
  Flag.withDefault(false),
)
const timeoutFlag = Flag.Int("timeout").pipe(
  Flag.withDescription("Seconds to wait for the node to make it"),
  Flag.withDefault(120),
)

interface Made {
  readonly node: string
  readonly path: string | undefined
}

/** Waits until the object's node reports `ready` in its meta, or fails with the node's reason. */
const follow = (
  client: AcpClient,
  kind: "storage-pool" | "storage-volume" | "storage-snapshot" | "storage-share",
  id: string,
  timeoutS: number,
  ready: ReadonlySet<string>,
): Effect.Effect<Made, CliError | unknown> =>
  Effect.gen(function* () {
    const deadline = performance.now() + timeoutS * 1000
    while (performance.now() < deadline) {
      const object = yield* client.objects.get({ params: { kind, id } })
      const meta: ReadonlyArray<{ node: string; value: { state: string; path?: string; detail?: string } }> =
        kind === "storage-pool"
          ? decodeSlots(StoragePoolMeta, object.meta)
          : kind === "storage-snapshot"
            ? decodeSlots(StorageSnapshotMeta, object.meta)
            : kind === "storage-share"
              ? decodeSlots(StorageShareMeta, object.meta)
              : decodeSlots(StorageVolumeMeta, object.meta)
      const done = meta.find((slot) => ready.has(slot.value.state))
      if (done !== undefined) return { node: done.node, path: done.value.path }
      const failed = meta.find((slot) => slot.value.state === "failed")
      if (failed !== undefined)
        return yield* new CliError({
          message: `${kind} ${id} failed on ${failed.node}: ${failed.value.detail ?? "no reason given"}`,
        })
      yield* Effect.sleep("250 millis")
    }
    return yield* new CliError({ message: `${kind} ${id} is not made after ${timeoutS} s (it may still be)` })
  })

// ---- pools -----------------------------------------------------------------------------------

const poolId = Argument.String("pool").pipe(Argument.withDescription("The pool's id"))

const poolCreate = Command.make(
  "create",
  {
    id: poolId,
    driver: Flag.Literals("driver", PoolDrivers).pipe(
      Flag.withDescription("The pool's type"),
      Flag.withDefault("dir" as const),
    ),
    on: Flag.String("on").pipe(Flag.withDescription("The node the pool lives on")),
    path: Flag.String("path").pipe(
      Flag.withDescription("Where its volumes live on the node (default: under the node's data directory)"),
      Flag.optional,
    ),
    source: Flag.String("source").pipe(
      Flag.withDescription(
        "What holds it (on a node whose pools go through libvirt): fs, a block device or image; netfs, host:/export",
      ),
      Flag.optional,
    ),
    overcommit: Flag.Finite("overcommit").pipe(
      Flag.withDescription("How far its volumes' sizes may add up beyond its capacity (1: not at all)"),
      Flag.optional,
    ),
    detach: detachFlag,
    timeout: timeoutFlag,
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ id, driver, on, path, source, overcommit, detach, timeout, dir, node }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const spec: typeof StoragePoolSpec.Type = {
          name: id,
          driver,
          node: on as (typeof StoragePoolSpec.Type)["node"] & string,
          shared: false,
          devices: [],
          ...(Option.isSome(path) ? { path: path.value } : {}),
          ...(Option.isSome(overcommit) ? { overcommit: overcommit.value } : {}),
          ...(Option.isSome(source) ? { source: source.value } : {}),
        }
        yield* client.objects.put({ params: { kind: "storage-pool", id }, payload: spec })
        if (detach) return yield* Console.log(`storage-pool ${id} written`)
        const made = yield* follow(client, "storage-pool", id, timeout, new Set(["active"]))
        yield* Console.log(`storage-pool ${id} active on ${made.node} at ${made.path ?? "?"}`)
      }),
    ),
).pipe(Command.withDescription("Create a pool on a node (built there by its storage service)"))

const poolRows = (pools: ReadonlyArray<ObjectView>, volumes: ReadonlyArray<ObjectView>) =>
  pools.flatMap((object) =>
    Option.match(Schema.decodeUnknownOption(StoragePoolSpec)(object.spec), {
      onNone: () => [],
      onSome: (spec) => {
        const meta = decodeSlots(StoragePoolMeta, object.meta)[0]
        const stats = decodeSlots(StoragePoolStats, object.stats)[0]
        const givenBytes = volumes.reduce((sum, volume) => {
          const decoded = Schema.decodeUnknownOption(StorageVolumeSpec)(volume.spec)
          return Option.isSome(decoded) && decoded.value.pool === object.id
            ? sum + decoded.value.sizeBytes
            : sum
        }, 0)
        const capabilities = meta?.value.capabilities
        return [
          {
            id: object.id,
            driver: spec.driver,
            node: spec.node ?? (spec.shared ? "shared" : "-"),
            state: meta?.value.state ?? "defined",
            capacityBytes: stats?.value.capacityBytes,
            allocationBytes: stats?.value.allocationBytes,
            availableBytes: stats?.value.availableBytes,
            givenBytes,
            capabilities:
              capabilities === undefined
                ? []
                : Object.entries(capabilities)
                    .filter(([, can]) => can)
                    .map(([name]) => name),
            ...(meta?.value.detail === undefined ? {} : { detail: meta.value.detail }),
            ...(meta?.value.orphans === undefined ? {} : { orphans: meta.value.orphans }),
          },
        ]
      },
    }),
  )

const size = (bytes: number | undefined) => (bytes === undefined ? "-" : formatSize(bytes))

const poolList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const pools = yield* client.objects.list({ params: { kind: "storage-pool" } })
        const volumes = yield* client.objects.list({ params: { kind: "storage-volume" } })
        const rows = poolRows(pools, volumes)
        if (json) return yield* Console.log(JSON.stringify(rows))
        yield* Console.log(
          renderTable(
            ["POOL", "DRIVER", "NODE", "STATE", "CAPACITY", "USED", "FREE", "GIVEN", "CAN"],
            rows.map((row) => [
              row.id,
              row.driver,
              row.node,
              row.state,
              size(row.capacityBytes),
              size(row.allocationBytes),
              size(row.availableBytes),
              formatSize(row.givenBytes),
              row.capabilities.join(","),
            ]),
          ),
        )
        for (const row of rows) if (row.detail !== undefined) yield* Console.log(`${row.id}: ${row.detail}`)
      }),
    ),
).pipe(Command.withDescription("List pools with their capacity, use, free space and what they can do"))

const poolDelete = Command.make("delete", { id: poolId, dir: dirFlag, node: nodeFlag }, ({ id, dir, node }) =>
  withApi(dir, node, (client) =>
    client.objects
      .remove({ params: { kind: "storage-pool", id } })
      .pipe(Effect.andThen(Console.log(`storage-pool ${id} deleted`))),
  ),
).pipe(Command.withDescription("Delete a pool (refused while it holds volumes)"))

// ---- volumes ---------------------------------------------------------------------------------

const volumeId = Argument.String("volume").pipe(Argument.withDescription("The volume's id"))

const volumeCreate = Command.make(
  "create",
  {
    id: volumeId,
    pool: Flag.String("pool").pipe(Flag.withDescription("The pool to carve it from")),
    size: sizeFlag("size", "Its size, e.g. 2GiB"),
    format: Flag.Literals("format", VolumeFormats).pipe(
      Flag.withDescription("raw, or qcow2 (thin, with snapshots)"),
      Flag.withDefault("qcow2" as const),
    ),
    clone: Flag.String("clone").pipe(
      Flag.withDescription("Copy this volume of the same pool"),
      Flag.optional,
    ),
    detach: detachFlag,
    timeout: timeoutFlag,
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ id, pool, size: sizeBytes, format, clone, detach, timeout, dir, node }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const spec = {
          name: id,
          pool,
          sizeBytes,
          format,
          ...(Option.isSome(clone) ? { source: clone.value } : {}),
        }
        yield* client.objects.put({ params: { kind: "storage-volume", id }, payload: spec })
        if (detach) return yield* Console.log(`storage-volume ${id} written`)
        const made = yield* follow(client, "storage-volume", id, timeout, new Set(["available", "attached"]))
        yield* Console.log(
          `storage-volume ${id} made on ${made.node}: ${made.path ?? "?"} (${formatSize(sizeBytes)})`,
        )
      }),
    ),
).pipe(Command.withDescription("Create a volume in a pool (or a clone of one)"))

const volumeResize = Command.make(
  "resize",
  {
    id: volumeId,
    size: sizeFlag("size", "Its new size (volumes grow, never shrink)"),
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ id, size: sizeBytes, dir, node }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const object = yield* client.objects.get({ params: { kind: "storage-volume", id } })
        const spec = yield* Schema.decodeUnknownEffect(StorageVolumeSpec)(object.spec).pipe(
          Effect.mapError((error) => new CliError({ message: `storage-volume ${id}: ${error.message}` })),
        )
        yield* client.objects.put({ params: { kind: "storage-volume", id }, payload: { ...spec, sizeBytes } })
        yield* Console.log(`storage-volume ${id} to grow to ${formatSize(sizeBytes)}`)
      }),
    ),
).pipe(Command.withDescription("Grow a volume"))

const volumeList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const volumes = yield* client.objects.list({ params: { kind: "storage-volume" } })
        const rows = volumes.flatMap((object) =>
          Option.match(Schema.decodeUnknownOption(StorageVolumeSpec)(object.spec), {
            onNone: () => [],
            onSome: (spec) => {
              const meta = decodeSlots(StorageVolumeMeta, object.meta)[0]
              return [
                {
                  id: object.id,
                  pool: spec.pool,
                  format: spec.format,
                  sizeBytes: spec.sizeBytes,
                  state: meta?.value.state ?? "creating",
                  ...(meta?.value.path === undefined ? {} : { path: meta.value.path }),
                  ...(meta?.value.detail === undefined ? {} : { detail: meta.value.detail }),
                },
              ]
            },
          }),
        )
        if (json) return yield* Console.log(JSON.stringify(rows))
        yield* Console.log(
          renderTable(
            ["VOLUME", "POOL", "FORMAT", "SIZE", "STATE", "PATH"],
            rows.map((row) => [
              row.id,
              row.pool,
              row.format,
              formatSize(row.sizeBytes),
              row.state,
              row.path ?? "-",
            ]),
          ),
        )
        for (const row of rows) if (row.detail !== undefined) yield* Console.log(`${row.id}: ${row.detail}`)
      }),
    ),
).pipe(Command.withDescription("List volumes with their pool, size, state and path"))

const volumeDelete = Command.make(
  "delete",
  { id: volumeId, dir: dirFlag, node: nodeFlag },
  ({ id, dir, node }) =>
    withApi(dir, node, (client) =>
      client.objects
        .remove({ params: { kind: "storage-volume", id } })
        .pipe(Effect.andThen(Console.log(`storage-volume ${id} deleted`))),
    ),
).pipe(Command.withDescription("Delete a volume (refused while a system names it as a disk)"))

// ---- devices ---------------------------------------------------------------------------------

const deviceList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const devices = yield* client.objects.list({ params: { kind: "storage-device" } })
        const rows = devices.flatMap((object) =>
          Option.match(Schema.decodeUnknownOption(StorageDeviceSpec)(object.spec), {
            onNone: () => [],
            onSome: (spec) => {
              const meta = decodeSlots(StorageDeviceMeta, object.meta).find(
                (slot) => slot.node === spec.node,
              )?.value
              return [
                {
                  id: object.id,
                  node: spec.node,
                  path: spec.path,
                  medium: spec.medium,
                  state: meta?.state ?? "offline",
                  ...(meta?.sizeBytes === undefined ? {} : { sizeBytes: meta.sizeBytes }),
                  ...(meta?.model === undefined ? {} : { model: meta.model }),
                  ...(meta?.serial === undefined ? {} : { serial: meta.serial }),
                  smart: meta?.smart ?? "unknown",
                },
              ]
            },
          }),
        )
        if (json) return yield* Console.log(JSON.stringify(rows))
        yield* Console.log(
          renderTable(
            ["DEVICE", "NODE", "PATH", "MEDIUM", "SIZE", "STATE", "SMART", "MODEL"],
            rows.map((row) => [
              row.id,
              row.node,
              row.path,
              row.medium,
              size(row.sizeBytes),
              row.state,
              row.smart,
              row.model ?? "-",
            ]),
          ),
        )
      }),
    ),
).pipe(Command.withDescription("List every node's block devices with size, state and SMART health"))

// ---- shares ----------------------------------------------------------------------------------

const shareId = Argument.String("share").pipe(
  Argument.withDescription("The share's id (clients mount /<id>)"),
)

const shareCreate = Command.make(
  "create",
  {
    id: shareId,
    pool: Flag.String("pool").pipe(Flag.withDescription("The pool whose directory it exports")),
    path: Flag.String("path").pipe(
      Flag.withDescription("A directory inside the pool (made if missing); default: the pool's own"),
      Flag.withDefault(""),
    ),
    clients: Flag.String("clients").pipe(
      Flag.withDescription("Comma-separated addresses, networks (CIDR) or host names that may mount it"),
    ),
    readOnly: Flag.Boolean("read-only").pipe(
      Flag.withDescription("Clients may only read"),
      Flag.withDefault(false),
    ),
    detach: detachFlag,
    timeout: timeoutFlag,
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ id, pool, path, clients, readOnly, detach, timeout, dir, node }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const spec = {
          name: id,
          pool,
          protocol: "nfs",
          path,
          clients: clients.split(",").filter(Boolean),
          access: readOnly ? "ro" : "rw",
        }
        yield* client.objects.put({ params: { kind: "storage-share", id }, payload: spec })
        if (detach) return yield* Console.log(`storage-share ${id} written`)
        const made = yield* follow(client, "storage-share", id, timeout, new Set(["exported"]))
        yield* Console.log(`storage-share ${id} exported by ${made.node} as /${id} (${made.path ?? "?"})`)
      }),
    ),
).pipe(Command.withDescription("Export a pool's directory over NFS (v4) to the named clients"))

const shareList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const shares = yield* client.objects.list({ params: { kind: "storage-share" } })
        const rows = shares.flatMap((object) =>
          Option.match(Schema.decodeUnknownOption(StorageShareSpec)(object.spec), {
            onNone: () => [],
            onSome: (spec) => {
              const meta = decodeSlots(StorageShareMeta, object.meta)[0]
              return [
                {
                  id: object.id,
                  pool: spec.pool,
                  node: meta?.node ?? "-",
                  access: spec.access ?? "rw",
                  clients: spec.clients,
                  state: meta?.value.state ?? "unexported",
                  ...(meta?.value.path === undefined ? {} : { path: meta.value.path }),
                  ...(meta?.value.detail === undefined ? {} : { detail: meta.value.detail }),
                },
              ]
            },
          }),
        )
        if (json) return yield* Console.log(JSON.stringify(rows))
        yield* Console.log(
          renderTable(
            ["SHARE", "POOL", "NODE", "ACCESS", "CLIENTS", "STATE", "PATH"],
            rows.map((row) => [
              row.id,
              row.pool,
              row.node,
              row.access,
              row.clients.join(","),
              row.state,
              row.path ?? "-",
            ]),
          ),
        )
        for (const row of rows) if (row.detail !== undefined) yield* Console.log(`${row.id}: ${row.detail}`)
      }),
    ),
).pipe(Command.withDescription("List shares with their pool, clients and state"))

const shareDelete = Command.make(
  "delete",
  { id: shareId, dir: dirFlag, node: nodeFlag },
  ({ id, dir, node }) =>
    withApi(dir, node, (client) =>
      client.objects
        .remove({ params: { kind: "storage-share", id } })
        .pipe(Effect.andThen(Console.log(`storage-share ${id} deleted (no longer served; its files stay)`))),
    ),
).pipe(Command.withDescription("Stop sharing (the directory and its files stay in the pool)"))

// ---- snapshots -------------------------------------------------------------------------------

const snapshotId = Argument.String("snapshot").pipe(Argument.withDescription("The snapshot's id"))

const snapshotCreate = Command.make(
  "create",
  {
    id: snapshotId,
    volume: Flag.String("volume").pipe(Flag.withDescription("The volume to snapshot (qcow2)")),
    detach: detachFlag,
    timeout: timeoutFlag,
    dir: dirFlag,
    node: nodeFlag,
  },
  ({ id, volume, detach, timeout, dir, node }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        yield* client.objects.put({ params: { kind: "storage-snapshot", id }, payload: { name: id, volume } })
        if (detach) return yield* Console.log(`storage-snapshot ${id} written`)
        const made = yield* follow(client, "storage-snapshot", id, timeout, new Set(["available"]))
        yield* Console.log(`storage-snapshot ${id} of ${volume} taken on ${made.node}`)
      }),
    ),
).pipe(Command.withDescription("Snapshot a volume (taken by the node of its pool)"))

const snapshotList = Command.make(
  "list",
  {
    volume: Flag.String("volume").pipe(Flag.withDescription("Only this volume's"), Flag.optional),
    dir: dirFlag,
    node: nodeFlag,
    json: jsonFlag,
  },
  ({ volume, dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const snapshots = yield* client.objects.list({ params: { kind: "storage-snapshot" } })
        const rows = snapshots.flatMap((object) =>
          Option.match(Schema.decodeUnknownOption(StorageSnapshotSpec)(object.spec), {
            onNone: () => [],
            onSome: (spec) => {
              if (Option.isSome(volume) && spec.volume !== volume.value) return []
              const meta = decodeSlots(StorageSnapshotMeta, object.meta)[0]
              return [
                {
                  id: object.id,
                  volume: spec.volume,
                  node: meta?.node ?? "-",
                  state: meta?.value.state ?? "creating",
                  ...(meta?.value.detail === undefined ? {} : { detail: meta.value.detail }),
                },
              ]
            },
          }),
        )
        if (json) return yield* Console.log(JSON.stringify(rows))
        yield* Console.log(
          renderTable(
            ["SNAPSHOT", "VOLUME", "NODE", "STATE"],
            rows.map((row) => [row.id, row.volume, row.node, row.state]),
          ),
        )
        for (const row of rows) if (row.detail !== undefined) yield* Console.log(`${row.id}: ${row.detail}`)
      }),
    ),
).pipe(Command.withDescription("List snapshots with their volume and state"))

const snapshotRevert = Command.make(
  "revert",
  { id: snapshotId, detach: detachFlag, timeout: timeoutFlag, dir: dirFlag, node: nodeFlag },
  ({ id, detach, timeout, dir, node }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const { task } = yield* client.storage.revert({ params: { id } })
        yield* Console.log(`revert to ${id}: task ${task}`)
        if (!detach) yield* followTask(client, task, timeout)
      }),
    ),
).pipe(Command.withDescription("Set a volume's content back to a snapshot (its systems stopped)"))

const snapshotDelete = Command.make(
  "delete",
  { id: snapshotId, dir: dirFlag, node: nodeFlag },
  ({ id, dir, node }) =>
    withApi(dir, node, (client) =>
      client.objects
        .remove({ params: { kind: "storage-snapshot", id } })
        .pipe(Effect.andThen(Console.log(`storage-snapshot ${id} deleted`))),
    ),
).pipe(Command.withDescription("Delete a snapshot (removed from its volume by its pool's node)"))

export const storageCommand = Command.make("storage").pipe(
  Command.withDescription("Storage devices, pools, volumes, snapshots and shares"),
  Command.withSubcommands([
    Command.make("device").pipe(
      Command.withDescription("Devices: the nodes' block devices, as each node discovers them"),
      Command.withSubcommands([deviceList]),
    ),
    Command.make("pool").pipe(
      Command.withDescription("Pools: where volumes are carved from"),
      Command.withSubcommands([poolCreate, poolList, poolDelete]),
    ),
    Command.make("volume").pipe(
      Command.withDescription("Volumes: disks for systems"),
      Command.withSubcommands([volumeCreate, volumeResize, volumeList, volumeDelete]),
    ),
    Command.make("share").pipe(
      Command.withDescription("Shares: a pool's directory served over NFS to named clients"),
      Command.withSubcommands([shareCreate, shareList, shareDelete]),
    ),
    Command.make("snapshot").pipe(
      Command.withDescription("Snapshots: a volume's content at a point in time, to revert to"),
      Command.withSubcommands([snapshotCreate, snapshotList, snapshotRevert, snapshotDelete]),
    ),
  ]),
)
