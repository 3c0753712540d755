/**
 * A real local cluster, end to end: `acp cluster up` starts three node processes on loopback
 * (real UDP multicast, real SQLite), and the test talks to them over their HTTP APIs, kills
 * them with SIGKILL, restarts them, sends them garbage, and takes the cluster down.
 */
import { spawn, spawnSync } from "node:child_process"
import { createSocket } from "node:dgram"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { request as httpRequest } from "node:http"
import { request as httpsRequest } from "node:https"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Ajv2020 } from "ajv/dist/2020.js"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { newApiKey } from "../../adapters/agent/keys.ts"
import { objectKinds } from "../../core/model/kinds.ts"
import { eventually } from "../eventually.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bundle = join(root, "dist/acp.mjs")
const home = mkdtempSync(join(tmpdir(), "acp-cluster-"))
const basePort = 20_000 + (process.pid % 2_000) * 10
const apiPort = (node: number) => basePort + 100 + node
const env = { ...process.env, ACP_HOME: home }

const acp = (...args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [bundle, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })

const adminKey = () => readFileSync(join(home, "admin.key"), "utf8").trim()

/** One call to a node's local API, as the admin (or with `key`; `null` for none at all). */
const api = async (
  node: number,
  method: string,
  path: string,
  body?: unknown,
  key: string | null = adminKey(),
) => {
  const response = await fetch(`http://127.0.0.1:${apiPort(node)}${path}`, {
    method,
    headers: {
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    signal: AbortSignal.timeout(5_000),
  })
  const text = await response.text()
  let json: unknown = text
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: response.status, body: json as Record<string, unknown> & ReadonlyArray<unknown> }
}

const pidOf = (node: number) => Number(readFileSync(join(home, `n${node}`, "node.pid"), "utf8"))
const restart = (node: number) => {
  const child = spawn(
    process.execPath,
    [bundle, "node", "run", "--config", join(home, `n${node}`, "config.json")],
    {
      detached: true,
      stdio: "ignore",
      env,
    },
  )
  child.unref()
}
const running = () =>
  spawnSync("pgrep", ["-f", `--config ${home}`], { encoding: "utf8" })
    .stdout.split("\n")
    .filter((line) => line.trim() !== "").length

const system = (name: string) => ({
  name,
  cpus: 2,
  memoryMiB: 512,
  disks: [],
  nics: [],
  ha: true,
  desired: "running",
  placement: { affinity: [], antiAffinity: [] },
})

