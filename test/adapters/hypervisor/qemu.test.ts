/**
 * The libvirt adapter on real QEMU (TCG: no KVM here). `qemu:///session` needs an unprivileged
 * user, so the guest script runs as `nobody` with its own HOME and runtime directory, and its
 * session daemon (and virtlogd) are stopped by process id afterwards. Needs the Debian packages
 * `.ci/run` installs: libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86, qemu-utils,
 * libvirt-clients.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { sessionPids, stopSession } from "./session.ts"

const missing = [
  "/usr/bin/qemu-system-x86_64",
  "/usr/sbin/libvirtd",
  "/usr/bin/virsh",
  "/usr/bin/qemu-img",
].filter((path) => !existsSync(path))
const isRoot = process.getuid?.() === 0
const skipReason =
  missing.length > 0
    ? `QEMU test skipped: missing ${missing.join(", ")} (apt-get install libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils libvirt-clients)`
    : !isRoot
      ? "QEMU test skipped: it needs root to run the guest as an unprivileged user (setpriv)"
      : undefined
if (skipReason !== undefined) console.warn(skipReason)

const home = mkdtempSync(join(tmpdir(), "acp-qemu-"))
const runtime = join(home, "run")

afterAll(() => {
  stopSession(sessionPids(runtime))
  rmSync(home, { recursive: true, force: true })
})

describe.skipIf(skipReason !== undefined)("libvirt adapter on real QEMU (qemu:///session, TCG)", () => {
  it("defines, starts, suspends, resumes, hot-plugs a disk into and destroys a disk-less guest; virsh agrees at every step", () => {
    mkdirSync(runtime, { mode: 0o700 })
    chownSync(home, 65534, 65534)
    chownSync(runtime, 65534, 65534)
    const script = join(import.meta.dirname, "qemu-guest.ts")
    const run = spawnSync(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, script],
      {
        encoding: "utf8",
        timeout: 90_000,
        env: { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    )
    expect(run.status, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as {
      capabilities: { driver: string; console: boolean }
      steps: ReadonlyArray<{ step: string; ours: string; virsh: string }>
      startMs: number
      attached: string
      detachedConfig: string
      console: string
      cpuTimeNs: string
      listed: string
    }
    expect(result.capabilities).toMatchObject({ driver: "QEMU", console: true })
    expect(result.steps).toEqual([
      { step: "define", ours: "shutoff", virsh: "shut off" },
      { step: "start", ours: "running", virsh: "running" },
      { step: "suspend", ours: "paused", virsh: "paused" },
      { step: "resume", ours: "running", virsh: "running" },
      { step: "destroy", ours: "shutoff", virsh: "shut off" },
    ])
    expect(result.attached).toMatch(/vdb\s+\S*data\.qcow2/)
    expect(result.detachedConfig).not.toMatch(/vdb/)
    // SeaBIOS writes to the serial port: the console log is the guest's real output.
    expect(result.console).toContain("SeaBIOS")
    expect(BigInt(result.cpuTimeNs)).toBeGreaterThan(0n)
    expect(result.listed).not.toContain("acp-qemu-test")
    console.log(`QEMU (TCG) guest started in ${result.startMs} ms`)
    // libvirt's own view from outside the adapter: nothing left defined.
    const listed = execFileSync(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "virsh",
        "-c",
        "qemu:///session",
        "list",
        "--all",
        "--name",
      ],
      {
        encoding: "utf8",
        env: { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    )
    expect(listed.trim()).toBe("")
  }, 120_000)
})
