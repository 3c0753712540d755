/**
 * The storage endpoints beyond objects: a revert, which is a task for the node of the volume's
 * pool (the rule is the core's, `planRevert`; this file reads the store and writes the task).
 */
import { Effect } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { planRevert } from "../../core/storage/admission.ts"
import { json } from "../node/hypervisor.ts"
import { AcpApi, OperationRefused } from "./definition.ts"
import { Node } from "./node.ts"
import { storageReader, writeFailed } from "./server.ts"

let serial = 0

export const StorageHandlers = HttpApiBuilder.group(AcpApi, "storage", (handlers) =>
  Effect.gen(function* () {
    const node = yield* Node
    return handlers.handle("revert", ({ params }) =>
      Effect.gen(function* () {
        const nowMs = Date.now()
        const plan = planRevert(storageReader(node), params.id, nowMs)
        if ("reason" in plan) return yield* new OperationRefused(plan)
        const id = `revert-${nowMs.toString(36)}-${node.id}-${(++serial).toString(36)}`.slice(0, 63)
        yield* node
          .write([{ op: "put", kind: "task", id, value: json(plan.task) }])
          .pipe(Effect.mapError(writeFailed))
        return { task: id }
      }),
    )
  }),
)
