/**
 * The Debian packages ACP needs on a host, and putting them there: which package each part
 * needs and why, which of them dpkg says are missing, and `apt-get install` of those (as root,
 * or through `sudo -n`). Nothing is installed that is already there, so a warm machine runs no
 * apt at all. Every failure says which packages and which command would fix it.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { Schema } from "effect"

export interface Requirement {
  readonly package: string
  /** What needs it, in words an operator reads in a refusal. */
  readonly neededBy: string
}

/** What a node needs to run every service it has today. */
export const runRequirements: ReadonlyArray<Requirement> = [
  { package: "libvirt0", neededBy: "the hypervisor, libvirt through FFI" },
  { package: "qemu-utils", neededBy: "the storage service: qemu-img" },
]

/** What the test suite needs beyond that: real QEMU, namespaces, openssl, promtool. */
export const testRequirements: ReadonlyArray<Requirement> = [
  ...runRequirements,
  { package: "iproute2", neededBy: "the namespace tests: ip netns" },
  { package: "procps", neededBy: "the cluster tests: pgrep" },
  { package: "util-linux", neededBy: "the QEMU test: setpriv" },
  { package: "sqlite3", neededBy: "the store tests" },
  { package: "openssl", neededBy: "the agent tests: openssl s_client" },
  { package: "libvirt-clients", neededBy: "the QEMU test: virsh" },
  { package: "libvirt-daemon", neededBy: "the QEMU test: a session daemon" },
  { package: "libvirt-daemon-driver-qemu", neededBy: "the QEMU test" },
  { package: "qemu-system-x86", neededBy: "the QEMU test: TCG" },
  { package: "btrfs-progs", neededBy: "the btrfs storage test" },
  { package: "nfs-ganesha", neededBy: "the NFS share test: the server" },
  { package: "nfs-ganesha-vfs", neededBy: "the NFS share test: its VFS backend" },
  { package: "libnfs-utils", neededBy: "the NFS share test: a userspace client" },
  { package: "prometheus", neededBy: "the metrics test: promtool check metrics" },
  { package: "faketime", neededBy: "the fault harness: stepped wall clocks (libfaketime)" },
]

export class PackagesMissing extends Schema.TaggedError<PackagesMissing>()("PackagesMissing", {
  packages: Schema.Array(Schema.String),
  message: Schema.String,
}) {}

const hasCommand = (command: string) =>
  spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" }).status === 0

/** The packages of `requirements` that dpkg does not list as installed; all of them off Debian. */
export const missingPackages = (requirements: ReadonlyArray<Requirement>): ReadonlyArray<Requirement> => {
  if (!hasCommand("dpkg-query")) return requirements
  const names = requirements.map((requirement) => requirement.package)
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
  const format = "${Package} ${db:Status-Status}"
  const listed = spawnSync("dpkg-query", ["-W", `-f=${format}\n`, ...names], {
    encoding: "utf8",
  })
  const installed = new Set(
    listed.stdout
      .split("\n")
      .filter((line) => line.endsWith(" installed"))
      .map((line) => line.split(" ")[0]!.split(":")[0]!),
  )
  return requirements.filter((requirement) => !installed.has(requirement.package))
}

export const describeMissing = (missing: ReadonlyArray<Requirement>) =>
  missing.map((requirement) => `${requirement.package} (for ${requirement.neededBy})`).join(", ")

export const installCommand = (missing: ReadonlyArray<Requirement>) =>
  `apt-get install -y --no-install-recommends ${missing.map((requirement) => requirement.package).join(" ")}`

/**
 * Installs what is missing with apt-get: directly as root, else through `sudo -n` (never a
 * password prompt). Returns the packages it installed; fails naming what is missing and the
 * command that would install it.
 */
export const installMissing = (
  requirements: ReadonlyArray<Requirement>,
  say: (line: string) => void,
): ReadonlyArray<string> | PackagesMissing => {
  const missing = missingPackages(requirements)
  if (missing.length === 0) return []
  const names = missing.map((requirement) => requirement.package)
  const refuse = (why: string) =>
    new PackagesMissing({
      packages: names,
      message: `missing ${describeMissing(missing)}; ${why}`,
    })
  if (!hasCommand("apt-get")) return refuse("this host has no apt-get: install them with its package manager")
  const root = process.getuid?.() === 0
  if (!root && !hasCommand("sudo")) return refuse(`run as root: ${installCommand(missing)}`)
  const prefix = root ? [] : ["sudo", "-n"]
  const run = (args: ReadonlyArray<string>) => {
    const [command, ...rest] = [...prefix, ...args]
    return spawnSync(command!, rest, {
      encoding: "utf8",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      stdio: ["ignore", "pipe", "pipe"],
    })
  }
  say(`installing ${names.join(" ")} (apt-get, as ${root ? "root" : "sudo"})`)
  const update = run(["apt-get", "update", "-qq"])
  if (update.status !== 0) return refuse(`apt-get update failed: ${lastLine(update.stderr)}`)
  const install = run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...names])
  if (install.status !== 0)
    return refuse(`${[...prefix, installCommand(missing)].join(" ")} failed: ${lastLine(install.stderr)}`)
  const still = missingPackages(missing)
  if (still.length > 0) return refuse(`apt-get finished, yet dpkg does not list ${describeMissing(still)}`)
  return names
}

const lastLine = (text: string | null) =>
  (text ?? "")
    .trim()
    .split("\n")
    .filter((line) => line !== "")
    .at(-1) ?? "no output"

/** What a node needs to run real guests through libvirt's QEMU driver embedded in it (`cluster up --hypervisor qemu`). */
export const qemuRequirements: ReadonlyArray<Requirement> = [
  ...runRequirements,
  { package: "libvirt-daemon-driver-qemu", neededBy: "the embedded QEMU driver" },
  { package: "qemu-system-x86", neededBy: "QEMU (TCG where there is no KVM)" },
]

/**
 * The user and group libvirt's QEMU driver, run by root, parses as its built-in default before
 * it reads its config, whatever that names. Debian's libvirt-daemon-system makes them; ACP does
 * not install that package (it starts a system daemon no local cluster needs).
 */
export const qemuAccount = "libvirt-qemu"

const listed = (file: string, name: string) =>
  existsSync(file) &&
  readFileSync(file, "utf8")
    .split("\n")
    .some((line) => line.startsWith(`${name}:`))

export const hasQemuAccount = (): boolean =>
  listed("/etc/passwd", qemuAccount) && listed("/etc/group", qemuAccount)

/** Makes the libvirt-qemu user and group where root runs this and they are missing; says what it did, or why it could not. */
export const ensureQemuAccount = (): { readonly made: boolean } | { readonly failed: string } => {
  if (hasQemuAccount()) return { made: false }
  if (process.getuid?.() !== 0)
    return { failed: `the user and group ${qemuAccount} are missing; as root: acp setup --for qemu` }
  const steps = [
    ...(listed("/etc/group", qemuAccount) ? [] : [["groupadd", "--system", qemuAccount]]),
    ...(listed("/etc/passwd", qemuAccount)
      ? []
      : [
          [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/libvirt",
            "--shell",
            "/usr/sbin/nologin",
            "--gid",
            qemuAccount,
            qemuAccount,
          ],
        ]),
  ]
  for (const [command, ...args] of steps) {
    const run = spawnSync(command!, args, { encoding: "utf8" })
    if (run.status !== 0) return { failed: `${command} ${args.join(" ")} failed: ${lastLine(run.stderr)}` }
  }
  return { made: true }
}
