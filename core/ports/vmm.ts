/**
 * The VMM driver port: what the hypervisor service asks of a virtual machine monitor on one
 * host. Adapters: libvirt through FFI (any URI: `test:///default`, `qemu:///session`,
 * `qemu:///system`) and the simulator's deterministic VMM. Every failure is a `VmmError` whose
 * `reason` says what kind of failure it was, so the core can decide without reading messages.
 */
import { Context, type Effect, Schema } from "effect"

/** A domain as the driver sees it, in words common to every driver. */
export const DomainStates = ["running", "paused", "shutting-down", "shutoff", "crashed"] as const
export type DomainState = (typeof DomainStates)[number]

export interface DomainDisk {
  /** The guest's device name, e.g. `vda`. */
  readonly target: string
  readonly path: string
  readonly bus: "virtio" | "scsi" | "sata" | "ide"
  readonly format: "raw" | "qcow2"
  readonly readonly: boolean
  /** The disk the guest boots from (first in the boot order); absent: the firmware's default. */
  readonly boot?: boolean
}

export interface DomainNic {
  readonly mac: string
  readonly model: "virtio" | "e1000"
  /** The host bridge the NIC plugs into; absent for a NIC with no link (the test driver, a bare guest). */
  readonly bridge?: string
}

/** Everything a driver needs to define a domain. */
export interface DomainDefinition {
  /** The driver's name for it; ACP uses `acp-<system id>`. */
  readonly name: string
  readonly uuid: string
  readonly cpus: number
  readonly memoryMiB: number
  readonly disks: ReadonlyArray<DomainDisk>
  readonly nics: ReadonlyArray<DomainNic>
  /** Where the guest's serial console is written, when the driver can write one. */
  readonly consoleLog?: string
}

export interface DomainInfo {
  readonly name: string
  readonly state: DomainState
  readonly cpus: number
  readonly memoryKiB: number
  readonly maxMemoryKiB: number
  /** CPU time the guest used since it started, in nanoseconds. */
  readonly cpuTimeNs: bigint
}

export interface DomainIo {
  readonly diskReadBytes: bigint
  readonly diskWriteBytes: bigint
  readonly netRxBytes: bigint
  readonly netTxBytes: bigint
}

export const VmmErrorReasons = [
  /** The domain does not exist on this host. */
  "no-such-system",
  /** The operation does not apply in the domain's current state (start a running one, …). */
  "invalid-state",
  /** The definition was refused (bad XML, an impossible configuration). */
  "invalid-definition",
  /** This driver cannot do this at all (the test driver has no serial console). */
  "unsupported",
  /** The connection to the VMM could not be opened or was lost. */
  "connection",
  /** The VMM failed to carry out a valid request. */
  "failed",
] as const

export class VmmError extends Schema.TaggedError<VmmError>()("VmmError", {
  reason: Schema.Literals(VmmErrorReasons),
  operation: Schema.String,
  system: Schema.String,
  detail: Schema.String,
  /** The driver's own error code (libvirt's `virErrorNumber`), when it has one. */
  code: Schema.optionalKey(Schema.Number),
}) {
  override get message(): string {
    return `${this.operation} ${this.system}: ${this.reason}: ${this.detail}`
  }
}

export interface VmmCapabilities {
  /** The driver's name, e.g. `Test` or `QEMU`. */
  readonly driver: string
  readonly hostname: string
  readonly liveMigration: boolean
  readonly console: boolean
}

export class Vmm extends Context.Service<
  Vmm,
  {
    readonly capabilities: Effect.Effect<VmmCapabilities, VmmError>
    readonly list: Effect.Effect<
      ReadonlyArray<{ readonly name: string; readonly state: DomainState }>,
      VmmError
    >
    /** Defines the domain, or replaces the definition of one that exists (takes effect at its next start). */
    readonly define: (definition: DomainDefinition) => Effect.Effect<void, VmmError>
    readonly start: (name: string) => Effect.Effect<void, VmmError>
    /** Asks the guest to shut down (ACPI); the domain goes off when the guest agrees. */
    readonly shutdown: (name: string) => Effect.Effect<void, VmmError>
    /** Turns the domain off at once. */
    readonly destroy: (name: string) => Effect.Effect<void, VmmError>
    readonly reboot: (name: string) => Effect.Effect<void, VmmError>
    readonly suspend: (name: string) => Effect.Effect<void, VmmError>
    readonly resume: (name: string) => Effect.Effect<void, VmmError>
    readonly undefine: (name: string) => Effect.Effect<void, VmmError>
    readonly info: (name: string) => Effect.Effect<DomainInfo, VmmError>
    readonly io: (name: string, definition: DomainDefinition) => Effect.Effect<DomainIo, VmmError>
    /**
     * The domain's disks, target device and source file: the running guest's while it runs (a
     * disk hot-plugged, or one whose unplug the guest has not yet acknowledged), its definition's
     * otherwise.
     */
    readonly disks: (
      name: string,
    ) => Effect.Effect<ReadonlyArray<{ readonly target: string; readonly path: string }>, VmmError>
    /** Attaches a disk to the domain's definition, and to the running domain if it runs. */
    readonly attachDisk: (name: string, disk: DomainDisk) => Effect.Effect<void, VmmError>
    readonly detachDisk: (name: string, disk: DomainDisk) => Effect.Effect<void, VmmError>
    /** The last `maxBytes` of the guest's serial console. */
    readonly console: (name: string, maxBytes: number) => Effect.Effect<string, VmmError>
  }
>()("acp/core/ports/Vmm") {}
