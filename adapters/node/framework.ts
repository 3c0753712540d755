/**
 * The framework's driver: carries out the supervisor core's outputs with Effect fibers. A
 * service is a scoped Effect that calls `ready` once it serves and then runs until interrupted;
 * its failure becomes the supervisor's `Failed` input (and a restart after back-off), `Stop`
 * interrupts it. Every state change is handed to `report` (the node writes it to the CDB).
 */
import { Cause, Effect, Fiber, Queue, type Scope } from "effect"
import {
  defaultSupervisorTimings,
  type Input,
  type Output,
  Supervisor,
} from "../../core/framework/supervisor.ts"
import type { ServiceState } from "../../core/lifecycle/tables.ts"

export interface ServiceDefinition {
  readonly after: ReadonlyArray<string>
  readonly run: (ready: Effect.Effect<void>) => Effect.Effect<never, unknown, Scope.Scope>
}

export type Report = (change: {
  readonly name: string
  readonly state: ServiceState
  readonly restarts: number
  readonly reason?: string
  /** The last failure, while the service has not run again since. */
  readonly lastError?: string
}) => Effect.Effect<void>

/** A service's failure in one line: its error's message (a defect's too), not the Cause's dump. */
const failureOf = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const message = error instanceof Error ? error.message : String(error)
  return message.split("\n")[0]!
}

export const runFramework = (services: Readonly<Record<string, ServiceDefinition>>, report: Report) =>
  Effect.gen(function* () {
    const supervisor = new Supervisor({
      ...defaultSupervisorTimings,
      services: Object.entries(services).map(([name, definition]) => ({ name, after: definition.after })),
    })
    const inputs = yield* Queue.unbounded<Input>()
    const fibers = new Map<string, Fiber.Fiber<unknown, unknown>>()
    let timer: Fiber.Fiber<unknown, unknown> | undefined

    const carryOut = Effect.fnUntraced(function* (outputs: ReadonlyArray<Output>) {
      for (const output of outputs) {
        switch (output._tag) {
          case "Start": {
            const name = output.name
            const ready = Queue.offer(inputs, { _tag: "Started", name }).pipe(Effect.asVoid)
            const fiber = yield* Effect.scoped(services[name]!.run(ready)).pipe(
              Effect.catchCause((cause) =>
                Queue.offer(inputs, { _tag: "Failed", name, reason: failureOf(cause) }),
              ),
              Effect.forkDetach,
            )
            fibers.set(name, fiber)
            break
          }
          case "Stop": {
            const fiber = fibers.get(output.name)
            fibers.delete(output.name)
            if (fiber !== undefined) yield* Fiber.interrupt(fiber)
            yield* Queue.offer(inputs, { _tag: "Stopped", name: output.name })
            break
          }
          case "StateChanged":
            yield* report(output)
            break
          case "Rejected":
            yield* Effect.logWarning("framework: rejected", { message: output.rejection.message })
            break
          case "ArmDeadline": {
            if (timer !== undefined) yield* Fiber.interrupt(timer)
            const waitMs = output.atMs - performance.now()
            timer =
              waitMs > 24 * 3_600_000
                ? undefined
                : yield* Effect.sleep(`${Math.max(0, waitMs)} millis`).pipe(
                    Effect.andThen(Queue.offer(inputs, { _tag: "DeadlineReached" })),
                    Effect.forkDetach,
                  )
            break
          }
        }
      }
    })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (timer !== undefined) yield* Fiber.interrupt(timer)
        for (const fiber of [...fibers.values()].reverse()) yield* Fiber.interrupt(fiber)
      }),
    )
    yield* carryOut(supervisor.handle({ _tag: "StartAll" }, performance.now()))
    return yield* Effect.forever(
      Effect.flatMap(Queue.take(inputs), (input) => carryOut(supervisor.handle(input, performance.now()))),
    )
  })
