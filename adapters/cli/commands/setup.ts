/**
 * `acp setup`: puts the Debian packages ACP needs on this host (checking first; nothing runs
 * when they are there). `acp cluster up` runs the same step for what a node needs; `npm test`
 * runs it `--for test`.
 */
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import {
  describeMissing,
  ensureQemuAccount,
  installCommand,
  installMissing,
  missingPackages,
  PackagesMissing,
  qemuRequirements,
  type Requirement,
  runRequirements,
  testRequirements,
} from "../../host/packages.ts"
import { CliError } from "../client.ts"

/** Installs what `requirements` lists and is missing; an error names the packages and the command. */
export const ensurePackages = (requirements: ReadonlyArray<Requirement>) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    const result = installMissing(requirements, (line) => lines.push(line))
    for (const line of lines) yield* Console.error(`acp setup: ${line}`)
    if (result instanceof PackagesMissing) return yield* new CliError({ message: result.message })
    return result
  })

/** The packages for real guests, and the libvirt-qemu account libvirt's QEMU driver needs under root. */
export const ensureQemu = (requirements: ReadonlyArray<Requirement> = qemuRequirements) =>
  Effect.gen(function* () {
    const installed = yield* ensurePackages(requirements)
    const account = ensureQemuAccount()
    if ("failed" in account) return yield* new CliError({ message: account.failed })
    if (account.made)
      yield* Console.error("acp setup: made the user and group libvirt-qemu (libvirt's QEMU driver)")
    return installed
  })

export const setupCommand = Command.make(
  "setup",
  {
    for: Flag.Literals("for", ["run", "qemu", "test"]).pipe(
      Flag.withDescription(
        "run: what a node needs (libvirt0); qemu: also real guests (QEMU, the libvirt-qemu account); test: also what the tests use (promtool, …)",
      ),
      Flag.withDefault("run"),
    ),
    check: Flag.Boolean("check").pipe(
      Flag.withDescription("Only say what is missing (exit 1 if anything is); install nothing"),
      Flag.withDefault(false),
    ),
  },
  (args) =>
    Effect.gen(function* () {
      const requirements =
        args.for === "test" ? testRequirements : args.for === "qemu" ? qemuRequirements : runRequirements
      if (args.check) {
        const missing = missingPackages(requirements)
        if (missing.length === 0) return yield* Console.log("acp setup: every package is installed")
        return yield* new CliError({
          message: `missing ${describeMissing(missing)}; install with: ${installCommand(missing)}`,
        })
      }
      const installed = yield* args.for === "run" ? ensurePackages(requirements) : ensureQemu(requirements)
      yield* Console.error(
        installed.length === 0
          ? `acp setup: every package ${args.for === "test" ? "the tests need" : "a node needs"} is installed`
          : `acp setup: installed ${installed.join(" ")}`,
      )
    }),
).pipe(Command.withDescription("Install the Debian packages ACP needs on this host (as root or with sudo)"))
