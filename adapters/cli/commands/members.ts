/**
 * Membership on a running cluster, through the decision log (one change at a time): `acp node
 * join` enrols a new node (its certificate and config) and adds it as a learner — it follows the
 * log and votes in nothing — without restarting anyone; `acp node promote` makes a learner a
 * voter; `acp node remove` takes a member out. Each change is proposed on the primary and
 * answered once a majority of the voters holds it.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs"
import { join, resolve } from "node:path"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { MembershipChange } from "../../../core/decision/state.ts"
import { issue, type PkiError } from "../../agent/pki.ts"
import type { NodeConfig } from "../../node/config.ts"
import { CliError, type ClusterState, statePath, withClient } from "../client.ts"
import { dirFlag, jsonFlag, nodeFlag, withNode } from "../target.ts"

type NodeConfigFile = (typeof NodeConfig)["Encoded"]

/**
 * Proposes `change` on the primary (asked of the node named, or the first): answered once it is
 * committed, with the membership then in force.
 */
const changeMembers = (
  dir: Option.Option<string>,
  node: Option.Option<string>,
  change: MembershipChange,
  json: boolean,
) =>
  Effect.gen(function* () {
    // The primary decides: asked through the node named (or the first, or the remote agent that
    // ACP_REMOTE names), which forwards it there as the same caller.
    const membership = yield* withNode(dir, node, (asked) =>
      Effect.gen(function* () {
        const primary = yield* withClient(asked, (client) =>
          client.status().pipe(Effect.map((view) => view.primary)),
        )
        return yield* withClient({ ...asked, ...(primary === null ? {} : { via: primary }) }, (client) =>
          client.members({ payload: change }),
        )
      }),
    )
    if (json) return yield* Console.log(JSON.stringify(membership))
    yield* Console.log(
      `voters: ${membership.voters.join(", ")}; learners: ${membership.learners.length === 0 ? "none" : membership.learners.join(", ")}`,
    )
  })

const changeFlags = { dir: dirFlag, node: nodeFlag, json: jsonFlag }
const memberArgument = Argument.String("id").pipe(Argument.withDescription("The member, e.g. n4"))

export const nodePromote = Command.make(
  "promote",
  { id: memberArgument, ...changeFlags },
  ({ id, dir, node, json }) => changeMembers(dir, node, { _tag: "Promote", node: id }, json),
).pipe(
  Command.withDescription("Make a learner a voter (one voter changes at a time, through the decision log)"),
)

export const nodeRemove = Command.make(
  "remove",
  { id: memberArgument, ...changeFlags },
  ({ id, dir, node, json }) => changeMembers(dir, node, { _tag: "Remove", node: id }, json),
).pipe(
  Command.withDescription(
    "Take a member out of the cluster: it votes and follows no more (stop it afterwards); a primary removed steps down once the change is committed",
  ),
)

/** The highest of `values`, plus one: a port free beside the members that share a host. */
const nextPort = (values: ReadonlyArray<number | undefined>, fallback: number) => {
  const used = values.filter((value): value is number => value !== undefined)
  return used.length === 0 ? fallback : Math.max(...used) + 1
}

