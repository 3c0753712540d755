/**
 * `acp node run --config <file>`: runs one node in the foreground (what `acp cluster up`
 * spawns per node): SQLite, UDP, the driver loop, and the local API. Logs are JSON lines.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Console, Effect, Layer, Logger, Option, Schedule } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { WriteOp } from "../../../core/cdb/node.ts"
import { hypervisorService } from "../../../core/hypervisor/service.ts"
import { DurableStore } from "../../../core/ports/store.ts"
import { storageService } from "../../../core/storage/service.ts"
import { startAgent } from "../../agent/agent.ts"
import { recordFor } from "../../agent/keys.ts"
import type { Forwarding } from "../../api/forward.ts"
import { layerApiServer, layerApiSocket, Node } from "../../api/server.ts"
import { LibvirtVmmLayer } from "../../hypervisor/libvirt.ts"
import { startBenchAgent } from "../../node/bench-agent.ts"
import { ConfigError, loadConfig } from "../../node/config.ts"
import { runFramework, type ServiceDefinition } from "../../node/framework.ts"
import { runHypervisor } from "../../node/hypervisor.ts"
import { realNodeRetainChanges, startNode } from "../../node/node.ts"
import { runStorage } from "../../node/storage.ts"
import { watchdog } from "../../node/watchdog.ts"
import { NodeStorageLayer } from "../../storage/by-driver.ts"
import { GaneshaSharesLayer } from "../../storage/ganesha.ts"
import { layerSqlite } from "../../store/sqlite.ts"
import { envelopeOverhead } from "../../transport/envelope.ts"
import { layerUdp } from "../../transport/udp.ts"
import { renderTable } from "../render.ts"
import { dirFlag, jsonFlag, nodeFlag, withApi } from "../target.ts"
import { nodeJoin, nodePromote, nodeRemove } from "./members.ts"

export const runNode = (configPath: string, bench = false) =>
  Effect.scoped(
    Effect.gen(function* () {
      const config = yield* loadConfig(configPath)
      // The pid file lets `acp cluster down` find this process however it was started.
      const pidFile = join(config.dataDir, "node.pid")
      yield* Effect.acquireRelease(
        Effect.sync(() => writeFileSync(pidFile, `${process.pid}\n`)),
        () => Effect.sync(() => rmSync(pidFile, { force: true })),
      )
      // The node's certificate, for its relay links and for reaching other nodes' agents.
      const agentFiles = config.agent
      const tls =
        agentFiles === null
          ? undefined
          : yield* Effect.try({
              try: () => ({
                cert: readFileSync(agentFiles.certFile),
                key: readFileSync(agentFiles.keyFile),
                ca: readFileSync(agentFiles.caFile),
              }),
              catch: (error) =>
                new ConfigError({
                  path: configPath,
                  message: `${configPath}: agent certificate files: ${(error as Error).message}`,
                }),
            })
      const self = config.members.find((member) => member.id === config.id)
      const relayPeers = config.members
        .filter((member) => member.relay && member.domain !== config.domain && member.relayPort !== undefined)
        .map((member) => ({ id: member.id, address: member.address, port: member.relayPort! }))
      const relay =
        tls !== undefined && self?.relay === true && self.relayPort !== undefined
          ? { ...tls, port: self.relayPort, peers: relayPeers }
          : undefined
      const store = layerSqlite({
        path: join(config.dataDir, "node.db"),
        self: config.id,
        retainChanges: realNodeRetainChanges,
        synchronous: config.synchronous,
      })
      // This start's incarnation, counted once: the node announces it, and the envelope seals it
      // into every datagram, so a receiver tells this run's counters from an earlier run's.
      const transport = (start: { incarnation: number; sealLeadUs: number }) =>
        layerUdp({
          self: config.id,
          incarnation: start.incarnation,
          sealLeadUs: start.sealLeadUs,
          address: config.address,
          port: config.port,
          group: config.group,
          groupPort: config.groupPort,
          domain: config.domain,
          peers: config.members,
          key: Buffer.from(config.keyHex, "hex"),
          encrypt: config.encrypt,
          maxPayloadBytes: config.mtu,
          queueCapacity: 65_536,
          ...(relay === undefined ? {} : { relay }),
        })
      // A store that cannot take the count (a full disk, an I/O error) is waited for, saying why
      // every time it is tried again: the node starts once space returns, as a running one
      // writes again (found by the fault harness: a restart on a full disk died with a bare
      // `StoreError`). One that cannot be opened or read stops the node with the reason.
      const start = yield* Effect.flatMap(DurableStore, (durable) => durable.recordStart).pipe(
        Effect.provide(store),
        Effect.tapError((error) =>
          Effect.logError(
            `cannot record this start in ${join(config.dataDir, "node.db")} (${error.reason}): ${error.detail}${error.reason === "disk-full" || error.reason === "io-error" ? "; trying again every second" : ""}`,
          ),
        ),
        Effect.retry({
          schedule: Schedule.spaced("1 second"),
          while: (error) => error.reason === "disk-full" || error.reason === "io-error",
        }),
        Effect.mapError(
          (error) =>
            new ConfigError({
              path: join(config.dataDir, "node.db"),
              message: `cannot record this start in ${join(config.dataDir, "node.db")} (${error.reason}): ${error.detail}`,
            }),
        ),
      )
      // First of all, the watchdog: from here on a stalled node is killed before the primary
      // moves its HA systems.
      if (config.watchdogMs !== undefined) yield* watchdog(config.watchdogMs)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const hypervisorSettings = config.hypervisor
          const { running } = yield* startNode(config, start.incarnation, {
            storage: storageService({ poolRoot: join(config.dataDir, "pools") }),
            hypervisor: hypervisorService({
              volumeDir: join(config.dataDir, "volumes"),
              consoleDir: join(config.dataDir, "console"),
              ...(hypervisorSettings?.haFenceMs === undefined
                ? {}
                : { haFenceMs: hypervisorSettings.haFenceMs }),
              ...(hypervisorSettings?.stopTimeoutMs === undefined
                ? {}
                : { stopTimeoutMs: hypervisorSettings.stopTimeoutMs }),
            }),
          })
          // Started by `acp bench sync`: its probe answers the driver over the IPC channel.
          const ipc = process.send?.bind(process)
          if (bench && ipc !== undefined) startBenchAgent(running, (reply) => ipc(reply))
          // The framework supervises the node's services (the CDB and monitor driver above is the
          // node itself): the local API, then the agent, restarted with back-off if they fail.
          const agent = config.agent
          // Other nodes' APIs are reached through their agents, with this node's certificate and
          // the cluster-internal key, whose hash every node stores (the same record, so idempotent).
          const internal =
            agent === null
              ? undefined
              : recordFor(agent.internalKey, agent.internalKeySalt, "cluster-internal", "admin")
          // The internal key and the operator's first keys: stored once by whichever node starts first
          // (the same records on every node, so idempotent).
          // What the node records at its start, once: tried at once, and while its store refuses
          // (a full disk), again every second in the background, saying why — a refusal at start
          // killed the node (found by acp vortex, seed 1005: a restart on a full disk).
          const recordAtStart = (what: string, write: Omit<WriteOp, "requestId">) =>
            running.write([write]).pipe(
              Effect.catch((refused) =>
                Effect.logWarning(
                  `cannot record ${what} yet (${refused.reason}): ${refused.message}; trying again every second`,
                ).pipe(
                  Effect.andThen(
                    running
                      .write([write])
                      .pipe(Effect.retry({ schedule: Schedule.spaced("1 second") }), Effect.forkScoped),
                  ),
                ),
              ),
              Effect.asVoid,
            )
          const keys = [...(internal === undefined ? [] : [internal]), ...(config.keys ?? [])]
          for (const key of keys) {
            if (running.get("api-key", key.id) !== undefined) continue
            const bytes = new TextEncoder().encode(JSON.stringify(key.record))
            yield* recordAtStart(`API key ${key.id}`, {
              op: "put",
              kind: "api-key",
              id: key.id,
              value: bytes,
            })
          }
          // Every member's agent, as the decision log's membership says them (a node that joins is
          // reached once its membership is decided, without a restart here).
          const agents = new Map<string, { address: string; agentPort: number | undefined }>()
          running.watchMembers((members) => {
            agents.clear()
            for (const member of members.values())
              agents.set(member.id, { address: member.address, agentPort: member.agentPort })
          })
          const forwarding: Forwarding = {
            self: config.id,
            apiPort: config.apiPort,
            peers: agents,
            tls,
            apiKey: agent?.internalKey,
          }
          const services: Record<string, ServiceDefinition> = {
            api: {
              after: [],
              run: (ready) =>
                Layer.build(
                  Layer.mergeAll(
                    layerApiServer(config.apiPort, forwarding),
                    layerApiSocket(join(config.dataDir, "api.sock"), forwarding),
                  ).pipe(Layer.provide(Layer.succeed(Node, running))),
                ).pipe(Effect.andThen(ready), Effect.andThen(Effect.never)),
            },
            hypervisor: {
              after: ["api"],
              run: (ready) =>
                runHypervisor(
                  running,
                  { self: config.id, volumeDir: join(config.dataDir, "volumes") },
                  ready,
                ).pipe(
                  Effect.provide(LibvirtVmmLayer({ uri: config.hypervisor?.uri ?? "test:///default" })),
                  Effect.andThen(Effect.never),
                ),
            },
            storage: {
              after: ["api"],
              run: (ready) =>
                runStorage(running, ready).pipe(
                  Effect.provide(
                    NodeStorageLayer(
                      config.storage?.libvirt === undefined ? {} : { libvirtUri: config.storage.libvirt },
                    ),
                  ),
                  Effect.provide(
                    GaneshaSharesLayer({
                      runDir: join(config.dataDir, "nfs"),
                      ...(config.storage?.nfsBind === undefined ? {} : { bind: config.storage.nfsBind }),
                      ...(config.storage?.nfsPort === undefined ? {} : { port: config.storage.nfsPort }),
                    }),
                  ),
                ),
            },
            ...(agent === null
              ? {}
              : {
                  agent: {
                    after: ["api"],
                    run: (ready: Effect.Effect<void>) =>
                      startAgent({
                        address: config.address,
                        apiPort: config.apiPort,
                        ...agent,
                      }).pipe(
                        Effect.andThen(
                          Effect.logInfo("agent listening", { address: config.address, port: agent.port }),
                        ),
                        Effect.andThen(ready),
                        Effect.andThen(Effect.never),
                      ),
                  },
                }),
          }
          const encoder = new TextEncoder()
          for (const [name, service] of Object.entries(services)) {
            const spec = { subtype: name, node: config.id, enabled: true, after: service.after, settings: {} }
            const value = encoder.encode(JSON.stringify(spec))
            const id = `${config.id}.${name}`
            const stored = running.get("service", id)?.value
            if (stored != null && Buffer.from(stored).equals(value)) continue
            yield* recordAtStart(`service ${id}`, { op: "put", kind: "service", id, value })
          }
          // Each state change goes to the node's composition: it writes the service's meta, counts a
          // failing service against the health score, and its primary raises the alarm.
          yield* runFramework(services, ({ name, state, restarts, reason, lastError }) =>
            Effect.logInfo("service", {
              service: name,
              state,
              restarts,
              ...(reason === undefined ? {} : { reason }),
            }).pipe(
              Effect.andThen(
                running.serviceState({
                  name,
                  state,
                  restarts,
                  ...(lastError === undefined ? {} : { lastError }),
                }),
              ),
            ),
          )
        }),
      ).pipe(Effect.provide(Layer.merge(store, transport(start))))
    }),
  )

const nodeList = Command.make(
  "list",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      Effect.all([client.status(), client.decisions()]).pipe(
        Effect.flatMap(([view, log]) => {
          const rows = view.members.map((member) => ({
            id: member.id,
            state: member.state,
            primary: member.id === view.primary,
            // As the decision log's latest membership says: a voter, or a learner (follows, votes in nothing).
            role: log.voters.includes(member.id)
              ? "voter"
              : log.learners.includes(member.id)
                ? "learner"
                : "-",
            health: view.health.nodes[member.id]?.score ?? null,
          }))
          if (json) return Console.log(JSON.stringify(rows))
          return Console.log(
            `as ${view.node} sees them:\n${renderTable(
              ["NODE", "STATE", "PRIMARY", "ROLE", "HEALTH"],
              rows.map((row) => [
                row.id,
                row.state,
                row.primary ? "yes" : "",
                row.role,
                row.health === null ? "-" : String(row.health),
              ]),
            )}`,
          )
        }),
      ),
    ),
).pipe(Command.withDescription("List the cluster's nodes as one node sees them"))

const nodeShow = Command.make(
  "show",
  {
    id: Argument.String("id").pipe(Argument.withDescription("The node to show, e.g. n2")),
    dir: dirFlag,
    json: jsonFlag,
  },
  ({ id, dir, json }) =>
    withApi(dir, Option.some(id), (client) =>
      client.status().pipe(
        Effect.flatMap((view) => {
          if (json) return Console.log(JSON.stringify(view))
          return Console.log(
            [
              `node ${view.node} (incarnation ${view.incarnation})`,
              `  monitor: ${view.isPrimary ? "primary" : `follower of ${view.primary ?? "nobody"}`} in term ${view.term}${view.fenced ? ", FENCED" : ""}`,
              `  objects: ${view.entries}`,
              `  health:  ${view.health.cluster.score}/100${view.health.cluster.reasons.map((reason) => `\n    -${reason.points}: ${reason.reason}`).join("")}`,
              `  alarms:  ${view.alarms.length === 0 ? "none open" : view.alarms.map((alarm) => alarm.id).join(", ")}`,
              `  services:${view.services.length === 0 ? " none reported" : ""}`,
              ...(view.services.length === 0
                ? []
                : renderTable(
                    ["SERVICE", "STATE", "FOR", "RESTARTS", "LAST ERROR"],
                    view.services.map((service) => [
                      service.name,
                      service.state,
                      `${Math.round(service.forMs / 1000)} s`,
                      String(service.restarts),
                      service.lastError ?? "",
                    ]),
                  )
                    .split("\n")
                    .map((line) => `    ${line}`)),
            ].join("\n"),
          )
        }),
      ),
    ),
).pipe(
  Command.withDescription(
    "Show one node: incarnation, monitor role and term, objects, health, alarms, services",
  ),
)

export const nodeCommand = Command.make("node").pipe(
  Command.withDescription("The cluster's nodes: list, show, and run one"),
  Command.withSubcommands([
    nodeList,
    nodeShow,
    nodeJoin,
    nodePromote,
    nodeRemove,
    Command.make(
      "run",
      {
        config: Flag.String("config").pipe(
          Flag.withDescription("The node's JSON config file (written by `acp cluster up`)"),
        ),
        bench: Flag.Boolean("bench").pipe(
          Flag.withDescription("Answer `acp bench sync` over the IPC channel of the process that started it"),
          Flag.withDefault(false),
        ),
      },
      ({ config, bench }) =>
        Effect.sync(() => {
          // The log goes to a file on the node's disk; when that disk is full a log line cannot be
          // written, and must not kill the node (an unhandled stream error would): it is dropped.
          for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})
        }).pipe(
          Effect.andThen(runNode(config, bench)),
          Effect.provide(Logger.layer([Logger.consoleJson])),
          Effect.catchTag("ConfigError", (error: ConfigError) =>
            Console.error(`acp node run: ${error.message}`).pipe(
              Effect.andThen(Effect.sync(() => (process.exitCode = 2))),
            ),
          ),
        ),
    ).pipe(
      Command.withDescription(
        `Run a node in the foreground (datagrams carry ${envelopeOverhead} bytes of authentication)`,
      ),
    ),
  ]),
)
