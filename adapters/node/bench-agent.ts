/**
 * The sync benchmark's probe inside a node process (`acp node run --bench`). Over the IPC
 * channel of the process that started it (`acp bench sync`), it writes numbered updates through
 * the node's real write path (`RunningNode.write`: the CDB core, SQLite, then the datagrams) and
 * records, for every update of a run, when this node applied it. Times are CLOCK_MONOTONIC
 * milliseconds (`process.hrtime`), one clock for every process and namespace of the host, so
 * the driver can compute "written on one, visible on all" per update.
 */
import { writeFileSync } from "node:fs"
import { Effect } from "effect"
import type { Change } from "../../core/cdb/codec.ts"
import type { RunningNode } from "./node.ts"

export type BenchCommand =
  | {
      readonly t: "write"
      readonly run: string
      readonly count: number
      readonly size: number
      /** Updates per write call at most (one CDB write, one SQLite transaction). */
      readonly batch: number
      /** Offered updates per second; 0: as fast as the write path takes them. */
      readonly rate: number
    }
  | { readonly t: "track"; readonly run: string; readonly count: number }
  | { readonly t: "progress"; readonly runs: ReadonlyArray<string> }
  | { readonly t: "collect"; readonly run: string; readonly file: string }
  | { readonly t: "forget"; readonly run: string }
  | { readonly t: "usage" }

export type BenchReply =
  | { readonly t: "ready"; readonly node: string }
  | { readonly t: "written"; readonly run: string; readonly acknowledged: number; readonly failed: number }
  | { readonly t: "tracking"; readonly run: string }
  | { readonly t: "progress"; readonly applied: number }
  | { readonly t: "collected"; readonly run: string; readonly applied: number; readonly error?: string }
  | { readonly t: "forgotten"; readonly run: string }
  | {
      readonly t: "usage"
      readonly cpuUs: number
      readonly datagramsOut: number
      readonly datagramsIn: number
      readonly nacksSent: number
      readonly repairsSent: number
      readonly snapshotsInstalled: number
    }

export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6

interface Run {
  readonly prefix: string
  /** Per update: when this node applied it (0: not yet). */
  readonly appliedMs: Float64Array
  /** Per update: when this node wrote it, if it was the writer. */
  readonly writtenMs: Float64Array
  applied: number
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export const startBenchAgent = (running: RunningNode, send: (reply: BenchReply) => void) => {
  const runs = new Map<string, Run>()
  const track = (run: string, count: number): Run => {
    const existing = runs.get(run)
    if (existing !== undefined) return existing
    const created = {
      prefix: `${run}.`,
      appliedMs: new Float64Array(count),
      writtenMs: new Float64Array(count),
      applied: 0,
    }
    runs.set(run, created)
    return created
  }
  running.observeApplied((changes: ReadonlyArray<Change>) => {
    if (runs.size === 0) return
    const now = monotonicMs()
    for (const change of changes) {
      if (change.kind !== "bench") continue
      const dot = change.id.lastIndexOf(".")
      const run = runs.get(change.id.slice(0, dot))
      if (run === undefined) continue
      const index = Number(change.id.slice(dot + 1))
      if (index >= 0 && index < run.appliedMs.length && run.appliedMs[index] === 0) {
        run.appliedMs[index] = now
        run.applied++
      }
    }
  })

  const write = async (command: Extract<BenchCommand, { t: "write" }>) => {
    const run = track(command.run, command.count)
    const value = new Uint8Array(command.size).fill(0x61)
    const view = new DataView(value.buffer)
    const startedMs = monotonicMs()
    let acknowledged = 0
    let failed = 0
    for (let next = 0; next < command.count; ) {
      let take = Math.min(command.batch, command.count - next)
      if (command.rate > 0) {
        // Paced: write what is due by now (at least one), waiting for the next one if none is.
        const dueMs = startedMs + (next * 1000) / command.rate
        const waitMs = dueMs - monotonicMs()
        if (waitMs > 1) await sleep(Math.floor(waitMs))
        const due = Math.floor(((monotonicMs() - startedMs) * command.rate) / 1000) + 1
        take = Math.max(1, Math.min(take, due - next))
      }
      const nowMs = monotonicMs()
      const writes = []
      for (let index = next; index < next + take; index++) {
        view.setFloat64(0, nowMs)
        view.setUint32(8, index)
        run.writtenMs[index] = nowMs
        writes.push({
          op: "put" as const,
          kind: "bench",
          id: `${command.run}.${index}`,
          value: value.slice(),
        })
      }
      const outcome = await Effect.runPromise(Effect.result(running.write(writes)))
      if (outcome._tag === "Failure" && outcome.failure.reason === "busy") {
        // Flow control: the slowest member is too far behind; write this batch again shortly.
        await sleep(1)
        continue
      }
      if (outcome._tag === "Success") acknowledged += take
      else failed += take
      next += take
      // Let the node take in datagrams between write calls, as a real writer would.
      await nextTurn()
    }
    send({ t: "written", run: command.run, acknowledged, failed })
  }

  process.on("message", (message: BenchCommand) => {
    switch (message.t) {
      case "write":
        void write(message)
        return
      case "track":
        track(message.run, message.count)
        send({ t: "tracking", run: message.run })
        return
      case "collect": {
        const run = runs.get(message.run)
        const count = run?.appliedMs.length ?? 0
        // Two arrays, back to back: applied times, then written times (0 where not the writer).
        const bytes = new Float64Array(count * 2)
        if (run !== undefined) {
          bytes.set(run.appliedMs, 0)
          bytes.set(run.writtenMs, count)
        }
        try {
          writeFileSync(message.file, new Uint8Array(bytes.buffer))
          send({ t: "collected", run: message.run, applied: run?.applied ?? 0 })
        } catch (error) {
          send({ t: "collected", run: message.run, applied: 0, error: String(error) })
        }
        return
      }
      case "progress":
        send({
          t: "progress",
          applied: message.runs.reduce((sum, run) => sum + (runs.get(run)?.applied ?? 0), 0),
        })
        return
      case "forget":
        runs.delete(message.run)
        send({ t: "forgotten", run: message.run })
        return
      case "usage": {
        const cpu = process.cpuUsage()
        const counters = running.counters()
        send({
          t: "usage",
          cpuUs: cpu.user + cpu.system,
          datagramsOut: counters.datagramsOut,
          datagramsIn: counters.datagramsIn,
          nacksSent: counters.cdb.nacksSent,
          repairsSent: counters.cdb.repairsSent,
          snapshotsInstalled: counters.cdb.snapshotsInstalled,
        })
        return
      }
    }
  })
  send({ t: "ready", node: running.id })
}
