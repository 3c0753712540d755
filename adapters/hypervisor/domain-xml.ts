/**
 * libvirt domain XML: written from a `DomainDefinition` (every value escaped), and read back
 * with fast-xml-parser where the adapter needs what libvirt filled in (interface device names).
 */
import { XMLBuilder, XMLParser } from "fast-xml-parser"
import type { DomainDefinition, DomainDisk } from "../../core/ports/vmm.ts"

/** `test` is libvirt's built-in test driver; `qemu` is TCG emulation; `kvm` needs /dev/kvm. */
export type DomainType = "test" | "qemu" | "kvm"

export const escapeXml = (text: string): string =>
  text.replace(/[<>&'"]/g, (char) =>
    char === "<"
      ? "&lt;"
      : char === ">"
        ? "&gt;"
        : char === "&"
          ? "&amp;"
          : char === "'"
            ? "&apos;"
            : "&quot;",
  )

export const diskXml = (disk: DomainDisk): string =>
  [
    `<disk type='file' device='disk'>`,
    `<driver name='qemu' type='${disk.format}'/>`,
    `<source file='${escapeXml(disk.path)}'/>`,
    `<target dev='${escapeXml(disk.target)}' bus='${disk.bus}'/>`,
    disk.readonly ? "<readonly/>" : "",
    disk.boot === true ? "<boot order='1'/>" : "",
    `</disk>`,
  ].join("")

export const domainXml = (definition: DomainDefinition, type: DomainType): string => {
  // libvirt takes either per-device boot order or <os><boot dev>, not both.
  const bootDev = definition.disks.some((disk) => disk.boot === true) ? "" : "<boot dev='hd'/>"
  const os =
    type === "test"
      ? "<os><type>hvm</type></os>"
      : // SeaBIOS writes to the serial port, so even a guest with no disk leaves console output.
        `<os><type arch='x86_64' machine='pc'>hvm</type>${bootDev}<bios useserial='yes'/></os><features><acpi/><apic/></features>`
  const nics = definition.nics.map((nic) =>
    nic.bridge === undefined
      ? `<interface type='user'><mac address='${escapeXml(nic.mac)}'/><model type='${nic.model}'/></interface>`
      : `<interface type='bridge'><mac address='${escapeXml(nic.mac)}'/><source bridge='${escapeXml(nic.bridge)}'/><model type='${nic.model}'/></interface>`,
  )
  const serial =
    definition.consoleLog === undefined || type === "test"
      ? ""
      : `<serial type='file'><source path='${escapeXml(definition.consoleLog)}'/><target port='0'/></serial>`
  return [
    `<domain type='${type}'>`,
    `<name>${escapeXml(definition.name)}</name>`,
    `<uuid>${escapeXml(definition.uuid)}</uuid>`,
    `<memory unit='MiB'>${definition.memoryMiB}</memory>`,
    `<vcpu>${definition.cpus}</vcpu>`,
    os,
    "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>",
    "<devices>",
    ...definition.disks.map(diskXml),
    ...nics,
    serial,
    "</devices>",
    "</domain>",
  ].join("")
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@", isArray: () => true })

type Node = Record<string, unknown>
const children = (node: unknown, name: string): ReadonlyArray<Node> => {
  if (typeof node !== "object" || node === null) return []
  const value = (node as Node)[name]
  return Array.isArray(value) ? (value as ReadonlyArray<Node>) : []
}
const attribute = (node: Node | undefined, name: string): string | undefined => {
  const value = node?.[`@${name}`]
  return Array.isArray(value) ? String(value[0]) : typeof value === "string" ? value : undefined
}

/** The host-side device names of a live domain's interfaces (`vnet0`, `testnet0`), for its I/O counters. */
export const interfaceDevices = (xml: string): ReadonlyArray<string> => {
  const root = parser.parse(xml) as Node
  const devices = children(children(root, "domain")[0], "devices")[0]
  return children(devices, "interface").flatMap((nic) => {
    const dev = attribute(children(nic, "target")[0], "dev")
    return dev === undefined ? [] : [dev]
  })
}

/** The domain type in a definition: `test`, `qemu`, `kvm`. */
export const domainTypeOf = (xml: string): string | undefined =>
  attribute(children(parser.parse(xml) as Node, "domain")[0], "type")

/** The file a domain's first serial port is written to, if it is a file. */
export const serialLogOf = (xml: string): string | undefined => {
  const devices = children(children(parser.parse(xml) as Node, "domain")[0], "devices")[0]
  const serial = children(devices, "serial").find((port) => attribute(port, "type") === "file")
  return attribute(children(serial, "source")[0], "path")
}

const orderedOptions = {
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  preserveOrder: true,
  suppressEmptyNode: true,
  format: false,
} as const
const orderedParser = new XMLParser(orderedOptions)
const builder = new XMLBuilder(orderedOptions)

type Ordered = Record<string, unknown> & { ":@"?: Record<string, string> }
const orderedChildren = (nodes: ReadonlyArray<Ordered>, name: string): ReadonlyArray<Ordered> =>
  nodes.filter((node) => name in node)
const body = (node: Ordered, name: string): Array<Ordered> => node[name] as Array<Ordered>

/** The disks of a definition: target device and source file. */
export const disksOf = (xml: string): ReadonlyArray<{ readonly target: string; readonly path: string }> => {
  const domain = orderedChildren(orderedParser.parse(xml) as Array<Ordered>, "domain")[0]
  const devices = domain === undefined ? undefined : orderedChildren(body(domain, "domain"), "devices")[0]
  if (devices === undefined) return []
  return orderedChildren(body(devices, "devices"), "disk").map((disk) => {
    const inner = body(disk, "disk")
    return {
      target: orderedChildren(inner, "target")[0]?.[":@"]?.["@dev"] ?? "",
      path: orderedChildren(inner, "source")[0]?.[":@"]?.["@file"] ?? "",
    }
  })
}

/**
 * A definition with one disk added (`add`) or the disk on `target` removed: how a stopped
 * domain's disks change on a driver that cannot hot-plug (libvirt's test driver cannot at all).
 */
export const withDisks = (
  xml: string,
  change: { readonly add: DomainDisk } | { readonly remove: string },
): string => {
  const tree = orderedParser.parse(xml) as Array<Ordered>
  const domain = orderedChildren(tree, "domain")[0]
  const devices = domain === undefined ? undefined : orderedChildren(body(domain, "domain"), "devices")[0]
  if (domain === undefined || devices === undefined) throw new Error("the definition has no <devices>")
  const nodes = body(devices, "devices")
  if ("add" in change) {
    const disk = orderedChildren(orderedParser.parse(diskXml(change.add)) as Array<Ordered>, "disk")
    const lastDisk = nodes.findLastIndex((node) => "disk" in node)
    nodes.splice(lastDisk + 1, 0, ...disk)
  } else {
    const index = nodes.findIndex(
      (node) =>
        "disk" in node &&
        orderedChildren(body(node, "disk"), "target")[0]?.[":@"]?.["@dev"] === change.remove,
    )
    if (index < 0) throw new Error(`the definition has no disk on ${change.remove}`)
    nodes.splice(index, 1)
  }
  return builder.build(tree) as string
}
