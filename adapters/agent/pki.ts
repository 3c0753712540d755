/**
 * The cluster's PKI, made with `openssl` (the tool every Linux host has, and what Proxmox VE
 * uses for its cluster CA): one CA per cluster, and certificates it signs for each node (server
 * and client use, with the node's address) and for operators (client use). Keys are EC P-256
 * and written with mode 0600.
 */
import { spawnSync } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Schema } from "effect"

export class PkiError extends Schema.TaggedError<PkiError>()("PkiError", {
  step: Schema.String,
  message: Schema.String,
}) {}

const openssl = (step: string, args: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    const result = spawnSync("openssl", args, { encoding: "utf8" })
    if (result.error !== undefined)
      return Effect.fail(new PkiError({ step, message: `openssl not runnable: ${result.error.message}` }))
    if (result.status !== 0) return Effect.fail(new PkiError({ step, message: result.stderr.trim() }))
    return Effect.void
  })

/** A new EC P-256 private key, readable by its owner only. */
const newKey = (step: string, file: string) =>
  Effect.andThen(
    openssl(step, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]),
    Effect.sync(() => chmodSync(file, 0o600)),
  )

export interface Issued {
  readonly certFile: string
  readonly keyFile: string
}

export const caFiles = (dir: string) => ({ certFile: join(dir, "ca.crt"), keyFile: join(dir, "ca.key") })

/** Creates the cluster CA in `dir`, unless one is already there. */
export const ensureCa = (dir: string, clusterName: string) =>
  Effect.gen(function* () {
    const files = caFiles(dir)
    if (existsSync(files.certFile) && existsSync(files.keyFile)) return files
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    yield* newKey("CA key", files.keyFile)
    yield* openssl("CA certificate", [
      "req",
      "-x509",
      "-new",
      "-key",
      files.keyFile,
      "-sha256",
      "-days",
      "3650",
      "-subj",
      `/CN=ACP cluster CA ${clusterName}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE,pathlen:0",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-out",
      files.certFile,
    ])
    return files
  })

/** Issues a certificate signed by the CA in `dir`: for a node (server and client, with its address) or an operator (client). */
export const issue = (
  dir: string,
  name: string,
  use: { readonly kind: "node"; readonly address: string } | { readonly kind: "client" },
) =>
  Effect.gen(function* () {
    const ca = caFiles(dir)
    const keyFile = join(dir, `${name}.key`)
    const certFile = join(dir, `${name}.crt`)
    const csrFile = join(dir, `${name}.csr`)
    const extFile = join(dir, `${name}.ext`)
    const extensions =
      use.kind === "node"
        ? [
            `subjectAltName=IP:${use.address},DNS:${name}`,
            "extendedKeyUsage=serverAuth,clientAuth",
            "keyUsage=critical,digitalSignature",
          ]
        : ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature"]
    writeFileSync(extFile, `${extensions.join("\n")}\n`)
    yield* newKey(`${name} key`, keyFile)
    yield* openssl(`${name} request`, [
      "req",
      "-new",
      "-key",
      keyFile,
      "-subj",
      `/CN=${name}`,
      "-out",
      csrFile,
    ])
    yield* openssl(`${name} certificate`, [
      "x509",
      "-req",
      "-in",
      csrFile,
      "-CA",
      ca.certFile,
      "-CAkey",
      ca.keyFile,
      "-CAcreateserial",
      "-days",
      "825",
      "-sha256",
      "-extfile",
      extFile,
      "-out",
      certFile,
    ])
    rmSync(csrFile, { force: true })
    rmSync(extFile, { force: true })
    return { certFile, keyFile } satisfies Issued
  })
