/**
 * A node's configuration file (JSON), validated before anything starts: a bad config is a
 * `ConfigError` that names the file and every offending field, and nothing is touched.
 */

import { readFileSync } from "node:fs"
import { Effect, Result, Schema, SchemaIssue } from "effect"
import { defaultHypervisorTimings } from "../../core/hypervisor/hypervisor.ts"
import { ApiKeySpec } from "../../core/model/access.ts"
import { NodeId } from "../../core/model/ids.ts"
import { IpAddress, Name, Port } from "../../core/model/quantities.ts"

const Member = Schema.Struct({
  id: NodeId,
  address: IpAddress,
  port: Port,
  domain: Name,
  relay: Schema.Boolean,
  /** The member's agent, through which other nodes' APIs reach it. */
  agentPort: Schema.optionalKey(Port),
  /** For a relay: the port of its TLS relay link. */
  relayPort: Schema.optionalKey(Port),
  /**
   * false: it joined as a learner (it follows the decision log and votes in nothing until the
   * log promotes it). Absent: it votes, as the cluster's first members do.
   */
  voting: Schema.optionalKey(Schema.Boolean),
})

export const NodeConfig = Schema.Struct({
  id: NodeId,
  /** Shared by every node of the cluster; datagrams of another cluster are rejected. */
  cluster: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 0xffffffff })),
  domain: Name,
  relay: Schema.Boolean,
  address: IpAddress,
  port: Port,
  /** The domain's IPv4 multicast group, or null for a unicast peer list. */
  group: Schema.NullOr(
    Schema.String.check(
      Schema.isPattern(/^2(?:2[4-9]|3\d)\.\d{1,3}\.\d{1,3}\.\d{1,3}$/, {
        message: "Expected an IPv4 multicast group (224.0.0.0/4)",
      }),
    ),
  ),
  groupPort: Port,
  apiPort: Port,
  dataDir: Schema.String.check(Schema.isMinLength(1)),
  /** The cluster key, 32 bytes as hex: it authenticates every datagram. */
  keyHex: Schema.String.check(
    Schema.isPattern(/^[0-9a-f]{64}$/, { message: "Expected 64 hex digits (a 32-byte key)" }),
  ),
  /** Encrypt datagrams too (AES-256-GCM), not only authenticate them. */
  encrypt: Schema.Boolean,
  mtu: Schema.Int.check(Schema.isBetween({ minimum: 576, maximum: 9000 })),
  synchronous: Schema.Literals(["FULL", "NORMAL"]),
  members: Schema.Array(Member).check(Schema.isMinLength(1)),
  /** The TLS agent on the node's address, or null to run without one. */
  agent: Schema.NullOr(
    Schema.Struct({
      port: Port,
      certFile: Schema.String,
      keyFile: Schema.String,
      caFile: Schema.String,
      /** The cluster-internal admin key nodes use with each other's agents, and its salt. */
      internalKey: Schema.String.check(
        Schema.isPattern(/^acp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/, { message: "Expected an acp_ key" }),
      ),
      internalKeySalt: Schema.String.check(
        Schema.isPattern(/^[0-9a-f]{32}$/, { message: "Expected 16 bytes of hex" }),
      ),
    }),
  ),
  /**
   * API keys every node stores at start, if absent: the operator's first admin key (`acp cluster
   * up`/`init` print the key once and keep it in a 0600 file; only its salted hash is here).
   */
  keys: Schema.optionalKey(
    Schema.Array(
      Schema.Struct({
        id: Schema.String.check(
          Schema.isPattern(/^k-[0-9a-f]{8}$/, { message: "Expected k-<8 hex digits>" }),
        ),
        record: ApiKeySpec,
      }),
    ),
  ),
  /**
   * The node's watchdog (`adapters/node/watchdog.ts`): a process that kills this one once it has
   * not been fed for this long — shorter than the hypervisor's `haFenceMs`, so a stalled node
   * never wakes up with HA systems the primary has moved. Absent: no watchdog.
   */
  watchdogMs: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 500, maximum: 600_000 }))),
  /**
   * The storage service: where its NFS server (nfs-ganesha) listens (absent: port 2049, every
   * address), and whether its dir, fs and netfs pools go through libvirt's storage driver at
   * this URI (`virsh pool-list` shows them as `acp-<id>`; absent: ACP manages their files itself).
   */
  storage: Schema.optionalKey(
    Schema.Struct({
      libvirt: Schema.optionalKey(
        Schema.String.check(
          Schema.isPattern(/^[a-z0-9+]+:\/\//, { message: "Expected a libvirt URI such as qemu:///system" }),
        ),
      ),
      nfsBind: Schema.optionalKey(Schema.String),
      nfsPort: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65_535 }))),
    }),
  ),
  /** The hypervisor service: which libvirt to drive. Absent: libvirt's built-in test driver. */
  hypervisor: Schema.optionalKey(
    Schema.Struct({
      uri: Schema.String.check(
        Schema.isPattern(/^[a-z0-9+]+:\/\//, { message: "Expected a libvirt URI such as qemu:///system" }),
      ),
      /** How long without a primary's contact before this node stops its HA systems. */
      haFenceMs: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 500, maximum: 600_000 }))),
      stopTimeoutMs: Schema.optionalKey(
        Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 })),
      ),
    }),
  ),
})
export type NodeConfig = typeof NodeConfig.Type

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  path: Schema.String,
  message: Schema.String,
}) {}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

export const parseConfig = (text: string, path: string): Result.Result<NodeConfig, ConfigError> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return Result.fail(new ConfigError({ path, message: `${path} is not JSON: ${(error as Error).message}` }))
  }
  const decoded = Schema.decodeUnknownResult(NodeConfig)(json, { errors: "all", onExcessProperty: "error" })
  if (Result.isFailure(decoded)) {
    const issues = formatter(decoded.failure.issue).issues.map(
      (issue) =>
        `${(issue.path ?? []).map((segment) => String(typeof segment === "object" ? segment.key : segment)).join(".") || "(root)"}: ${issue.message}`,
    )
    return Result.fail(new ConfigError({ path, message: `${path}: ${issues.join("; ")}` }))
  }
  const config = decoded.success
  if (!config.members.some((member) => member.id === config.id)) {
    return Result.fail(
      new ConfigError({ path, message: `${path}: members: this node (${config.id}) is not among them` }),
    )
  }
  const haFenceMs = config.hypervisor?.haFenceMs ?? defaultHypervisorTimings.haFenceMs
  if (config.watchdogMs !== undefined && config.watchdogMs + 300 > haFenceMs)
    return Result.fail(
      new ConfigError({
        path,
        message: `${path}: watchdogMs: ${config.watchdogMs} ms must be at least 300 ms under the hypervisor's haFenceMs (${haFenceMs} ms): a stalled node must be gone before the primary moves its HA systems`,
      }),
    )
  return Result.succeed(config)
}

export const loadConfig = (path: string) =>
  Effect.gen(function* () {
    const text = yield* Effect.try({
      try: () => readFileSync(path, "utf8"),
      catch: (error) =>
        new ConfigError({ path, message: `cannot read ${path}: ${(error as Error).message}` }),
    })
    return yield* Effect.fromResult(parseConfig(text, path))
  })
