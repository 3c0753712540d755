/**
 * The simulator's VMM: one per simulated host, deterministic (all chance comes from the PRNG it
 * is given), with the faults real hypervisors have: a start that fails, a guest that crashes,
 * a guest slow to shut down or that ignores the request. It answers the hypervisor core's
 * driver calls the way libvirt does (the same `VmmError` reasons), and a host crash takes every
 * domain with it, as with libvirt's test driver inside a node process.
 */
import type { DriverCall, Input, Observation } from "../core/hypervisor/hypervisor.ts"
import type { DomainState, VmmError } from "../core/ports/vmm.ts"
import type { Prng } from "./prng.ts"

export interface SimVmmFaults {
  readonly startFailurePermille: number
  /** Chance per second that a running guest crashes. */
  readonly crashPermillePerSecond: number
  /** Chance that a guest takes `slowShutdownUs` to shut down instead of a moment. */
  readonly slowShutdownPermille: number
  readonly slowShutdownUs: number
  /** Chance that a guest ignores a shutdown request altogether. */
  readonly ignoreShutdownPermille: number
}

export const noVmmFaults: SimVmmFaults = {
  startFailurePermille: 0,
  crashPermillePerSecond: 0,
  slowShutdownPermille: 0,
  slowShutdownUs: 0,
  ignoreShutdownPermille: 0,
}

export interface CallResult {
  readonly error?: { readonly reason: VmmError["reason"]; readonly detail: string }
  readonly observed: Observation
  /** How long the call took. */
  readonly latencyUs: number
}

/** The hypervisor core's input for a call's answer. */
export const callDone = (requestId: number, result: CallResult): Input & { readonly _tag: "CallDone" } => ({
  _tag: "CallDone",
  requestId,
  observed: result.observed,
  ...(result.error === undefined ? {} : { error: result.error }),
})

interface Domain {
  state: DomainState
  /** The image files its definition opens (attached disks too). */
  disks: ReadonlyArray<string>
  /** When a requested shutdown completes, if the guest agreed to one. */
  offAtUs: number | undefined
}

const latencyUs: Readonly<Record<DriverCall["_tag"], number>> = {
  define: 5_000,
  start: 400_000,
  shutdown: 2_000,
  destroy: 20_000,
  reboot: 300_000,
  suspend: 5_000,
  resume: 5_000,
  undefine: 5_000,
  attach: 30_000,
  detach: 30_000,
}

export class SimVmm {
  private readonly domains = new Map<string, Domain>()
  private faults: SimVmmFaults
  private readonly prng: Prng
  /** Per domain, how many starts in a row have failed (ground truth for the checkers). */
  private readonly failedStarts = new Map<string, number>()

  constructor(prng: Prng, faults: SimVmmFaults) {
    this.prng = prng
    this.faults = faults
  }

  list(): ReadonlyArray<{ readonly name: string; readonly state: DomainState }> {
    return [...this.domains]
      .map(([name, domain]) => ({ name, state: domain.state }))
      .sort((a, b) => (a.name < b.name ? -1 : 1))
  }

  /** The host went down: every domain is gone (their definitions lived in the node process). */
  hostCrashed(): void {
    this.domains.clear()
    this.failedStarts.clear()
  }

  /** No more faults from now on (the simulator's liveness phase). */
  calm(): void {
    this.faults = noVmmFaults
  }

  /** The domain's state, or "absent". */
  stateOf(name: string): DomainState | "absent" {
    return this.domains.get(name)?.state ?? "absent"
  }

  /** The image files the domain opens (none for a domain not there). */
  disksOf(name: string): ReadonlyArray<string> {
    return this.domains.get(name)?.disks ?? []
  }

  /** How many starts of this domain in a row have failed. */
  startFailuresOf(name: string): number {
    return this.failedStarts.get(name) ?? 0
  }

  /** Applies what happens on its own over `elapsedUs` up to `nowUs`: shutdowns completing, guests crashing. */
  advance(nowUs: number, elapsedUs: number): void {
    for (const domain of this.domains.values()) {
      if (domain.offAtUs !== undefined && nowUs >= domain.offAtUs) {
        domain.state = "shutoff"
        domain.offAtUs = undefined
      }
      if (domain.state === "running" && this.faults.crashPermillePerSecond > 0) {
        // Chance permille/1000 per second, over elapsedUs: compared in parts per 10^9.
        const threshold = Math.min(1_000_000_000, this.faults.crashPermillePerSecond * elapsedUs)
        if (threshold > 0 && this.prng.below(1_000_000_000) < threshold) domain.state = "crashed"
      }
    }
  }

  execute(name: string, call: DriverCall, nowUs: number): CallResult {
    this.advance(nowUs, 0)
    const domain = this.domains.get(name)
    const fail = (reason: VmmError["reason"], detail: string): CallResult => ({
      error: { reason, detail },
      observed: domain?.state ?? "absent",
      latencyUs: 1_000,
    })
    const done = (): CallResult => ({
      observed: this.domains.get(name)?.state ?? "absent",
      latencyUs: latencyUs[call._tag],
    })
    if (call._tag === "define") {
      const disks = call.definition.disks.map((disk) => disk.path)
      if (domain === undefined) this.domains.set(name, { state: "shutoff", offAtUs: undefined, disks })
      else domain.disks = disks
      return done()
    }
    if (domain === undefined) return fail("no-such-system", `no domain ${name}`)
    const needs = (states: ReadonlyArray<DomainState>) =>
      states.includes(domain.state) ? undefined : fail("invalid-state", `the domain is ${domain.state}`)
    switch (call._tag) {
      case "start": {
        const refused = needs(["shutoff", "crashed"])
        if (refused !== undefined) return refused
        if (this.prng.chance(this.faults.startFailurePermille)) {
          this.failedStarts.set(name, this.startFailuresOf(name) + 1)
          return fail("failed", "the guest failed to start")
        }
        this.failedStarts.delete(name)
        domain.state = "running"
        return done()
      }
      case "shutdown": {
        const refused = needs(["running", "paused", "shutting-down"])
        if (refused !== undefined) return refused
        if (this.prng.chance(this.faults.ignoreShutdownPermille)) return done()
        domain.state = "shutting-down"
        domain.offAtUs =
          nowUs + (this.prng.chance(this.faults.slowShutdownPermille) ? this.faults.slowShutdownUs : 200_000)
        return done()
      }
      case "destroy": {
        const refused = needs(["running", "paused", "shutting-down", "crashed"])
        if (refused !== undefined) return refused
        domain.state = "shutoff"
        domain.offAtUs = undefined
        return done()
      }
      case "reboot":
        return needs(["running"]) ?? done()
      case "suspend": {
        const refused = needs(["running"])
        if (refused !== undefined) return refused
        domain.state = "paused"
        return done()
      }
      case "resume": {
        const refused = needs(["paused"])
        if (refused !== undefined) return refused
        domain.state = "running"
        return done()
      }
      case "undefine": {
        const refused = needs(["shutoff", "crashed"])
        if (refused !== undefined) return refused
        this.domains.delete(name)
        return done()
      }
      case "attach":
        domain.disks = [...domain.disks.filter((path) => path !== call.disk.path), call.disk.path]
        return done()
      case "detach":
        domain.disks = domain.disks.filter((path) => path !== call.disk.path)
        return done()
    }
  }
}
