import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Effect, Result, Schema } from "effect"
import fc from "fast-check"
import { kinds, objectKinds } from "../../core/model/kinds.ts"
import { decodeObjectId, decodeObjectPart, type ObjectPart } from "../../core/model/validate.ts"

const parts: ReadonlyArray<ObjectPart> = ["spec", "meta", "stats"]
const wrongValue = { wrong: [1] }

const sample = <A>(schema: Schema.Codec<A, unknown, never, never>, count: number, seed: number) =>
  Arbitrary.sampleEffect(Arbitrary.schema(schema), { count, seed })

describe("model", () => {
  describe("schemas", () => {
    for (const kind of objectKinds) {
      const definition = kinds[kind]
      for (const part of parts) {
        const schema = definition[part] as Schema.Codec<unknown, unknown, never, never>

        it.effect(`${kind} ${part}: decode(encode(x)) = x, also through JSON on the wire`, () =>
          Effect.gen(function* () {
            const result = yield* Arbitrary.checkEffect(
              Arbitrary.schema(schema),
              (value) =>
                Effect.sync(() => {
                  const encoded = Schema.encodeSync(schema)(value)
                  expect(Schema.decodeUnknownSync(schema)(encoded)).toEqual(value)
                  const wire = JSON.parse(JSON.stringify(encoded))
                  expect(Result.getOrThrow(decodeObjectPart(kind, part, wire))).toEqual(value)
                  return true
                }),
              { runs: 60, seed: 1 },
            )
            expect(Arbitrary.formatCheckFailure(result)).toBeUndefined()
          }),
        )

        it.effect(`${kind} ${part}: a wrong or missing field is rejected with an error that names it`, () =>
          Effect.gen(function* () {
            const values = yield* sample(schema, 8, 2)
            for (const value of values) {
              const encoded = Schema.encodeSync(schema)(value) as Record<string, unknown>
              for (const key of Object.keys(encoded).filter((key) => key !== "_tag")) {
                const wrong = decodeObjectPart(kind, part, { ...encoded, [key]: wrongValue })
                expect(
                  Result.isFailure(wrong),
                  `${kind} ${part}.${key} accepted ${JSON.stringify(wrongValue)}`,
                ).toBe(true)
                if (Result.isFailure(wrong)) {
                  expect(wrong.failure.issues.some((issue) => issue.path.split(".")[0] === key)).toBe(true)
                  expect(wrong.failure.message).toContain(key)
                }
                const { [key]: _removed, ...without } = encoded
                const missing = decodeObjectPart(kind, part, without)
                if (Result.isFailure(missing)) {
                  expect(missing.failure.issues.map((issue) => issue.path)).toContain(key)
                }
              }
            }
          }),
        )
      }

      it(`${kind} id: rejects an empty id, upper case and path characters`, () => {
        for (const bad of ["", "Upper", "a/b", "-lead", "x".repeat(64), 7]) {
          const result = decodeObjectId(kind, bad)
          expect(Result.isFailure(result)).toBe(true)
        }
        expect(Result.isSuccess(decodeObjectId(kind, "n1.example_2-b"))).toBe(true)
      })
    }

    it("names every offending field of a VLAN network at once, and the unexpected key", () => {
      const result = decodeObjectPart("network", "spec", {
        _tag: "vlan",
        name: "",
        mtu: 1500,
        vlanId: 5000,
        parent: "br0",
        colour: "red",
      })
      expect(Result.isFailure(result) && result.failure.issues.map((issue) => issue.path).sort()).toEqual([
        "colour",
        "name",
        "vlanId",
      ])
    })

    it("names a nested field by its path", () => {
      const result = decodeObjectPart("system", "spec", {
        name: "web-1",
        cpus: 2,
        memoryMiB: 512,
        disks: [],
        nics: [{ network: "lan", model: "virtio", mac: "not-a-mac" }],
        ha: true,
        desired: "running",
        placement: { affinity: [], antiAffinity: [] },
      })
      expect(Result.isFailure(result) && result.failure.message).toContain(
        "nics.0.mac: Expected a MAC address",
      )
    })

    it("rejects an unknown kind and lists the known ones", () => {
      const result = decodeObjectPart("vm", "spec", {})
      expect(Result.isFailure(result) && result.failure).toMatchObject({ part: "kind" })
      expect(Result.isFailure(result) && result.failure.message).toContain("system")
    })
  })

  describe("decodeObjectPart (fuzz)", () => {
    it("never throws on arbitrary JSON for any kind or part, and accepts only what re-encodes", () => {
      fc.assert(
        fc.property(
          fc.constantFrom(...objectKinds, "unknown-kind"),
          fc.constantFrom(...parts),
          fc.jsonValue(),
          (kind, part, value) => {
            const result = decodeObjectPart(kind, part, value)
            if (Result.isFailure(result)) expect(result.failure.issues.length).toBeGreaterThan(0)
          },
        ),
        { numRuns: 3000 },
      )
    })
  })

  describe("registry", () => {
    it("holds every kind the design names", () => {
      expect([...objectKinds].sort()).toEqual(
        [
          "accelerator",
          "alarm",
          "api-key",
          "endpoint-pool",
          "network",
          "node",
          "project",
          "service",
          "storage-device",
          "storage-pool",
          "storage-share",
          "storage-snapshot",
          "storage-volume",
          "system",
          "task",
        ].sort(),
      )
    })
  })
})
