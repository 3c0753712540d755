/**
 * The lifecycle table of every object kind that has one. Each table is the single source of
 * truth for which events a state allows; services, the simulator and the CLI all read it.
 */
import { defineLifecycle } from "./machine.ts"

/** A virtual machine. Intents (start, stop, …) and driver reports (started, crashed, …) are both events. */
export const systemLifecycle = defineLifecycle({
  kind: "system",
  initial: "defined",
  states: [
    "defined",
    "starting",
    "running",
    "paused",
    "stopping",
    "stopped",
    "migrating",
    "crashed",
    "terminated",
  ],
  events: [
    "start",
    "started",
    "start-failed",
    "pause",
    "resume",
    "stop",
    "stopped",
    "kill",
    "reboot",
    "crash",
    "migrate",
    "migrated",
    "migration-aborted",
    "terminate",
  ],
  terminal: ["terminated"],
  table: {
    defined: { start: "starting", terminate: "terminated" },
    starting: { started: "running", "start-failed": "stopped", crash: "crashed", kill: "stopped" },
    running: {
      pause: "paused",
      stop: "stopping",
      kill: "stopped",
      reboot: "starting",
      crash: "crashed",
      migrate: "migrating",
    },
    paused: { resume: "running", stop: "stopping", kill: "stopped", crash: "crashed" },
    stopping: { stopped: "stopped", kill: "stopped", crash: "crashed" },
    stopped: { start: "starting", terminate: "terminated" },
    migrating: { migrated: "running", "migration-aborted": "running", crash: "crashed" },
    crashed: { start: "starting", kill: "stopped", terminate: "terminated" },
    terminated: {},
  },
})

/** A service managed by the framework on one node, with restart back-off after a failure. */
export const serviceLifecycle = defineLifecycle({
  kind: "service",
  initial: "stopped",
  states: ["disabled", "stopped", "starting", "running", "stopping", "failed", "backing-off"],
  events: ["enable", "disable", "start", "started", "fail", "stop", "stopped", "retry"],
  terminal: [],
  table: {
    disabled: { enable: "stopped" },
    stopped: { start: "starting", disable: "disabled" },
    starting: { started: "running", fail: "failed", stop: "stopping" },
    running: { stop: "stopping", fail: "failed" },
    stopping: { stopped: "stopped", fail: "failed" },
    failed: { retry: "backing-off", stop: "stopped", disable: "disabled" },
    "backing-off": { start: "starting", stop: "stopped" },
  },
})

export const storagePoolLifecycle = defineLifecycle({
  kind: "storage-pool",
  initial: "defined",
  states: ["defined", "building", "inactive", "active", "degraded", "failed", "deleting", "deleted"],
  events: ["build", "built", "start", "stop", "degrade", "recover", "fail", "repair", "delete", "deleted"],
  terminal: ["deleted"],
  table: {
    defined: { build: "building", delete: "deleting" },
    building: { built: "inactive", fail: "failed" },
    inactive: { start: "active", delete: "deleting", fail: "failed" },
    active: { stop: "inactive", degrade: "degraded", fail: "failed" },
    degraded: { recover: "active", stop: "inactive", fail: "failed" },
    failed: { repair: "inactive", delete: "deleting" },
    deleting: { deleted: "deleted", fail: "failed" },
    deleted: {},
  },
})

export const storageVolumeLifecycle = defineLifecycle({
  kind: "storage-volume",
  initial: "creating",
  states: ["creating", "available", "attached", "resizing", "failed", "deleting", "deleted"],
  events: ["created", "attach", "detach", "resize", "resized", "fail", "delete", "deleted"],
  terminal: ["deleted"],
  table: {
    creating: { created: "available", fail: "failed" },
    available: { attach: "attached", resize: "resizing", delete: "deleting" },
    attached: { detach: "available" },
    resizing: { resized: "available", fail: "failed" },
    failed: { delete: "deleting" },
    deleting: { deleted: "deleted", fail: "failed" },
    deleted: {},
  },
})