describe("local cluster (3 real nodes on loopback)", () => {
  beforeAll(() => {
    const up = acp("cluster", "up", "--nodes", "3", "--base-port", String(basePort))
    expect(up.status, up.stderr + up.stdout).toBe(0)
  }, 90_000)

  afterAll(() => {
    acp("cluster", "down", "--purge")
    rmSync(home, { recursive: true, force: true })
  })

  it("a write on one node is visible on the others", async () => {
    const put = await api(1, "PUT", "/v1/objects/system/web-1", system("web-1"))
    expect(put.status).toBe(200)
    for (const node of [2, 3]) {
      await eventually(async () => (await api(node, "GET", "/v1/objects/system/web-1")).status === 200)
      expect((await api(node, "GET", "/v1/objects/system/web-1")).body.spec).toEqual(system("web-1"))
    }
  })

  it("decides through the log on the primary: committed, applied on every node, survives a restart; elsewhere a 409 names the primary", async () => {
    const primary = await eventually(async () => {
      const view = (await api(1, "GET", "/v1/decisions")).body as unknown as { leader: string | null }
      return view.leader ?? undefined
    }, 10_000)
    const on = Number(primary.slice(1))
    const follower = on === 1 ? 2 : 1
    const grant = { _tag: "Grant", pool: "vlan", holder: "project-a", range: { from: 100, to: 199 } }
    const decided = await eventually(async () => {
      const answer = await api(on, "POST", "/v1/decisions", grant)
      return answer.status === 200 ? answer : undefined
    }, 10_000)
    expect(decided.body).toMatchObject({ _tag: "Granted", pool: "vlan", value: 100 })
    const second = await api(on, "POST", "/v1/decisions", { ...grant, holder: "project-b" })
    expect(second.body).toMatchObject({ _tag: "Granted", value: 101 })
    const refused = await api(follower, "POST", "/v1/decisions", grant)
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({ _tag: "NotDecided", reason: "not-primary", primary })
    for (const node of [1, 2, 3])
      await eventually(async () => {
        const view = (await api(node, "GET", "/v1/decisions")).body as unknown as {
          decided: { pools: Record<string, Record<string, { holder: string }>> }
        }
        return view.decided.pools.vlan?.["101"]?.holder === "project-b"
      }, 10_000)
    // The log is durable: a follower restarted holds the decisions again, from its own disk.
    process.kill(pidOf(follower), "SIGKILL")
    await eventually(
      async () => (await api(follower, "GET", "/v1/status").catch(() => undefined)) === undefined,
    )
    restart(follower)
    const again = await eventually(async () => {
      const answer = await api(follower, "GET", "/v1/decisions").catch(() => undefined)
      return answer?.status === 200
        ? (answer.body as unknown as { last: number; decided: { epoch: number } })
        : undefined
    }, 20_000)
    expect(again.last).toBeGreaterThanOrEqual(3)
    const text = acp("monitor", "log", "--node", `n${on}`)
    expect(text.status, text.stderr).toBe(0)
    expect(text.stdout).toContain(`primary ${primary} (deciding)`)
    expect(text.stdout).toContain('{"_tag":"Grant","pool":"vlan","holder":"project-b"')
  }, 60_000)

  it("a bad spec is a 400 naming every bad field, and nothing is written", async () => {
    const bad = await api(1, "PUT", "/v1/objects/system/bad-1", { name: "", cpus: 0 })
    expect(bad.status).toBe(400)
    const paths = (bad.body.issues as unknown as Array<{ path: string }>).map((issue) => issue.path)
    expect(paths).toEqual(expect.arrayContaining(["name", "cpus", "memoryMiB"]))
    expect((await api(1, "GET", "/v1/objects/system/bad-1")).status).toBe(404)
    expect((await api(1, "PUT", "/v1/objects/system/bad-2", "{not json")).status).toBe(400)
    expect((await api(1, "GET", "/v1/objects/spaceship")).status).toBe(400)
  })

  it("kill -9 a node during writes, restart it: it catches up and loses nothing acknowledged", async () => {
    process.kill(pidOf(2), "SIGKILL")
    for (let index = 0; index < 20; index++) {
      expect(
        (await api(1, "PUT", `/v1/objects/system/batch-${index}`, system(`batch-${index}`))).status,
      ).toBe(200)
    }
    restart(2)
    await eventually(async () => {
      const list = await api(2, "GET", "/v1/objects/system")
      return list.status === 200 && list.body.length >= 21
    })
  }, 30_000)

  it("an acknowledged write survives kill -9 of its writer, immediately after the acknowledgement", async () => {
    expect((await api(3, "PUT", "/v1/objects/system/durable-1", system("durable-1"))).status).toBe(200)
    process.kill(pidOf(3), "SIGKILL")
    restart(3)
    await eventually(async () => (await api(3, "GET", "/v1/objects/system/durable-1")).status === 200)
    await eventually(async () => (await api(1, "GET", "/v1/objects/system/durable-1")).status === 200)
  }, 30_000)

  it("replays of a dead primary's datagrams, from a fresh address, do not keep it alive", async () => {
    const config = JSON.parse(readFileSync(join(home, "n1", "config.json"), "utf8")) as {
      group: string
      groupPort: number
    }
    const statusOf = async (node: number) =>
      (await api(node, "GET", "/v1/status")).body as unknown as { primary: string | null; term: number }
    // The primary as it sees itself (the tests before this one restart nodes: let elections settle).
    const primary = await eventually(async () => {
      for (const node of [1, 2, 3]) {
        const view = (await api(node, "GET", "/v1/status")).body as unknown as {
          isPrimary: boolean
          node: string
        }
        if (view.isPrimary) return view.node
      }
      return undefined
    })
    const victim = Number(primary.slice(1))
    const survivors = [1, 2, 3].filter((node) => node !== victim)
    // Record the primary's datagrams as any process on the host can: join the group and listen.
    const tap = createSocket({ type: "udp4", reuseAddr: true })
    const captured: Array<Buffer> = []
    tap.on("message", (message) => {
      const sender = message.toString("utf8", 2, 2 + (message[1] ?? 0))
      if (sender === primary && captured.length < 200) captured.push(Buffer.from(message))
    })
    await new Promise<void>((resolve) => tap.bind(config.groupPort, () => resolve()))
    tap.addMembership(config.group, "127.0.0.1")
    await eventually(() => captured.length >= 20, 10_000)
    tap.close()
    const termBefore = (await statusOf(survivors[0]!)).term
    expect(
      ((await api(victim, "GET", "/v1/status")).body as unknown as { isPrimary: boolean }).isPrimary,
    ).toBe(true)
    process.kill(pidOf(victim), "SIGKILL")
    // Play them back from a fresh source port, to the group and to each survivor, until a new
    // primary is elected (bounded: 15 s); before the fix the replays held the old one for good.
    const replayer = createSocket("udp4")
    await new Promise<void>((resolve) => replayer.bind(0, "127.0.0.1", () => resolve()))
    replayer.setMulticastInterface("127.0.0.1")
    let replays = 0
    const replaying = setInterval(() => {
      for (const datagram of captured) {
        replayer.send(datagram, config.groupPort, config.group)
        for (const node of survivors) replayer.send(datagram, basePort + node, "127.0.0.1")
        replays++
      }
    }, 50)
    try {
      let seen: unknown
      const elected = await eventually(async () => {
        const view = await statusOf(survivors[0]!)
        seen = view
        return view.primary !== null && view.primary !== primary && view.term > termBefore ? view : undefined
      }, 15_000).catch((error: Error) => {
        throw new Error(
          `${error.message}; ${primary} was primary in term ${termBefore}; n${survivors[0]} last said ${JSON.stringify(seen)}`,
        )
      })
      expect(survivors.map((node) => `n${node}`)).toContain(elected.primary)
    } finally {
      clearInterval(replaying)
      replayer.close()
      // Whatever happened, the victim comes back, so the tests after this one have three nodes.
      restart(victim)
    }
    expect(replays).toBeGreaterThan(0)
    const metrics = String((await api(survivors[0]!, "GET", "/metrics")).body)
    expect(metrics).toMatch(/acp_datagrams_dropped_total\{node="n\d",reason="replayed"\} [1-9]/)
    await eventually(async () => (await api(victim, "GET", "/v1/status")).status === 200, 20_000)
  }, 60_000)

  it("drops datagrams without the cluster key and keeps working", async () => {
    const socket = createSocket("udp4")
    // A well-formed envelope (channel, sender "n9", incarnation, counter) with a forged tag.
    const header = Buffer.from([1, 2, ...Buffer.from("n9"), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    const garbage = Buffer.concat([header, Buffer.from("not a real datagram"), Buffer.alloc(16, 0xab)])
    await new Promise<void>((resolve) => socket.send(garbage, basePort + 1, "127.0.0.1", () => resolve()))
    socket.close()
    await eventually(async () => {
      const metrics = await api(1, "GET", "/metrics")
      return /acp_datagrams_dropped_total\{node="n1",reason="unauthenticated"\} [1-9]/.test(
        String(metrics.body),
      )
    })
    expect((await api(1, "PUT", "/v1/objects/system/after-garbage", system("after-garbage"))).status).toBe(
      200,
    )
  })

  it("serves its OpenAPI description and Prometheus metrics", async () => {
    const openapi = await api(1, "GET", "/openapi.json")
    expect(Object.keys(openapi.body.paths as object)).toEqual(
      expect.arrayContaining(["/v1/objects/{kind}/{id}", "/v1/status"]),
    )
    // An independent validator of the description: Redocly's linter (recommended rules).
    const described = join(home, "openapi.json")
    writeFileSync(described, JSON.stringify(openapi.body))
    const lint = spawnSync(
      process.execPath,
      [join(root, "node_modules/@redocly/cli/bin/cli.js"), "lint", described, "--format=stylish"],
      {
        encoding: "utf8",
        timeout: 60_000,
        env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
      },
    )
    expect(lint.status, lint.stdout + lint.stderr).toBe(0)
    expect(Object.keys(openapi.body.paths as object)).toContain("/v1/nodes/{node}/{route}")
    // And it says what is served: every object of every kind, as listed and as read one by one,
    // and the node's status, validate against the schemas it documents (an independent validator).
    const document = openapi.body as unknown as {
      paths: Record<
        string,
        Record<string, { responses: Record<string, { content: Record<string, { schema: object }> }> }>
      >
      components: object
    }
    const ajv = new Ajv2020({ strict: false, allErrors: true })
    const served = (path: string, method: string) =>
      ajv.compile({
        ...document.paths[path]![method]!.responses["200"]!.content["application/json"]!.schema,
        components: document.components,
      })
    expect((await api(1, "PUT", "/v1/objects/system/described", system("described"))).status).toBe(200)
    const listed = served("/v1/objects/{kind}", "get")
    const one = served("/v1/objects/{kind}/{id}", "get")
    const seen = new Map<string, number>()
    for (const kind of objectKinds) {
      const answer = await api(1, "GET", `/v1/objects/${kind}`)
      expect(answer.status).toBe(200)
      expect(listed(answer.body), `${kind}: ${JSON.stringify(listed.errors)}`).toBe(true)
      const objects = answer.body as ReadonlyArray<{ id: string }>
      seen.set(kind, objects.length)
      for (const object of objects.slice(0, 3)) {
        const read = await api(1, "GET", `/v1/objects/${kind}/${encodeURIComponent(object.id)}`)
        expect(one(read.body), `${kind}/${object.id}: ${JSON.stringify(one.errors)}`).toBe(true)
      }
    }
    for (const kind of ["system", "service", "api-key"])
      expect(seen.get(kind), `${kind}: ${JSON.stringify([...seen])}`).toBeGreaterThan(0)
    const status = served("/v1/status", "get")
    expect(status((await api(1, "GET", "/v1/status")).body), JSON.stringify(status.errors)).toBe(true)
    // The schemas tell: an object of one kind with another kind's spec does not validate.
    const first = async (kind: string) =>
      ((await api(1, "GET", `/v1/objects/${kind}`)).body as unknown as Array<Record<string, unknown>>)[0]!
    const aSystem = await first("system")
    expect(one(aSystem)).toBe(true)
    expect(one({ ...(await first("service")), spec: aSystem.spec })).toBe(false)
    const metrics = String((await api(1, "GET", "/metrics")).body)
    expect(metrics).toMatch(/acp_objects\{node="n1"\} \d+/)
    expect(metrics).toMatch(
      /# TYPE acp_writes_acknowledged_total counter\nacp_writes_acknowledged_total\{node="n1"\} [1-9]/,
    )
    // Prometheus's own linter: `npm test` installs it (acp setup --for test), so it is never skipped.
    const promtool = spawnSync("promtool", ["check", "metrics"], { input: metrics, encoding: "utf8" })
    expect(promtool.error, "promtool is missing: npx acp setup --for test").toBeUndefined()
    expect(promtool.status, promtool.stdout + promtool.stderr).toBe(0)
  })

  describe("the agent (TLS 1.3, client certificates, API keys)", () => {
    const agentPort = (node: number) => basePort + 200 + node
    const pki = (file: string) => readFileSync(join(home, "pki", file))

    /** A request to a node's agent; resolves to the HTTP status and body, or to the TLS error. */
    const viaAgent = (options: {
      cert?: Buffer
      key?: Buffer
      apiKey?: string
      method?: string
      path: string
      body?: unknown
      headers?: Readonly<Record<string, string>>
    }) =>
      new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
        const outgoing = httpsRequest(
          {
            host: "127.0.0.1",
            port: agentPort(2),
            method: options.method ?? "GET",
            path: options.path,
            ca: pki("ca.crt"),
            ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
            headers: {
              ...options.headers,
              ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }),
              ...(options.body === undefined ? {} : { "content-type": "application/json" }),
            },
          },
          (response) => {
            let body = ""
            response.on("data", (chunk) => {
              body += chunk
            })
            response.on("end", () => resolve({ status: response.statusCode ?? 0, body }))
          },
        )
        outgoing.on("error", (error) => resolve({ error: error.message }))
        outgoing.end(options.body === undefined ? undefined : JSON.stringify(options.body))
      })

    const admin = () => ({ cert: pki("admin.crt"), key: pki("admin.key") })

    it("serves a client with the cluster's certificate and a valid key", async () => {
      const answer = await viaAgent({ ...admin(), apiKey: adminKey(), path: "/v1/objects/system/web-1" })
      expect(answer).toMatchObject({ status: 200 })
    })

    it("refuses the TLS handshake to a client without a certificate, and to one from another CA", async () => {
      expect(await viaAgent({ apiKey: adminKey(), path: "/v1/status" })).toHaveProperty("error")
      const other = mkdtempSync(join(tmpdir(), "acp-other-ca-"))
      spawnSync("openssl", [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        join(other, "k.pem"),
        "-out",
        join(other, "c.pem"),
        "-subj",
        "/CN=intruder",
        "-days",
        "1",
      ])
      const foreign = await viaAgent({
        cert: readFileSync(join(other, "c.pem")),
        key: readFileSync(join(other, "k.pem")),
        apiKey: adminKey(),
        path: "/v1/status",
      })
      rmSync(other, { recursive: true, force: true })
      expect(foreign).toHaveProperty("error")
    })

    it("refuses a wrong, a revoked and an under-privileged key, saying why, and forwards nothing", async () => {
      const wrong = await viaAgent({
        ...admin(),
        apiKey: `${adminKey().slice(0, -4)}AAAA`,
        path: "/v1/status",
      })
      expect(wrong).toMatchObject({ status: 401 })
      expect((wrong as { body: string }).body).toContain("wrong API key")
      const readOnly = newApiKey("viewer", "read-only")
      expect((await api(1, "PUT", `/v1/objects/api-key/${readOnly.id}`, readOnly.record)).status).toBe(200)
      await eventually(
        async () =>
          ((await viaAgent({ ...admin(), apiKey: readOnly.key, path: "/v1/status" })) as { status: number })
            .status === 200,
      )
      const write = await viaAgent({
        ...admin(),
        apiKey: readOnly.key,
        method: "PUT",
        path: "/v1/objects/system/sneaky",
        body: system("sneaky"),
      })
      expect(write).toMatchObject({ status: 403 })
      expect((await api(2, "GET", "/v1/objects/system/sneaky")).status).toBe(404)
      expect(
        (await api(1, "PUT", `/v1/objects/api-key/${readOnly.id}`, { ...readOnly.record, revoked: true }))
          .status,
      ).toBe(200)
      await eventually(
        async () =>
          ((await viaAgent({ ...admin(), apiKey: readOnly.key, path: "/v1/status" })) as { status: number })
            .status === 401,
      )
      const revoked = await viaAgent({ ...admin(), apiKey: readOnly.key, path: "/v1/status" })
      expect((revoked as { body: string }).body).toContain("revoked")
    })

    it("takes any path, method and headers through TLS without failing, and no key but admin writes a key by any of them (fuzz)", async () => {
      const operator = newApiKey("agent-ops", "operator")
      expect((await api(1, "PUT", `/v1/objects/api-key/${operator.id}`, operator.record)).status).toBe(200)
      await eventually(
        async () =>
          ((await viaAgent({ ...admin(), apiKey: operator.key, path: "/v1/status" })) as { status: number })
            .status === 200,
      )
      const keysOn = async (node: number) =>
        ((await api(node, "GET", "/v1/objects/api-key")).body as ReadonlyArray<{ id: string }>)
          .map((key) => key.id)
          .sort()
      const before = await keysOn(2)
      const forged = newApiKey("agent-forged", "admin")
      // Real routes, each spelt in many ways: encodings, case, doubled slashes, dot segments,
      // forwarding prefixes; now and then a segment of noise.
      const encodeOne = (text: string, at: number) =>
        at >= text.length
          ? text
          : `${text.slice(0, at)}%${text.charCodeAt(at).toString(16).padStart(2, "0")}${text.slice(at + 1)}`
      const word = fc.oneof(
        { arbitrary: fc.constantFrom("api-key", "api-key", "system", "project", forged.id, "n1"), weight: 4 },
        { arbitrary: fc.stringMatching(/^[A-Za-z0-9._~%-]{1,12}$/), weight: 1 },
      )
      const route = fc.oneof(
        { arbitrary: fc.tuple(word, word).map(([kind, id]) => ["v1", "objects", kind, id]), weight: 4 },
        { arbitrary: word.map((kind) => ["v1", "objects", kind]), weight: 3 },
        { arbitrary: fc.constant(["v1", "status"]), weight: 1 },
        { arbitrary: word.map((id) => ["v1", "alarms", id, "acknowledge"]), weight: 1 },
        { arbitrary: word.map((id) => ["v1", "systems", id]), weight: 1 },
        {
          arbitrary: fc
            .tuple(word, fc.constantFrom("start", "stop", "destroy", "migrate"))
            .map(([id, op]) => ["v1", "systems", id, op]),
          weight: 1,
        },
        { arbitrary: fc.constantFrom(["metrics"], ["openapi.json"], ["v1", "host", "domains"]), weight: 1 },
      )
      const request = fc.record({
        method: fc.constantFrom("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"),
        via: fc.constantFrom(
          [],
          [],
          ["v1", "nodes", "n1"],
          ["v1", "nodes", "n3"],
          ["v1", "nodes", "n9"],
          ["v1", "nodes", "%6e1"],
        ),
        route,
        mangle: fc.option(
          fc.record({
            at: fc.nat({ max: 5 }),
            encode: fc.nat({ max: 8 }),
            upper: fc.boolean(),
            dot: fc.constantFrom("", "./", "x/../", "%2e/"),
            doubled: fc.boolean(),
          }),
          { nil: undefined, freq: 2 },
        ),
        suffix: fc.constantFrom("", "?x=1", "#f", "/", "?"),
        key: fc.constantFrom(operator.key, operator.key, operator.key, "acp_garbage", undefined),
        headers: fc.dictionary(
          fc.constantFrom("x-forwarded-for", "x-forwarded-host", "x-original-url", "x-acp-node", "forwarded"),
          fc.stringMatching(/^[ -~]{0,32}$/).map((text) => text.trim()),
          { maxKeys: 3 },
        ),
      })
      const statuses = new Map<number, number>()
      await fc.assert(
        fc.asyncProperty(request, async ({ method, via, route, mangle, suffix, key, headers }) => {
          const segments = [...via, ...route]
          if (mangle !== undefined) {
            const at = mangle.at % segments.length
            let mangled = encodeOne(segments[at]!, mangle.encode)
            if (mangle.upper) mangled = mangled.toUpperCase()
            segments[at] = `${mangle.dot}${mangled}`
          }
          const path = `/${segments.join(mangle?.doubled === true ? "//" : "/")}${suffix}`
          const answer = await viaAgent({
            ...admin(),
            method,
            path,
            headers,
            ...(key === undefined ? {} : { apiKey: key }),
            ...(method === "PUT" || method === "POST" ? { body: forged.record } : {}),
          })
          expect(answer, path).toHaveProperty("status")
          const { status, body } = answer as { status: number; body: string }
          statuses.set(status, (statuses.get(status) ?? 0) + 1)
          // A refusal or an answer, never a failure of the node; a refusal says why.
          expect(status, `${method} ${path}: ${body}`).toBeLessThan(500)
          if (status >= 400) expect(JSON.parse(body), `${method} ${path}`).toHaveProperty("message")
        }),
        {
          numRuns: 400,
          // The plain spellings first: an answer, a refused read and a refused write of a key.
          examples: [
            [
              {
                method: "GET",
                via: [],
                route: ["v1", "status"],
                mangle: undefined,
                suffix: "",
                key: operator.key,
                headers: {},
              },
            ],
            [
              {
                method: "GET",
                via: [],
                route: ["v1", "objects", "api-key"],
                mangle: undefined,
                suffix: "",
                key: operator.key,
                headers: {},
              },
            ],
            [
              {
                method: "PUT",
                via: ["v1", "nodes", "n3"],
                route: ["v1", "objects", "api-key", forged.id],
                mangle: undefined,
                suffix: "",
                key: operator.key,
                headers: {},
              },
            ],
          ],
        },
      )
      // The routes were reached: refusals for the key, and answers, not only unknown routes.
      for (const status of [200, 401, 403])
        expect(statuses.get(status) ?? 0, JSON.stringify([...statuses])).toBeGreaterThan(0)
      // Nothing written: the same keys on every node, and the forged one nowhere.
      for (const node of [1, 2, 3]) {
        expect(await keysOn(node)).toEqual(before)
        expect((await api(node, "GET", `/v1/objects/api-key/${forged.id}`)).status).toBe(404)
      }
      expect((await api(2, "GET", "/v1/status")).status).toBe(200)
    }, 120_000)
  })

  describe("held from outside: who is calling, on the route the router resolved", () => {
    /** A request with its path sent byte for byte as given (no client-side normalising). */
    const raw = (
      target: { port: number } | { socketPath: string },
      method: string,
      path: string,
      key: string | undefined,
      body?: string,
      headers: Readonly<Record<string, string>> = {},
    ) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const outgoing = httpRequest(
          {
            host: "127.0.0.1",
            ...target,
            method,
            path,
            headers: {
              ...headers,
              ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
              ...(body === undefined ? {} : { "content-type": "application/json" }),
            },
          },
          (response) => {
            let text = ""
            response.on("data", (chunk) => {
              text += chunk
            })
            response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }))
          },
        )
        outgoing.on("error", reject)
        outgoing.end(body)
      })

    it("an operator key writes no API key by any spelling of the path, directly or forwarded", async () => {
      const operator = newApiKey("ops", "operator")
      expect((await api(1, "PUT", `/v1/objects/api-key/${operator.id}`, operator.record)).status).toBe(200)
      await eventually(
        async () => (await api(1, "GET", "/v1/status", undefined, operator.key)).status === 200,
      )
      const forged = newApiKey("forged", "admin")
      const payload = JSON.stringify(forged.record)
      const encodeOne = (text: string, at: number) =>
        `${text.slice(0, at)}%${text.charCodeAt(at).toString(16).padStart(2, "0")}${text.slice(at + 1)}`
      const spelling = fc.record({
        kindAt: fc.nat({ max: 6 }),
        upper: fc.boolean(),
        hex: fc.constantFrom("lower", "upper"),
        doubled: fc.constantFrom("", "/"),
        dot: fc.constantFrom("", "./", "x/../"),
        via: fc.constantFrom("", "/v1/nodes/n1", "/v1/nodes/n2", "/v1/nodes/n3", "/v1/nodes/%6e2"),
        suffix: fc.constantFrom("", "?x=1", "#frag", "%2F", "/"),
      })
      const statuses = new Set<number>()
      await fc.assert(
        fc.asyncProperty(spelling, async (shape) => {
          let kind = encodeOne("api-key", shape.kindAt)
          if (shape.hex === "upper") kind = kind.replace(/%[0-9a-f]{2}/, (hex) => hex.toUpperCase())
          if (shape.upper) kind = kind.toUpperCase()
          const path = `${shape.via}${shape.doubled}/v1/objects/${shape.dot}${kind}/${forged.id}${shape.suffix}`
          const answer = await raw({ port: apiPort(1) }, "PUT", path, operator.key, payload)
          statuses.add(answer.status)
          // Refused (403, or a route or kind that does not exist), always with a body that says why.
          expect([400, 403, 404], `${path}: ${answer.body}`).toContain(answer.status)
          expect(JSON.parse(answer.body)).toHaveProperty("message")
        }),
        { numRuns: 150 },
      )
      expect(statuses.has(403)).toBe(true)
      for (const node of [1, 2, 3])
        expect((await api(node, "GET", `/v1/objects/api-key/${forged.id}`)).status).toBe(404)
      // The same key may do what an operator does, on every node, forwarded as itself.
      const created = await raw(
        { port: apiPort(1) },
        "PUT",
        "/v1/nodes/n2/v1/objects/system/by-operator",
        operator.key,
        JSON.stringify(system("by-operator")),
      )
      expect(created.status, created.body).toBe(200)
    }, 60_000)

    it("the TCP API asks for a key; the Unix socket's file permissions are its proof", async () => {
      const anonymous = await api(1, "GET", "/v1/objects/api-key", undefined, null)
      expect(anonymous.status).toBe(401)
      expect(anonymous.body).toMatchObject({ _tag: "Unauthorized", reason: "missing" })
      const forwarded = await raw({ port: apiPort(1) }, "GET", "/v1/nodes/n2/v1/status", undefined)
      expect(forwarded.status).toBe(401)
      const socketPath = join(home, "n1", "api.sock")
      expect(statSync(socketPath).mode & 0o777).toBe(0o600)
      expect((await raw({ socketPath }, "GET", "/v1/status", undefined)).status).toBe(200)
    })

    it("answers every refusal with a typed body: bad JSON, an empty body, an unknown route, a body too large", async () => {
      const key = adminKey()
      const bad = await raw({ port: apiPort(1) }, "PUT", "/v1/objects/project/p1", key, "{not json")
      expect(bad.status).toBe(400)
      expect(JSON.parse(bad.body)).toMatchObject({ _tag: "BadRequest", part: "payload" })
      const empty = await raw({ port: apiPort(1) }, "PUT", "/v1/objects/project/p1", key, "")
      expect(empty.status).toBe(400)
      expect(JSON.parse(empty.body)).toHaveProperty("message")
      const nowhere = await raw({ port: apiPort(1) }, "GET", "/v2/nothing", key)
      expect(nowhere.status).toBe(404)
      expect(JSON.parse(nowhere.body)).toMatchObject({ _tag: "RouteNotFound" })
      const large = await raw(
        { port: apiPort(1) },
        "PUT",
        "/v1/objects/project/p1",
        key,
        `"${"a".repeat(3 * 1024 * 1024)}"`,
      )
      expect(large.status).toBe(413)
      expect(JSON.parse(large.body)).toMatchObject({ _tag: "PayloadTooLarge" })
      expect((await api(1, "GET", "/v1/objects/project/p1")).status).toBe(404)
    })

    it("takes any headers without failing: every answer is a typed refusal or a success, never a 5xx (fuzz)", async () => {
      const token = fc
        .stringMatching(/^[a-z][a-z0-9-]{0,20}$/)
        .filter(
          (name) =>
            !["content-length", "host", "transfer-encoding", "connection", "expect", "upgrade"].includes(
              name,
            ),
        )
      const headerValue = fc.stringMatching(/^[ -~]{0,64}$/).map((text) => text.trim())
      const request = fc.record({
        headers: fc.dictionary(token, headerValue, { maxKeys: 6 }),
        authorization: fc.oneof(
          fc.constant(undefined),
          fc.constant(`Bearer ${adminKey()}`),
          headerValue,
          headerValue.map((text) => `Bearer ${text}`),
        ),
        path: fc.constantFrom(
          "/v1/status",
          "/v1/objects/project",
          "/v1/objects/api-key",
          "/metrics",
          "/openapi.json",
        ),
      })
      await fc.assert(
        fc.asyncProperty(request, async ({ headers, authorization, path }) => {
          const answer = await raw({ port: apiPort(2) }, "GET", path, undefined, undefined, {
            ...headers,
            ...(authorization === undefined ? {} : { authorization }),
          })
          expect(answer.status, answer.body).toBeLessThan(500)
          if (answer.status >= 400) expect(JSON.parse(answer.body)).toHaveProperty("message")
        }),
        { numRuns: 200 },
      )
      expect((await api(2, "GET", "/v1/status")).status).toBe(200)
    }, 60_000)

    it("the API holds at most 256 connections; past them it closes new ones, and it answers again once they go", async () => {
      const sockets = Array.from({ length: 300 }, () => connect({ host: "127.0.0.1", port: apiPort(3) }))
      let closed = 0
      for (const socket of sockets) {
        socket.on("error", () => {})
        socket.on("close", () => {
          closed++
        })
      }
      await eventually(() => closed >= 300 - 256, 5_000)
      expect(closed).toBeLessThanOrEqual(300 - 250)
      for (const socket of sockets) socket.destroy()
      await eventually(async () => (await api(3, "GET", "/v1/status")).status === 200, 10_000)
    }, 20_000)

    it("the agent holds at most 32 connections from one source, and drops a silent one after its handshake timeout", async () => {
      const sockets = Array.from({ length: 64 }, () => connect({ host: "127.0.0.1", port: basePort + 202 }))
      const closedAt = sockets.map(() => 0)
      const started = Date.now()
      sockets.forEach((socket, index) => {
        socket.on("error", () => {})
        socket.on("close", () => {
          closedAt[index] = Date.now() - started
        })
      })
      // Those past the cap are closed at once; the rest, which never say hello, by the timeout.
      // (Connections of earlier tests from this address, kept alive, count towards the 32 too.)
      await eventually(() => closedAt.filter((at) => at > 0).length >= 32, 3_000)
      const held = closedAt.filter((at) => at === 0).length
      expect(held).toBeGreaterThan(0)
      expect(held).toBeLessThanOrEqual(32)
      await eventually(() => closedAt.every((at) => at > 0), 10_000)
      expect(Math.max(...closedAt)).toBeGreaterThanOrEqual(4_000)
      expect((await api(2, "GET", "/v1/status")).status).toBe(200)
    }, 20_000)
  })

  it("a dead node raises an alarm; an operator acknowledges it once; it clears when the node returns", async () => {
    process.kill(pidOf(3), "SIGKILL")
    const alarmId = "node-unreachable.n3"
    await eventually(async () => (await api(1, "GET", `/v1/objects/alarm/${alarmId}`)).status === 200, 20_000)
    const ack = await api(1, "POST", `/v1/alarms/${alarmId}/acknowledge`, { by: "alice" })
    expect(ack.status).toBe(200)
    expect(ack.body.spec).toMatchObject({ state: "acknowledged", acknowledgedBy: "alice" })
    const again = await api(1, "POST", `/v1/alarms/${alarmId}/acknowledge`, { by: "bob" })
    expect(again.status).toBe(409)
    expect(String(again.body.message)).toContain("is acknowledged")
    expect((await api(1, "POST", "/v1/alarms/no-such-alarm/acknowledge", { by: "bob" })).status).toBe(404)
    restart(3)
    await eventually(async () => {
      const alarm = await api(1, "GET", `/v1/objects/alarm/${alarmId}`)
      return (alarm.body.spec as { state?: string } | undefined)?.state === "cleared"
    }, 20_000)
  }, 60_000)

  it("the framework restarts a failed service with back-off, and its state reaches every node", async () => {
    process.kill(pidOf(1), "SIGKILL")
    await eventually(async () => {
      try {
        await api(1, "GET", "/v1/status")
        return false
      } catch {
        return true
      }
    })
    // Someone else holds n1's API port while n1 restarts: its API service fails and backs off.
    const squatter = createServer()
    await new Promise<void>((resolve) => squatter.listen(apiPort(1), "127.0.0.1", resolve))
    restart(1)
    type ServiceView = { meta: Array<{ node: string; value: { state: string; restarts: number } }> }
    const apiService = async () =>
      (await api(2, "GET", "/v1/objects/service/n1.api")).body as unknown as ServiceView
    await eventually(
      async () => ["failed", "backing-off"].includes((await apiService()).meta[0]?.value.state ?? ""),
      15_000,
    )
    await new Promise<void>((resolve) => squatter.close(() => resolve()))
    await eventually(async () => (await api(1, "GET", "/v1/status")).status === 200, 40_000)
    await eventually(async () => {
      const meta = (await apiService()).meta[0]?.value
      return meta?.state === "running" && meta.restarts >= 1
    })
  }, 90_000)

  it("a hypervisor whose libvirt URI cannot be opened shows in acp health, acp alarm list and acp node show", async () => {
    const configPath = join(home, "n3", "config.json")
    const original = readFileSync(configPath, "utf8")
    const broken = { ...JSON.parse(original), hypervisor: { uri: "qemu+tcp://127.0.0.1:9/system" } }
    process.kill(pidOf(3), "SIGKILL")
    writeFileSync(configPath, JSON.stringify(broken))
    restart(3)
    try {
      // Health, as any node computes it from the services' states in the CDB: points off, with the reason.
      const health = await eventually(() => {
        const out = acp("health", "--node", "n1").stdout
        return /-15: hypervisor on n3 (backing-off|failed|starting): .+/.test(out) ? out : undefined
      }, 30_000)
      expect(health).toMatch(/hypervisor on n3 \S+: .*(connect|127\.0\.0\.1|libvirt)/i)
      // The primary raises the alarm once the service has been failing for its threshold.
      const alarm = await eventually(() => {
        const listed = JSON.parse(acp("alarm", "list", "--json").stdout) as Array<{
          id: string
          state: string
          message: string
        }>
        return listed.find(
          (entry) => entry.id === "service-failing.n3.hypervisor" && entry.state === "raised",
        )
      }, 30_000)
      expect(alarm.message).toMatch(/^hypervisor on n3 /)
      // The node's own account lists the service with its state and last error.
      const show = acp("node", "show", "n3")
      expect(show.status, show.stderr).toBe(0)
      expect(show.stdout).toMatch(/hypervisor\s+(backing-off|failed|starting)\s+\d+ s\s+\d+\s+\S/)
      // The scheduler says why n3 takes no system.
      const placed = await api(1, "POST", "/v1/systems/where-1", { spec: system("where-1"), dryRun: true })
      expect(JSON.stringify(placed.body)).toMatch(/hypervisor (backing-off|failed|starting)/)
    } finally {
      process.kill(pidOf(3), "SIGKILL")
      writeFileSync(configPath, original)
      restart(3)
    }
    // Back to a working URI: the alarm clears and the health reason goes.
    await eventually(() => {
      const listed = JSON.parse(acp("alarm", "list", "--json").stdout) as Array<{ id: string }>
      return !listed.some((entry) => entry.id === "service-failing.n3.hypervisor")
    }, 40_000)
    expect(acp("health", "--node", "n1").stdout).not.toContain("hypervisor on n3")
  }, 120_000)

  it("acp node list and show: every member, one primary, and one node's own account", async () => {
    type Member = { id: string; primary: boolean }
    const members = () => JSON.parse(acp("node", "list", "--json").stdout) as Array<Member>
    // The tests before this one killed and restarted nodes: an election may still be running.
    await eventually(async () => members().filter((member) => member.primary).length === 1, 15_000)
    expect(
      members()
        .map((member) => member.id)
        .sort(),
    ).toEqual(["n1", "n2", "n3"])
    const show = acp("node", "show", "n2")
    expect(show.status, show.stderr).toBe(0)
    expect(show.stdout).toMatch(/^node n2 \(incarnation \d+\)/)
    expect(acp("node", "show", "n7").stderr).toContain('no node "n7"')
  })

  it("acp key create prints a key once that the agent then accepts, for its role only", async () => {
    const created = acp("key", "create", "--name", "dashboard", "--role", "read-only")
    expect(created.status, created.stderr).toBe(0)
    const key = created.stdout.trim().split("\n").at(-1)!
    expect(key).toMatch(/^acp_[0-9a-f]{8}_/)
    const stored = JSON.stringify((await api(1, "GET", "/v1/objects/api-key")).body)
    // The secret is everything after "acp_<8 hex>_" (base64url, so it may hold "_" itself).
    const secret = key.slice("acp_".length + 9)
    expect(secret).toHaveLength(43)
    expect(stored).not.toContain(secret)
  })

  it("routes /v1/nodes/{node}/... from one node's API to another node through its agent", async () => {
    const remote = await api(1, "GET", "/v1/nodes/n3/v1/status")
    expect(remote.status).toBe(200)
    expect(remote.body.node).toBe("n3")
    expect((await api(1, "GET", "/v1/nodes/n1/v1/status")).body.node).toBe("n1")
    const unknown = await api(1, "GET", "/v1/nodes/n9/v1/status")
    expect(unknown.status).toBe(404)
    expect(unknown.body).toMatchObject({ _tag: "UnknownNode", message: "no member n9; members: n1, n2, n3" })
    const malformed = await api(1, "GET", "/v1/nodes/%A/v1/status")
    expect(malformed.status).toBeGreaterThanOrEqual(400)
    expect(malformed.body).toHaveProperty("message")
    expect((await api(2, "PUT", "/v1/nodes/n3/v1/objects/system/routed", system("routed"))).status).toBe(200)
    const written = await api(3, "GET", "/v1/objects/system/routed")
    expect((written.body.version as { origin: string }).origin).toBe("n3")
  })

  it("serves the same API on a Unix socket that only the node's user may open (0600)", async () => {
    const socket = join(home, "n2", "api.sock")
    expect(statSync(socket).isSocket()).toBe(true)
    expect(statSync(socket).mode & 0o777).toBe(0o600)
    const status = await new Promise<number>((resolve, reject) => {
      const outgoing = httpRequest({ socketPath: socket, path: "/v1/status" }, (response) => {
        response.resume()
        resolve(response.statusCode ?? 0)
      })
      outgoing.on("error", reject)
      outgoing.end()
    })
    expect(status).toBe(200)
  })

  it("`acp cluster down` stops every node, restarted ones included", () => {
    const down = acp("cluster", "down")
    expect(down.status, down.stderr).toBe(0)
    expect(running()).toBe(0)
  })
})
