import { describe, expect, it } from "vitest"
import { formatSize, parseSize } from "../../../core/storage/sizes.ts"

describe("sizes", () => {
  it("reads bytes, binary and decimal units, case-insensitive, with a fraction", () => {
    expect(parseSize("4096")).toEqual({ bytes: 4096 })
    expect(parseSize("1GiB")).toEqual({ bytes: 1024 ** 3 })
    expect(parseSize("1.5 gib")).toEqual({ bytes: 1.5 * 1024 ** 3 })
    expect(parseSize("512M")).toEqual({ bytes: 512e6 })
    expect(parseSize("2TB")).toEqual({ bytes: 2e12 })
  })

  it("refuses what is not a size, naming it", () => {
    expect(parseSize("lots")).toEqual({
      error:
        '"lots" is not a size: expected bytes or a number with KiB, MiB, GiB, TiB (or K, M, G, T), e.g. 2GiB',
    })
    expect(parseSize("2 GiBs")).toHaveProperty("error")
    expect(parseSize("-1G")).toHaveProperty("error")
    expect(parseSize("0")).toEqual({ error: '"0" is not a size above 0 bytes' })
    expect(parseSize("99999999TiB")).toHaveProperty("error")
  })

  it("prints sizes in the largest binary unit", () => {
    expect(formatSize(1024 ** 3)).toBe("1 GiB")
    expect(formatSize(1.5 * 1024 ** 2)).toBe("1.5 MiB")
    expect(formatSize(100)).toBe("100 B")
  })
})
