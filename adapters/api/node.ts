/** The running node, as the API's handlers and middleware reach it. */
import { Context } from "effect"
import type { RunningNode } from "../node/node.ts"

export class Node extends Context.Service<Node, RunningNode>()("acp/adapters/api/Node") {}