export const nodeJoin = Command.make(
  "join",
  {
    dir: Flag.String("dir").pipe(
      Flag.withDescription(
        "The directory `acp cluster init` (or `acp cluster up`) wrote: it holds the CA and the nodes' configs",
      ),
      Flag.withDefault("acp-cluster"),
    ),
    id: Flag.String("id").pipe(Flag.withDescription("The new node's id")),
    address: Flag.String("address").pipe(Flag.withDescription("The new node's IPv4 address")),
    domain: Flag.String("domain").pipe(
      Flag.withDescription("Its L2 domain (default: the first node's)"),
      Flag.optional,
    ),
    dataDir: Flag.String("data-dir").pipe(
      Flag.withDescription(
        "Its data directory on its host (default: beside the others for a local cluster, else /var/lib/acp)",
      ),
      Flag.optional,
    ),
    node: nodeFlag,
    json: jsonFlag,
  },
  ({ dir, id, address, domain, dataDir, node, json }) =>
    Effect.gen(function* () {
      const home = resolve(dir)
      if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(id))
        return yield* new CliError({ message: `--id ${id}: expected 1-63 of a-z, 0-9, '.', '_', '-'` })
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address))
        return yield* new CliError({ message: `--address ${address}: expected an IPv4 address` })
      if (!existsSync(join(home, "pki", "ca.key")))
        return yield* new CliError({
          message: `${home} holds no cluster CA: give the directory \`acp cluster init\` wrote`,
        })
      const local = existsSync(statePath(home))
      const configs = readdirSync(home, { withFileTypes: true })
        .filter((entry) => entry.isDirectory() && existsSync(join(home, entry.name, "config.json")))
        .map(
          (entry) =>
            JSON.parse(readFileSync(join(home, entry.name, "config.json"), "utf8")) as NodeConfigFile,
        )
      const others = configs.filter((config) => config.id !== id)
      const first = others[0]
      if (first === undefined) return yield* new CliError({ message: `${home} has no node configs` })
      const ownPath = join(home, id, "config.json")
      let config = configs.find((candidate) => candidate.id === id)
      if (config === undefined) {
        if (first.members.some((member) => member.id === id))
          return yield* new CliError({ message: `${id} is already a member` })
        const pkiFailed = (error: PkiError) => new CliError({ message: `${error.step}: ${error.message}` })
        yield* issue(join(home, "pki"), id, { kind: "node", address }).pipe(Effect.mapError(pkiFailed))
        // Members on the same host (a local cluster) each listen on their own ports.
        const sameHost = first.members.filter((member) => member.address === address)
        const agent = first.agent!
        const agentPort =
          sameHost.length === 0
            ? agent.port
            : nextPort(
                sameHost.map((member) => member.agentPort),
                agent.port,
              )
        const member = {
          id,
          address,
          port:
            sameHost.length === 0
              ? first.port
              : nextPort(
                  sameHost.map((member) => member.port),
                  first.port,
                ),
          domain: Option.getOrElse(domain, () => first.domain),
          relay: false,
          agentPort,
          voting: false,
        }
        const hostDir = Option.getOrElse(dataDir, () => (local ? join(home, id) : "/var/lib/acp")).replaceAll(
          "{id}",
          id,
        )
        const localDir = join(home, id)
        mkdirSync(join(localDir, "pki"), { recursive: true, mode: 0o700 })
        for (const file of ["ca.crt", `${id}.crt`, `${id}.key`])
          copyFileSync(join(home, "pki", file), join(localDir, "pki", file))
        chmodSync(join(localDir, "pki", `${id}.key`), 0o600)
        config = {
          ...first,
          id,
          address,
          port: member.port,
          domain: member.domain,
          relay: false,
          apiPort:
            sameHost.length === 0
              ? first.apiPort
              : nextPort(
                  others.map((other) => other.apiPort),
                  first.apiPort,
                ),
          dataDir: hostDir,
          // The members it starts from: the others as their configs say, and itself as a learner.
          members: [...first.members.filter((other) => other.id !== id), member],
          agent: {
            ...agent,
            port: agentPort,
            certFile: join(hostDir, "pki", `${id}.crt`),
            keyFile: join(hostDir, "pki", `${id}.key`),
            caFile: join(hostDir, "pki", "ca.crt"),
          },
        }
        writeFileSync(ownPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
        if (local) {
          const state = JSON.parse(readFileSync(statePath(home), "utf8")) as ClusterState
          const nodes = [
            ...state.nodes,
            { id, pid: 0, apiPort: config.apiPort, configPath: ownPath, logPath: join(hostDir, "node.log") },
          ]
          writeFileSync(statePath(home), `${JSON.stringify({ ...state, nodes }, null, 2)}\n`)
        }
        yield* Console.log(
          local
            ? `${id} enrolled: start it with acp node run --config ${ownPath}`
            : `${id} (${address}) enrolled: copy ${localDir}/ to ${hostDir}/ on its host and start it with acp node run --config ${join(hostDir, "config.json")}`,
        )
      }
      const self = config.members.find((member) => member.id === id)!
      // The running cluster learns it through the log: no member restarts.
      yield* changeMembers(
        Option.some(home),
        node,
        {
          _tag: "AddLearner",
          node: id,
          address: {
            address: self.address,
            port: self.port,
            domain: self.domain,
            relay: self.relay,
            ...(self.agentPort === undefined ? {} : { agentPort: self.agentPort }),
          },
        },
        json,
      ).pipe(
        Effect.mapError(
          (error) =>
            new CliError({
              message: `${id} is enrolled, but the cluster did not take it as a learner: ${error.message}; run this again once it can be reached (ACP_REMOTE names a node's agent)`,
            }),
        ),
      )
    }),
).pipe(
  Command.withDescription(
    "Enrol a new node (its certificate and config) and add it to the running cluster as a learner, through the decision log: no member restarts; `acp node promote` makes it a voter",
  ),
)
