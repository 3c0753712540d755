/**
 * The node's watchdog, as Proxmox's HA keeps one (watchdog-mux): a process of its own that the
 * node feeds a heartbeat through a pipe, and that kills the node (SIGKILL: it lands on a stopped
 * process too) once no heartbeat has come for `timeoutMs` of its own monotonic clock. A node
 * whose process stalls — stopped by SIGSTOP, a stuck disk, an event loop blocked — can then not
 * wake up, long after, with HA systems still running that the primary has already started
 * elsewhere: the primary moves a node's systems only `haFenceMs` after it last heard the node,
 * and the watchdog's timeout is shorter (the config refuses one that is not).
 *
 * The fault harness found the gap (`acp vortex`, seed 3009): a node stopped for 6.2 s woke,
 * answered once that it ran ha-2, and stopped it 200 ms later — while another node ran it. With
 * libvirt's test driver the domains live in the node's process and die with it; with QEMU they
 * are processes of their own, which the watchdog does not yet destroy (a host watchdog device,
 * which resets the whole host, is the complete answer there).
 *
 * The watchdog is a small script run by the node's own Node.js binary (`-e`): nothing in it can
 * stall the way the node can, and it ends when the pipe closes (the node is gone).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Effect } from "effect"

/** How often the node feeds the watchdog. */
export const heartbeatEveryMs = 250

const script = `
const [pid, timeoutMs] = process.argv.slice(1).map(Number)
let last = performance.now()
process.stdin.on("data", () => { last = performance.now() })
process.stdin.on("end", () => process.exit(0))
process.stdin.on("error", () => process.exit(0))
setInterval(() => {
  const silentMs = performance.now() - last
  if (silentMs <= timeoutMs) return
  process.stderr.write(JSON.stringify({ message: "watchdog: no heartbeat from the node for " + Math.round(silentMs) + " ms (timeout " + timeoutMs + " ms): killed it, so its HA systems cannot outlive its fence", level: "ERROR", timestamp: new Date().toISOString() }) + "\\n")
  try { process.kill(pid, "SIGKILL") } catch {}
  process.exit(0)
}, 50)
`

/**
 * Starts the watchdog for this process and feeds it every `heartbeatEveryMs` until the scope
 * closes (then it is told to stop by the pipe's end).
 */
export const watchdog = (timeoutMs: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child: ChildProcess = spawn(
        process.execPath,
        ["-e", script, String(process.pid), String(timeoutMs)],
        {
          stdio: ["pipe", "ignore", "inherit"],
        },
      )
      child.stdin?.on("error", () => {})
      const beat = setInterval(() => child.stdin?.write("."), heartbeatEveryMs)
      return { child, beat }
    }),
    ({ child, beat }) =>
      Effect.sync(() => {
        clearInterval(beat)
        child.stdin?.end()
      }),
  )
