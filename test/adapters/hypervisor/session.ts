/**
 * A libvirt session daemon started for a test (as `nobody`, with its own runtime directory):
 * the daemons it started, found by the pid files under that directory, and their stop.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

export const sessionPids = (runtime: string): ReadonlyArray<number> => {
  const pids = new Set<number>()
  const walk = (directory: string) => {
    if (!existsSync(directory)) return
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith(".pid")) {
        const pid = Number.parseInt(readFileSync(path, "utf8"), 10)
        if (Number.isInteger(pid) && pid > 1) pids.add(pid)
      }
    }
  }
  walk(runtime)
  return [...pids]
}

export const stopSession = (pids: ReadonlyArray<number>): void => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM")
    } catch {
      // already gone
    }
  }
}
