/**
 * Run by the QEMU test as an unprivileged user (`qemu:///session` does not start as root): takes
 * a tiny disk-less TCG guest through its lifecycle with the libvirt adapter and, after each
 * step, asks `virsh` what libvirt itself says. Prints one JSON object.
 */
import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { Effect } from "effect"
import { LibvirtVmmLayer } from "../../../adapters/hypervisor/libvirt.ts"
import { Vmm } from "../../../core/ports/vmm.ts"

const home = process.env.HOME ?? "/tmp"
const uri = "qemu:///session"
const name = "acp-qemu-test"
const virsh = (...args: ReadonlyArray<string>) =>
  execFileSync("virsh", ["-c", uri, ...args], { encoding: "utf8" }).trim()

const definition = {
  name,
  uuid: "6f1c2a3b-0000-4000-8000-0000000000aa",
  cpus: 1,
  memoryMiB: 64,
  disks: [],
  // No NIC: a guest with one would try a network boot through QEMU's user-mode network.
  nics: [],
  consoleLog: join(home, "console.log"),
} as const
const disk = {
  target: "vdb",
  path: join(home, "data.qcow2"),
  bus: "virtio",
  format: "qcow2",
  readonly: false,
} as const

const program = Effect.gen(function* () {
  const vmm = yield* Vmm
  const steps: Array<{ step: string; ours: string; virsh: string }> = []
  const record = (step: string) =>
    Effect.gen(function* () {
      const info = yield* vmm.info(name)
      steps.push({ step, ours: info.state, virsh: virsh("domstate", name) })
    })
  const capabilities = yield* vmm.capabilities
  // A run that died half-way leaves its domain behind.
  if ((yield* vmm.list).some((domain) => domain.name === name)) {
    yield* Effect.ignore(vmm.destroy(name))
    yield* vmm.undefine(name)
  }
  yield* vmm.define(definition)
  yield* record("define")
  const startedAt = performance.now()
  yield* vmm.start(name)
  const startMs = Math.round(performance.now() - startedAt)
  yield* record("start")
  yield* vmm.suspend(name)
  yield* record("suspend")
  yield* vmm.resume(name)
  yield* record("resume")
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", disk.path, "16M"])
  yield* vmm.attachDisk(name, disk)
  const attached = virsh("domblklist", name)
  yield* vmm.detachDisk(name, disk)
  // Give the guest's device-removal handshake (which a guest with no OS never completes) no say:
  // the definition no longer lists it either way.
  const detachedConfig = virsh("domblklist", name, "--inactive")
  yield* Effect.sleep("1500 millis")
  const console = yield* vmm.console(name, 4096)
  const info = yield* vmm.info(name)
  yield* vmm.destroy(name)
  yield* record("destroy")
  yield* vmm.undefine(name)
  const listed = virsh("list", "--all", "--name")
  return {
    capabilities,
    steps,
    startMs,
    attached,
    detachedConfig,
    console,
    cpuTimeNs: String(info.cpuTimeNs),
    listed,
  }
})

const result = await Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(LibvirtVmmLayer({ uri })))))
console.log(JSON.stringify(result))
