/**
 * `acp system …` and `acp task …`: virtual machines and the tasks that record the work on them.
 * Every operation is a task owned by the system's node; by default the command follows the
 * task and prints its log as it grows (`--detach` returns at once with the task id).
 */
import { Console, Effect, Option, Schedule, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { SystemMeta, SystemSpec, SystemStats } from "../../../core/model/compute.ts"
import { TaskSpec } from "../../../core/model/operations.ts"
import { SystemDiskRequest } from "../../../core/model/storage.ts"
import { parseDiskFlag } from "../../../core/storage/disks.ts"
import type { ObjectView } from "../../api/definition.ts"
import { type AcpClient, CliError } from "../client.ts"
import { renderTable } from "../render.ts"
import { dirFlag, jsonFlag, nodeFlag, withApi } from "../target.ts"

/** An object's stored part, decoded with its kind's schema: a value that does not decode is an error naming it. */
const decodePart =
  <S extends Schema.ConstraintDecoder<unknown>>(schema: S, what: string) =>
  (value: unknown): Effect.Effect<S["Type"], CliError> =>
    Schema.decodeUnknownEffect(schema)(value).pipe(
      Effect.mapError((error) => new CliError({ message: `${what} does not decode: ${error.message}` })),
    ) as Effect.Effect<S["Type"], CliError>

/** The slots of every node that decode (a node running another version may write others). */
export const decodeSlots = <S extends Schema.ConstraintDecoder<unknown>>(
  schema: S,
  slots: ObjectView["meta"],
) =>
  slots.flatMap((slot) =>
    Option.match(Schema.decodeUnknownOption(schema)(slot.value), {
      onNone: () => [],
      onSome: (value) => [{ node: slot.node, value: value as S["Type"] }],
    }),
  )

const asSystem = (object: ObjectView) =>
  Effect.map(decodePart(SystemSpec, `system ${object.id}'s spec`)(object.spec), (spec) => ({
    id: object.id,
    spec,
    meta: decodeSlots(SystemMeta, object.meta),
    stats: decodeSlots(SystemStats, object.stats),
  }))
type SystemView = Effect.Success<ReturnType<typeof asSystem>>

const asTask = (object: ObjectView) =>
  Effect.map(decodePart(TaskSpec, `task ${object.id}'s spec`)(object.spec), (spec) => ({
    id: object.id,
    spec,
  }))

const systemId = Argument.String("system").pipe(Argument.withDescription("The system's id"))
const detachFlag = Flag.Boolean("detach").pipe(
  Flag.withDescription("Return at once with the task id instead of following the task"),
  Flag.withDefault(false),
)
const timeoutFlag = Flag.Int("timeout").pipe(
  Flag.withDescription("Seconds to follow the task before giving up (the task goes on)"),
  Flag.withDefault(120),
)

const terminal = new Set(["succeeded", "failed", "cancelled"])

/** Follows a task, printing each new log line, until it ends; fails if it did not succeed. */
export const followTask = (client: AcpClient, id: string, timeoutS: number) =>
  Effect.gen(function* () {
    let printed = 0
    const poll = Effect.gen(function* () {
      const task = yield* client.objects.get({ params: { kind: "task", id } }).pipe(
        Effect.flatMap(asTask),
        Effect.catch(() => Effect.succeed(undefined)),
      )
      if (task === undefined) return undefined
      for (const entry of task.spec.log.slice(printed))
        yield* Console.log(`  ${new Date(entry.atMs).toISOString().slice(11, 23)}  ${entry.line}`)
      printed = task.spec.log.length
      return terminal.has(task.spec.state) ? task : undefined
    })
    const pollEveryMs = 200
    const task = yield* poll.pipe(
      Effect.repeat({
        schedule: Schedule.spaced(`${pollEveryMs} millis`),
        until: (ended) => ended !== undefined,
        times: Math.ceil((timeoutS * 1000) / pollEveryMs),
      }),
    )
    if (task === undefined)
      return yield* new CliError({
        message: `task ${id} still running after ${timeoutS} s (see acp task watch ${id})`,
      })
    if (task.spec.state !== "succeeded")
      return yield* new CliError({ message: `task ${id} ${task.spec.state}: ${task.spec.error ?? ""}` })
    return task
  })

const stateOf = (system: SystemView) => {
  const meta = system.meta.find((slot) => slot.node === system.spec.node)?.value
  return meta === undefined ? "pending" : `${meta.state ?? "?"}${meta.held === true ? " (held)" : ""}`
}

const operation = (
  name: string,
  description: string,
  extra: Record<string, Flag.Flag<Option.Option<string>>> = {},
) =>
  Command.make(
    name,
    { system: systemId, dir: dirFlag, node: nodeFlag, detach: detachFlag, timeout: timeoutFlag, ...extra },
    (args) =>
      withApi(args.dir, args.node, (client) =>
        Effect.gen(function* () {
          const parameters: Record<string, string> = {}
          for (const key of Object.keys(extra)) {
            const value = (args as unknown as Record<string, Option.Option<string>>)[key]
            if (value !== undefined && Option.isSome(value)) parameters[key] = value.value
          }
          const { task } = yield* client.systems.operate({
            params: { id: args.system, operation: name },
            payload: parameters,
          })
          if (args.detach) return yield* Console.log(task)
          yield* Console.log(`${name} ${args.system}: task ${task}`)
          yield* followTask(client, task, args.timeout)
        }),
      ),
  ).pipe(Command.withDescription(description))

const create = Command.make(
  "create",
  {
    system: systemId,
    cpus: Flag.Int("cpus").pipe(Flag.withDescription("Virtual CPUs"), Flag.withDefault(1)),
    memory: Flag.Int("memory").pipe(Flag.withDescription("Memory in MiB"), Flag.withDefault(128)),
    ha: Flag.Boolean("ha").pipe(
      Flag.withDescription("Restart it on another node if its node is lost"),
      Flag.withDefault(false),
    ),
    on: Flag.String("on").pipe(
      Flag.withDescription("Place it on this node instead of asking the scheduler"),
      Flag.optional,
    ),
    stopped: Flag.Boolean("stopped").pipe(
      Flag.withDescription("Define it without starting it"),
      Flag.withDefault(false),
    ),
    antiAffinity: Flag.String("anti-affinity").pipe(
      Flag.withDescription("Comma-separated systems it must never share a node with"),
      Flag.optional,
    ),
    dryRun: Flag.Boolean("dry-run").pipe(
      Flag.withDescription("Show the scheduler's decision and why; write nothing"),
      Flag.withDefault(false),
    ),
    disk: Flag.String("disk").pipe(
      Flag.withDescription(
        "A disk, repeatable: pool=<pool>,size=<size> (a new volume), volume=<volume>, or clone=<volume>; with ,format=qcow2|raw ,bus=virtio|scsi|sata|ide ,boot",
      ),
      Flag.atLeast(0),
    ),
    dir: dirFlag,
    node: nodeFlag,
    detach: detachFlag,
    timeout: timeoutFlag,
    json: jsonFlag,
  },
  (args) =>
    withApi(args.dir, args.node, (client) =>
      Effect.gen(function* () {
        const disks: Array<typeof SystemDiskRequest.Type> = []
        for (const text of args.disk) {
          const parsed = parseDiskFlag(text)
          if ("error" in parsed) return yield* new CliError({ message: parsed.error })
          disks.push(
            yield* Schema.decodeUnknownEffect(SystemDiskRequest)(parsed).pipe(
              Effect.mapError((error) => new CliError({ message: `--disk ${text}: ${error.message}` })),
            ),
          )
        }
        const spec = {
          cpus: args.cpus,
          memoryMiB: args.memory,
          ha: args.ha,
          desired: args.stopped ? "stopped" : "running",
          placement: {
            affinity: [],
            antiAffinity: Option.match(args.antiAffinity, {
              onNone: () => [],
              onSome: (list) => list.split(",").filter(Boolean),
            }),
          },
          ...(Option.isSome(args.on) ? { node: args.on.value } : {}),
        }
        const answer = yield* client.systems.create({
          params: { id: args.system },
          payload: { spec, dryRun: args.dryRun, ...(disks.length === 0 ? {} : { disks }) },
        })
        if (args.json) return yield* Console.log(JSON.stringify(answer))
        const decision = answer.decision
        const chosen = decision._tag === "Placed" ? decision.node : undefined
        const verdicts = renderTable(
          ["NODE", "ELIGIBLE", "WHY"],
          answer.decision.verdicts.map((verdict) => [
            verdict.node === chosen ? `${verdict.node} *` : verdict.node,
            verdict.eligible ? "yes" : "no",
            verdict.reason,
          ]),
        )
        if (decision._tag === "Unplaceable") {
          yield* Console.log(verdicts)
          return yield* new CliError({ message: `cannot place ${args.system}: ${decision.reason}` })
        }
        if (args.dryRun) {
          yield* Console.log(`would place ${args.system} on ${decision.node}`)
          return yield* Console.log(verdicts)
        }
        yield* Console.log(`created ${args.system} on ${decision.node} (task ${answer.task})`)
        if (!args.detach && answer.task !== undefined) yield* followTask(client, answer.task, args.timeout)
      }),
    ),
).pipe(Command.withDescription("Create a system, placed by the scheduler (or --on a node), and start it"))

const list = Command.make("list", { dir: dirFlag, node: nodeFlag, json: jsonFlag }, ({ dir, node, json }) =>
  withApi(dir, node, (client) =>
    Effect.gen(function* () {
      const systems = yield* Effect.forEach(
        yield* client.objects.list({ params: { kind: "system" } }),
        asSystem,
      )
      if (json) return yield* Console.log(JSON.stringify(systems))
      if (systems.length === 0) return yield* Console.log("no systems")
      yield* Console.log(
        renderTable(
          ["SYSTEM", "NODE", "DESIRED", "STATE", "HA", "CPUS", "MEMORY", "CPU USE", "MEM USED"],
          systems.map((system) => {
            const stats = system.stats.find((slot) => slot.node === system.spec.node)?.value
            return [
              system.id,
              system.spec.node ?? "-",
              system.spec.desired,
              stateOf(system),
              system.spec.ha ? "yes" : "no",
              String(system.spec.cpus),
              `${system.spec.memoryMiB} MiB`,
              stats?.cpuUsage === undefined ? "-" : `${(stats.cpuUsage / 100).toFixed(1)}%`,
              stats?.memoryUsedBytes === undefined
                ? "-"
                : `${Math.round(stats.memoryUsedBytes / 1024 / 1024)} MiB`,
            ]
          }),
        ),
      )
    }),
  ),
).pipe(Command.withDescription("List the systems with their node, state and statistics"))

const show = Command.make(
  "show",
  { system: systemId, dir: dirFlag, node: nodeFlag },
  ({ system, dir, node }) =>
    withApi(dir, node, (client) =>
      client.objects
        .get({ params: { kind: "system", id: system } })
        .pipe(Effect.flatMap((body) => Console.log(JSON.stringify(body, null, 2)))),
    ),
).pipe(Command.withDescription("Show a system: spec, every node's meta and statistics"))

const consoleCommand = Command.make(
  "console",
  { system: systemId, dir: dirFlag, node: nodeFlag },
  ({ system, dir, node }) =>
    withApi(dir, node, (client, target) =>
      Effect.gen(function* () {
        const body = yield* asSystem(yield* client.objects.get({ params: { kind: "system", id: system } }))
        const owner = body.spec.node
        // The console is read on the node that runs the system: that node's API (the local
        // cluster's), or the agent the remote names, which forwards it.
        const text =
          owner === undefined || owner === target.id || target.remote !== undefined
            ? yield* client.systems.console({ params: { id: system } })
            : yield* withApi(dir, Option.some(owner), (owned) =>
                owned.systems.console({ params: { id: system } }),
              )
        yield* Console.log(text)
      }),
    ),
).pipe(Command.withDescription("Print the system's serial console output (read on the node that runs it)"))

const volumeFlag = Flag.String("volume").pipe(Flag.withDescription("The storage volume's id"), Flag.optional)

export const systemCommand = Command.make("system").pipe(
  Command.withDescription("Virtual machines: create, operate, inspect"),
  Command.withSubcommands([
    create,
    list,
    show,
    operation("start", "Start a system"),
    operation("stop", "Stop a system: ACPI shutdown, then destroyed after the node's stop timeout"),
    operation("reboot", "Reboot a running system"),
    operation("suspend", "Pause a running system"),
    operation("resume", "Resume a paused system"),
    operation("destroy", "Turn a system off and delete it"),
    consoleCommand,
    operation("attach", "Attach a volume (hot-plug where the driver can, else to the stopped system)", {
      volume: volumeFlag,
      target: Flag.String("target").pipe(Flag.withDescription("The guest device, e.g. vdb"), Flag.optional),
    }),
    operation("detach", "Detach a volume", { volume: volumeFlag }),
    operation("migrate", "Move a system to another node (cold: stop, move, start)", {
      to: Flag.String("to").pipe(Flag.withDescription("The node to move it to"), Flag.optional),
    }),
  ]),
)

const taskList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.gen(function* () {
        const listed = yield* Effect.forEach(yield* client.objects.list({ params: { kind: "task" } }), asTask)
        const tasks = [...listed].sort((left, right) => left.spec.createdMs - right.spec.createdMs)
        if (json) return yield* Console.log(JSON.stringify(tasks))
        if (tasks.length === 0) return yield* Console.log("no tasks")
        yield* Console.log(
          renderTable(
            ["TASK", "OPERATION", "TARGET", "OWNER", "STATE", "LAST"],
            tasks.map((task) => [
              task.id,
              task.spec.operation,
              `${task.spec.target.kind}/${task.spec.target.id}`,
              task.spec.owner,
              task.spec.state,
              task.spec.error ?? task.spec.log.at(-1)?.line ?? "",
            ]),
          ),
        )
      }),
    ),
).pipe(Command.withDescription("List tasks, oldest first"))

const taskId = Argument.String("task").pipe(Argument.withDescription("The task's id"))

export const taskCommand = Command.make("task").pipe(
  Command.withDescription("Tasks: the log of every long operation"),
  Command.withSubcommands([
    taskList,
    Command.make("show", { task: taskId, dir: dirFlag, node: nodeFlag }, ({ task, dir, node }) =>
      withApi(dir, node, (client) =>
        client.objects
          .get({ params: { kind: "task", id: task } })
          .pipe(Effect.flatMap((body) => Console.log(JSON.stringify(body, null, 2)))),
      ),
    ).pipe(Command.withDescription("Show a task with its whole log")),
    Command.make(
      "watch",
      { task: taskId, dir: dirFlag, node: nodeFlag, timeout: timeoutFlag },
      ({ task, dir, node, timeout }) =>
        withApi(dir, node, (client) => followTask(client, task, timeout).pipe(Effect.asVoid)),
    ).pipe(Command.withDescription("Follow a task's log until it ends")),
  ]),
)
