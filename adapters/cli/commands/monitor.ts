/**
 * `acp health`, `acp monitor status` and `acp alarm …`: the monitor's view of the cluster, as
 * one node's `/v1/status` gives it (a typed schema), and acknowledging an alarm.
 */
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { renderTable } from "../render.ts"
import { dirFlag, jsonFlag, nodeFlag, withApi } from "../target.ts"

export const healthCommand = Command.make(
  "health",
  { dir: dirFlag, node: nodeFlag, json: jsonFlag },
  ({ dir, node, json }) =>
    withApi(dir, node, (client) =>
      client.status().pipe(
        Effect.flatMap((view) => {
          if (json) return Console.log(JSON.stringify(view.health))
          const reasons = view.health.cluster.reasons.map((reason) => `  -${reason.points}: ${reason.reason}`)
          return Console.log(
            [`health ${view.health.cluster.score}/100 (as ${view.node} sees it)`, ...reasons].join("\n"),
          )
        }),
      ),
    ),
).pipe(Command.withDescription("The cluster's health score, with every reason it is not 100"))

export const monitorCommand = Command.make("monitor").pipe(
  Command.withDescription("The monitor: who is primary, in which term"),
  Command.withSubcommands([
    Command.make("status", { dir: dirFlag, node: nodeFlag, json: jsonFlag }, ({ dir, node, json }) =>
      withApi(dir, node, (client) =>
        client.status().pipe(
          Effect.flatMap((view) => {
            if (json)
              return Console.log(
                JSON.stringify({
                  node: view.node,
                  primary: view.primary,
                  term: view.term,
                  fenced: view.fenced,
                  members: view.members,
                }),
              )
            return Console.log(
              `primary: ${view.primary ?? "none"} (term ${view.term}), as ${view.node} sees it${view.fenced ? "; this node is FENCED" : ""}\n` +
                renderTable(
                  ["MEMBER", "STATE"],
                  view.members.map((member) => [member.id, member.state]),
                ),
            )
          }),
        ),
      ),
    ).pipe(Command.withDescription("Show the primary monitor and the members as one node sees them")),
    Command.make("log", { dir: dirFlag, node: nodeFlag, json: jsonFlag }, ({ dir, node, json }) =>
      withApi(dir, node, (client) =>
        client.decisions().pipe(
          Effect.flatMap((view) => {
            if (json) return Console.log(JSON.stringify(view))
            const describe = (body: (typeof view.recent)[number]["body"]) =>
              body._tag === "Command"
                ? JSON.stringify(body.command)
                : body._tag === "Membership"
                  ? `voters ${body.membership.voters.join(",")}; learners ${body.membership.learners.join(",") || "none"}`
                  : "no-op (a new primary's first entry)"
            return Console.log(
              [
                `term ${view.term}, primary ${view.leader ?? "none"}${view.ready ? " (deciding)" : ""}; commit ${view.commit}, applied ${view.applied}, last ${view.last}, snapshot at ${view.snapshot}`,
                `voters: ${view.voters.join(", ")}; learners: ${view.learners.join(", ") || "none"}`,
                `placements: ${Object.keys(view.decided.placements).length}, grants: ${Object.values(view.decided.pools).reduce((sum, pool) => sum + Object.keys(pool).length, 0)}, last epoch ${view.decided.epoch}`,
                renderTable(
                  ["INDEX", "TERM", "ENTRY"],
                  view.recent.map((entry) => [String(entry.index), String(entry.term), describe(entry.body)]),
                ),
                // Where each HA system runs, as decided, with its fencing epoch.
                ...(Object.keys(view.decided.placements).length === 0
                  ? []
                  : [
                      renderTable(
                        ["SYSTEM", "NODE", "EPOCH"],
                        Object.entries(view.decided.placements)
                          .sort(([left], [right]) => (left < right ? -1 : 1))
                          .map(([system, placement]) => [system, placement.node, String(placement.epoch)]),
                      ),
                    ]),
              ].join("\n"),
            )
          }),
        ),
      ),
    ).pipe(
      Command.withDescription(
        "The decision log: term, commit index, voters and learners, the last decisions",
      ),
    ),
  ]),
)

export const alarmCommand = Command.make("alarm").pipe(
  Command.withDescription("Alarms raised by the primary monitor"),
  Command.withSubcommands([
    Command.make("list", { dir: dirFlag, node: nodeFlag, json: jsonFlag }, ({ dir, node, json }) =>
      withApi(dir, node, (client) =>
        client.status().pipe(
          Effect.flatMap(({ alarms }) => {
            if (json) return Console.log(JSON.stringify(alarms))
            if (alarms.length === 0) return Console.log("no open alarms")
            return Console.log(
              renderTable(
                ["ALARM", "SEVERITY", "STATE", "MESSAGE"],
                alarms.map((alarm) => [alarm.id, alarm.severity, alarm.state, alarm.message]),
              ),
            )
          }),
        ),
      ),
    ).pipe(Command.withDescription("List the open alarms")),
    Command.make(
      "ack",
      {
        id: Argument.String("id").pipe(Argument.withDescription("The alarm, e.g. node-unreachable.n2")),
        by: Flag.String("by").pipe(
          Flag.withDescription("Who acknowledges it"),
          Flag.withDefault(process.env.USER ?? "operator"),
        ),
        dir: dirFlag,
        node: nodeFlag,
      },
      ({ id, by, dir, node }) =>
        withApi(dir, node, (client) =>
          client.alarms
            .acknowledge({ params: { id }, payload: { by } })
            .pipe(Effect.andThen(Console.log(`alarm ${id} acknowledged by ${by}`))),
        ),
    ).pipe(Command.withDescription("Acknowledge an open alarm (it stays until its condition clears)")),
  ]),
)
