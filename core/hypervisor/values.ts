/**
 * Systems, their meta and tasks travel in the CDB as JSON. These two functions are the only
 * place that turns them into bytes and back; `decodeValue` never throws (a value that is not
 * JSON, or not an object, is `undefined`: the caller skips it, as it would a foreign object).
 */
const encoder = new TextEncoder()
const decoder = new TextDecoder()

export const encodeValue = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

export const decodeValue = <A>(bytes: Uint8Array | null | undefined): A | undefined => {
  if (bytes === null || bytes === undefined) return undefined
  try {
    const value: unknown = JSON.parse(decoder.decode(bytes))
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as A) : undefined
  } catch {
    return undefined
  }
}
