import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { parseConfig } from "../../adapters/node/config.ts"

const good = {
  id: "n1",
  cluster: 42,
  domain: "local",
  relay: false,
  address: "127.0.0.1",
  port: 17401,
  group: "239.255.0.42",
  groupPort: 17400,
  apiPort: 17501,
  dataDir: "/tmp/acp/n1",
  keyHex: "ab".repeat(32),
  encrypt: false,
  mtu: 1400,
  synchronous: "FULL",
  members: [{ id: "n1", address: "127.0.0.1", port: 17401, domain: "local", relay: false }],
  agent: null,
}

const message = (value: unknown) => {
  const result = parseConfig(JSON.stringify(value), "n1.json")
  return Result.isFailure(result) ? result.failure.message : "ok"
}

describe("node config", () => {
  it("accepts a good config", () => {
    expect(message(good)).toBe("ok")
  })

  it("takes a watchdog only well under the hypervisor's haFenceMs", () => {
    expect(message({ ...good, watchdogMs: 3_500 })).toBe("ok")
    expect(message({ ...good, watchdogMs: 3_900 })).toContain(
      "watchdogMs: 3900 ms must be at least 300 ms under",
    )
    expect(
      message({ ...good, watchdogMs: 3_900, hypervisor: { uri: "test:///default", haFenceMs: 8_000 } }),
    ).toBe("ok")
  })

  it("takes a libvirt URI for the storage service's pools, and names a bad one", () => {
    expect(message({ ...good, storage: { libvirt: "qemu:///system" } })).toBe("ok")
    expect(message({ ...good, storage: { libvirt: "/var/run/libvirt" } })).toContain(
      "Expected a libvirt URI such as qemu:///system",
    )
  })

  it("names the file and every bad field", () => {
    const text = message({ ...good, port: 70000, keyHex: "short", group: "10.0.0.1", extra: true })
    expect(text).toContain("n1.json")
    for (const field of ["port", "keyHex", "group", "extra"]) expect(text).toContain(field)
    expect(text).toContain("64 hex digits")
  })

  it("says when the file is not JSON, and when the node is not among the members", () => {
    const notJson = parseConfig("{", "x.json")
    expect(Result.isFailure(notJson) && notJson.failure.message).toContain("x.json is not JSON")
    expect(message({ ...good, id: "n9" })).toContain("this node (n9) is not among them")
  })
})
