/**
 * The framework's service manager (seed 000) as a sans-I/O state machine: it starts a node's
 * services in dependency order, restarts a failed one after an exponential back-off (reset once
 * it has run stably), stops them in reverse order, and reports every state change, which the
 * driver writes to the CDB as the service's meta. Every state change goes through the service
 * lifecycle table; an event the table does not allow is returned as a rejection, never thrown.
 */
import { type IllegalTransition, transition } from "../lifecycle/machine.ts"
import { type ServiceState, serviceLifecycle } from "../lifecycle/tables.ts"

export interface SupervisedService {
  readonly name: string
  /** Services that must be running before this one starts. */
  readonly after: ReadonlyArray<string>
}

export interface SupervisorConfig {
  readonly services: ReadonlyArray<SupervisedService>
  readonly backoffInitialMs: number
  readonly backoffMaxMs: number
  /** A service that has run this long without failing starts its next back-off from the beginning. */
  readonly stableAfterMs: number
}

export const defaultSupervisorTimings = {
  backoffInitialMs: 100,
  backoffMaxMs: 30_000,
  stableAfterMs: 60_000,
} as const

export type Input =
  | { readonly _tag: "StartAll" }
  | { readonly _tag: "StopAll" }
  | { readonly _tag: "Started"; readonly name: string }
  | { readonly _tag: "Failed"; readonly name: string; readonly reason: string }
  | { readonly _tag: "Stopped"; readonly name: string }
  | { readonly _tag: "DeadlineReached" }

export type Output =
  | { readonly _tag: "Start"; readonly name: string }
  | { readonly _tag: "Stop"; readonly name: string }
  | {
      readonly _tag: "StateChanged"
      readonly name: string
      readonly state: ServiceState
      readonly restarts: number
      readonly reason?: string
      /** The last failure, reported until the service runs again (it backs off, restarts, …). */
      readonly lastError?: string
    }
  | { readonly _tag: "Rejected"; readonly rejection: IllegalTransition }
  | { readonly _tag: "ArmDeadline"; readonly atMs: number }

interface Slot {
  state: ServiceState
  restarts: number
  /** Consecutive failures since the service last ran stably: the back-off exponent. */
  failures: number
  retryAtMs: number
  runningSinceMs: number
  lastError: string | undefined
}

const never = Number.MAX_SAFE_INTEGER

export class Supervisor {
  readonly config: SupervisorConfig
  private readonly slots = new Map<string, Slot>()
  private wanted: "running" | "stopped" = "stopped"
  private outputs: Array<Output> = []

  constructor(config: SupervisorConfig) {
    const names = new Set(config.services.map((service) => service.name))
    for (const service of config.services) {
      for (const dependency of service.after) {
        if (!names.has(dependency))
          throw new Error(`supervisor: ${service.name} depends on unknown service ${dependency}`)
      }
    }
    this.config = config
    for (const service of config.services) {
      this.slots.set(service.name, {
        state: "stopped",
        restarts: 0,
        failures: 0,
        retryAtMs: never,
        runningSinceMs: never,
        lastError: undefined,
      })
    }
  }

  stateOf(name: string): ServiceState | undefined {
    return this.slots.get(name)?.state
  }

  handle(input: Input, nowMs: number): ReadonlyArray<Output> {
    switch (input._tag) {
      case "StartAll":
        this.wanted = "running"
        break
      case "StopAll":
        this.wanted = "stopped"
        break
      case "Started":
        this.move(input.name, "started", nowMs)
        break
      case "Failed": {
        const slot = this.slots.get(input.name)
        if (slot !== undefined) slot.lastError = input.reason
        if (slot !== undefined && this.move(input.name, "fail", nowMs, input.reason)) {
          slot.restarts++
          slot.failures++
          if (this.wanted === "running") {
            const delay = Math.min(
              this.config.backoffMaxMs,
              this.config.backoffInitialMs * 2 ** Math.min(30, slot.failures - 1),
            )
            slot.retryAtMs = nowMs + delay
            this.move(input.name, "retry", nowMs, `restarting in ${delay} ms`)
          }
        }
        break
      }
      case "Stopped":
        this.move(input.name, "stopped", nowMs)
        break
      case "DeadlineReached":
        break
    }
    this.converge(nowMs)
    this.outputs.push({ _tag: "ArmDeadline", atMs: this.nextDeadline(nowMs) })
    const outputs = this.outputs
    this.outputs = []
    return outputs
  }

  /** Applies a lifecycle event to a service; reports the change, or the rejection. */
  private move(
    name: string,
    event: (typeof serviceLifecycle.events)[number],
    nowMs: number,
    reason?: string,
  ): boolean {
    const slot = this.slots.get(name)
    if (slot === undefined) {
      this.outputs.push({
        _tag: "Rejected",
        rejection: {
          _tag: "IllegalTransition",
          kind: "service",
          id: name,
          state: "unknown",
          event,
          message: `no service ${name}`,
        },
      })
      return false
    }
    const moved = transition(serviceLifecycle, name, slot.state, event)
    if (moved._tag === "Rejected") {
      this.outputs.push({ _tag: "Rejected", rejection: moved.rejection })
      return false
    }
    slot.state = moved.to
    if (moved.to === "running") {
      slot.runningSinceMs = nowMs
      slot.lastError = undefined
    }
    this.outputs.push({
      _tag: "StateChanged",
      name,
      state: moved.to,
      restarts: slot.restarts,
      ...(reason === undefined ? {} : { reason }),
      ...(slot.lastError === undefined ? {} : { lastError: slot.lastError }),
    })
    return true
  }

  private dependenciesRunning(service: SupervisedService): boolean {
    return service.after.every((dependency) => this.slots.get(dependency)?.state === "running")
  }

  private dependentsDown(name: string): boolean {
    return this.config.services
      .filter((service) => service.after.includes(name))
      .every((service) => {
        const state = this.slots.get(service.name)!.state
        return state === "stopped" || state === "disabled" || state === "failed" || state === "backing-off"
      })
  }

  /** Moves every service one step toward what is wanted, in dependency order. */
  private converge(nowMs: number): void {
    for (const service of this.config.services) {
      const slot = this.slots.get(service.name)!
      if (slot.state === "running" && nowMs - slot.runningSinceMs >= this.config.stableAfterMs)
        slot.failures = 0
      if (this.wanted === "running") {
        const due = slot.state === "stopped" || (slot.state === "backing-off" && nowMs >= slot.retryAtMs)
        if (due && this.dependenciesRunning(service) && this.move(service.name, "start", nowMs)) {
          this.outputs.push({ _tag: "Start", name: service.name })
        }
      } else if (slot.state === "backing-off" || slot.state === "failed") {
        this.move(service.name, "stop", nowMs)
      } else if (
        (slot.state === "running" || slot.state === "starting") &&
        this.dependentsDown(service.name)
      ) {
        if (this.move(service.name, "stop", nowMs)) this.outputs.push({ _tag: "Stop", name: service.name })
      }
    }
  }

  private nextDeadline(nowMs: number): number {
    let next = never
    for (const slot of this.slots.values()) {
      if (slot.state === "backing-off") next = Math.min(next, slot.retryAtMs)
      if (slot.state === "running" && slot.failures > 0)
        next = Math.min(next, slot.runningSinceMs + this.config.stableAfterMs)
    }
    return Math.max(next, nowMs + 1)
  }
}