export const networkLifecycle = defineLifecycle({
  kind: "network",
  initial: "defined",
  states: ["defined", "creating", "active", "degraded", "failed", "deleting", "deleted"],
  events: ["create", "created", "degrade", "recover", "fail", "delete", "deleted"],
  terminal: ["deleted"],
  table: {
    defined: { create: "creating", delete: "deleting" },
    creating: { created: "active", fail: "failed" },
    active: { degrade: "degraded", fail: "failed", delete: "deleting" },
    degraded: { recover: "active", fail: "failed", delete: "deleting" },
    failed: { create: "creating", delete: "deleting" },
    deleting: { deleted: "deleted", fail: "failed" },
    deleted: {},
  },
})

/** A long request, worked off by the service that owns it (seed 003's message queue). */
export const taskLifecycle = defineLifecycle({
  kind: "task",
  initial: "queued",
  states: ["queued", "running", "succeeded", "failed", "cancelled"],
  events: ["start", "succeed", "fail", "cancel"],
  terminal: ["succeeded", "failed", "cancelled"],
  table: {
    queued: { start: "running", cancel: "cancelled" },
    running: { succeed: "succeeded", fail: "failed", cancel: "cancelled" },
    succeeded: {},
    failed: {},
    cancelled: {},
  },
})

/** An alarm raised by the primary monitor. A cleared alarm whose condition returns is raised again (deduplicated). */
export const alarmLifecycle = defineLifecycle({
  kind: "alarm",
  initial: "raised",
  states: ["raised", "acknowledged", "cleared"],
  events: ["acknowledge", "clear", "raise"],
  terminal: [],
  table: {
    raised: { acknowledge: "acknowledged", clear: "cleared" },
    acknowledged: { clear: "cleared" },
    cleared: { raise: "raised" },
  },
})

/** A member of the cluster as the failure detector and the monitor see it. */
export const nodeLifecycle = defineLifecycle({
  kind: "node",
  initial: "joining",
  states: ["joining", "alive", "suspect", "dead", "fenced", "left"],
  events: ["joined", "suspect", "refute", "confirm-dead", "fence", "rejoin", "leave"],
  terminal: ["left"],
  table: {
    joining: { joined: "alive", leave: "left" },
    alive: { suspect: "suspect", fence: "fenced", leave: "left" },
    suspect: { refute: "alive", "confirm-dead": "dead", fence: "fenced" },
    dead: { rejoin: "joining", leave: "left" },
    fenced: { rejoin: "joining", leave: "left" },
    left: {},
  },
})

export const acceleratorLifecycle = defineLifecycle({
  kind: "accelerator",
  initial: "discovered",
  states: ["discovered", "setup-required", "ready", "in-use", "failed", "removed"],
  events: ["require-setup", "ready", "assign", "release", "fail", "remove"],
  terminal: ["removed"],
  table: {
    discovered: { "require-setup": "setup-required", ready: "ready", fail: "failed", remove: "removed" },
    "setup-required": { ready: "ready", fail: "failed", remove: "removed" },
    ready: { assign: "in-use", fail: "failed", remove: "removed" },
    "in-use": { release: "ready", fail: "failed" },
    failed: { "require-setup": "setup-required", remove: "removed" },
    removed: {},
  },
})

export const lifecycles = [
  systemLifecycle,
  serviceLifecycle,
  storagePoolLifecycle,
  storageVolumeLifecycle,
  networkLifecycle,
  taskLifecycle,
  alarmLifecycle,
  nodeLifecycle,
  acceleratorLifecycle,
] as const

export type SystemState = (typeof systemLifecycle.states)[number]
export type SystemEvent = (typeof systemLifecycle.events)[number]
export type ServiceState = (typeof serviceLifecycle.states)[number]
export type StoragePoolState = (typeof storagePoolLifecycle.states)[number]
export type StorageVolumeState = (typeof storageVolumeLifecycle.states)[number]
export type NetworkState = (typeof networkLifecycle.states)[number]
export type TaskState = (typeof taskLifecycle.states)[number]
export type AlarmState = (typeof alarmLifecycle.states)[number]
export type NodeState = (typeof nodeLifecycle.states)[number]
export type AcceleratorState = (typeof acceleratorLifecycle.states)[number]
