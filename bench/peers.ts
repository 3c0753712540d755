/**
 * The peers ACP's sync is measured against, run from `../shared/peers/` (etcd, corosync CPG,
 * NATS), on the same machine, one after another, each with one throughput run of the same
 * number of 200-byte updates reaching all 3 members. The peers' scripts are copied to a work
 * directory (the originals are read-only) and set up there once (`setup.sh`: Debian packages,
 * their npm clients, corosync's C client).
 */
import { spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"

export const peerNames = ["etcd", "corosync", "nats"] as const
export type PeerName = (typeof peerNames)[number]

export interface PeerFigure {
  readonly name: PeerName
  readonly updatesPerSec: number | null
  readonly detail: string
}

const run = (cwd: string, command: string, timeoutSec: number) =>
  spawnSync("bash", ["-c", command], { cwd, encoding: "utf8", timeout: timeoutSec * 1000 })

/** The RESULT line a peer script prints, parsed. */
const resultOf = (stdout: string, name: string): Record<string, unknown> | undefined => {
  const line = stdout.split("\n").find((candidate) => candidate.startsWith(`RESULT ${name}`))
  if (line === undefined) return undefined
  try {
    return JSON.parse(line.slice(line.indexOf("{"))) as Record<string, unknown>
  } catch {
    return undefined
  }
}

const median = (result: Record<string, unknown> | undefined, field: string): number | null => {
  const value = (result?.[field] as { median?: unknown } | undefined)?.median
  return typeof value === "number" && Number.isFinite(value) ? value : null
}

/** Copies the peers' folder and sets it up if its servers or clients are missing. */
export const preparePeers = (source: string, work: string, progress: (line: string) => void): string => {
  if (!existsSync(join(source, "setup.sh")))
    throw new Error(`no peers at ${source} (expected setup.sh and run-*.sh there; pass --peers-dir)`)
  const copy = join(work, "peers")
  if (!existsSync(copy)) {
    mkdirSync(work, { recursive: true })
    cpSync(source, copy, { recursive: true })
    run(copy, "chmod -R u+w .", 10)
  }
  const installed =
    run(copy, "command -v etcd && command -v nats-server && command -v corosync", 10).status === 0 &&
    existsSync(join(copy, "node_modules", "nats")) &&
    existsSync(join(copy, "bin", "cpgfan"))
  if (!installed) {
    progress("setting up the peers (setup.sh: Debian packages, npm clients, cpgfan)…")
    const setup = run(copy, "./setup.sh", 900)
    if (setup.status !== 0)
      throw new Error(`peers' setup.sh failed: ${(setup.stderr || setup.stdout).slice(-800)}`)
  }
  return copy
}

export const runPeer = (dir: string, name: PeerName, updates: number): PeerFigure => {
  switch (name) {
    case "etcd": {
      const n = Math.min(updates, 50_000)
      const out = run(
        dir,
        `trap './etcd-cluster.sh stop >/dev/null 2>&1' EXIT; ./etcd-cluster.sh start >/dev/null && timeout 300 node etcd-e2e.mjs --mode=tput --n=${n} --conc=256 --runs=1 --maxsec=60`,
        400,
      )
      const rate = median(resultOf(out.stdout, "etcd-e2e-tput"), "e2ePerSec")
      return { name, updatesPerSec: rate, detail: `etcd 3 members, put on m1, watchers on m2+m3, ${n} puts` }
    }
    case "nats": {
      const cluster = "nats://127.0.0.1:24221,nats://127.0.0.1:24222,nats://127.0.0.1:24223"
      const out = run(
        dir,
        `trap './nats-cluster.sh stop >/dev/null 2>&1' EXIT; ./nats-cluster.sh start3 >/dev/null && timeout 300 node nats-bench.mjs --mode=tput --n=${updates} --size=200 --runs=1 --maxsec=60 --subsrv=${cluster}`,
        400,
      )
      const rate = median(resultOf(out.stdout, "nats-tput"), "e2ePerSec")
      return {
        name,
        updatesPerSec: rate,
        detail: `NATS 3-server cluster, one subscriber per server, ${updates} messages`,
      }
    }
    case "corosync": {
      const out = run(
        dir,
        `trap './corosync-ns.sh down >/dev/null 2>&1' EXIT; timeout 60 ./corosync-ns.sh up crypto >/dev/null && timeout 300 node corosync-bench.mjs --mode=tput --n=${updates} --size=200 --runs=1 --maxsec=60 --label=-crypto`,
        400,
      )
      const rate = median(resultOf(out.stdout, "corosync-cpg-tput-crypto"), "e2ePerSec")
      return {
        name,
        updatesPerSec: rate,
        detail: `corosync CPG (aes256+sha256, as Proxmox), 3 nodes in namespaces, ${updates} messages`,
      }
    }
  }
}
