/** Helpers for tests that run nodes in network namespaces (root and `ip netns` required). */
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"

export const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: 20_000 })

/** True when namespaces can be made here, else the reason (for the skip message). */
export const namespacesAvailable = (tag: string): true | string => {
  if (process.getuid?.() !== 0) return "not root"
  const probe = sh(`ip netns add ${tag}-probe && ip netns del ${tag}-probe`)
  return probe.status === 0 ? true : `ip netns unavailable: ${probe.stderr.trim()}`
}

/** The admin key `acp cluster init` wrote into `dir` (the API wants a key on every call). */
export const adminKeyIn = (dir: string) => readFileSync(join(dir, "admin.key"), "utf8").trim()

/** Calls a node's API (127.0.0.1:7500 inside its namespace) from inside that namespace, with `key`. */
export const apiIn = (namespace: string, key: string, method: string, path: string, body?: unknown) => {
  const headers = {
    authorization: `Bearer ${key}`,
    ...(body === undefined ? {} : { "content-type": "application/json" }),
  }
  const init = `headers: ${JSON.stringify(headers)},${body === undefined ? "" : ` body: ${JSON.stringify(JSON.stringify(body))},`}`
  const script = `fetch("http://127.0.0.1:7500${path}", { method: ${JSON.stringify(method)}, ${init} signal: AbortSignal.timeout(3000) }).then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() }))).catch((e) => console.log(JSON.stringify({ status: 0, body: String(e) })))`
  const result = spawnSync("ip", ["netns", "exec", namespace, process.execPath, "-e", script], {
    encoding: "utf8",
    timeout: 10_000,
  })
  const parsed = JSON.parse(result.stdout.trim() || '{"status":0,"body":""}') as {
    status: number
    body: string
  }
  let json: unknown = parsed.body
  try {
    json = JSON.parse(parsed.body)
  } catch {}
  return { status: parsed.status, body: json as Record<string, unknown> & ReadonlyArray<unknown> }
}

export { eventually } from "../eventually.ts"
