/**
 * The CDB's wire format: compact binary datagrams, each no larger than the path MTU.
 *
 *   header: 'A' 'C' version:u8 type:u8 cluster:u32 sender:str8 incarnation:varint
 *   CHANGES  sections:u8 { origin:str8 count:varint { seq:varint op:u8 kind:str8 id:str8
 *                          [put|delete: ms:varint counter:varint] [put|meta: value:bytes] } }
 *   DIGEST   digestSeq:varint part:varint count:varint { origin:str8 contiguous:varint }
 *   NACK     target:str8 count:varint { origin:str8 from:varint to:varint }
 *   STATS    counter:varint count:varint { kind:str8 id:str8 value:bytes }
 *   SNAPSHOT snapshotId:varint chunk:varint chunks:varint vector:(count { origin seq })
 *            entries:varint { tag:u8 kind:str8 id:str8 ... }
 *
 * `str8` is a length byte and UTF-8; `bytes` is a varint length and raw bytes; varints are
 * LEB128 up to 2^53. Decoding validates everything and returns a typed rejection, never throws:
 * a malformed, truncated, oversized or foreign-cluster datagram changes nothing.
 */

export const wireVersion = 1
const magic0 = 0x41
const magic1 = 0x43

export const DatagramType = { changes: 1, digest: 2, nack: 3, stats: 4, snapshot: 5 } as const

export const Op = { put: 1, delete: 2, meta: 3 } as const
export type OpName = keyof typeof Op

/** One numbered change in an origin's stream. `value` is opaque bytes: the CDB never parses a spec. */
export interface Change {
  readonly origin: string
  readonly seq: number
  readonly op: OpName
  readonly kind: string
  readonly id: string
  /** Version time, for put and delete. */
  readonly ms: number
  readonly counter: number
  /** The spec (put) or meta (meta); null for delete. */
  readonly value: Uint8Array | null
}

export interface StatsValue {
  readonly kind: string
  readonly id: string
  readonly value: Uint8Array
}

export interface SnapshotEntry {
  readonly tag: "spec" | "meta"
  readonly kind: string
  readonly id: string
  /** For spec: the last writer; for meta: the node whose slot this is. */
  readonly origin: string
  readonly seq: number
  readonly ms: number
  readonly counter: number
  readonly value: Uint8Array | null
}

export interface Section {
  readonly origin: string
  readonly changes: ReadonlyArray<Change>
}

export type Body =
  | { readonly type: "changes"; readonly sections: ReadonlyArray<Section> }
  | {
      readonly type: "digest"
      readonly digestSeq: number
      readonly part: number
      readonly vector: ReadonlyArray<readonly [string, number]>
    }
  | {
      readonly type: "nack"
      readonly target: string
      readonly ranges: ReadonlyArray<{ readonly origin: string; readonly from: number; readonly to: number }>
    }
  | { readonly type: "stats"; readonly counter: number; readonly values: ReadonlyArray<StatsValue> }
  | {
      readonly type: "snapshot"
      readonly snapshotId: number
      readonly chunk: number
      readonly chunks: number
      readonly vector: ReadonlyArray<readonly [string, number]>
      readonly entries: ReadonlyArray<SnapshotEntry>
    }

export interface Datagram {
  readonly cluster: number
  readonly sender: string
  readonly incarnation: number
  readonly body: Body
}

export type RejectReason =
  | "truncated"
  | "oversized"
  | "bad-magic"
  | "unsupported-version"
  | "foreign-cluster"
  | "malformed"

export interface DatagramRejected {
  readonly _tag: "DatagramRejected"
  readonly reason: RejectReason
  readonly detail: string
}

export type Decoded =
  | { readonly ok: true; readonly datagram: Datagram }
  | { readonly ok: false; readonly rejected: DatagramRejected }

// ---- sizes -------------------------------------------------------------------------------------

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

export const utf8Length = (text: string): number => {
  let length = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    if (code < 0x80) length += 1
    else if (code < 0x800) length += 2
    else if (code >= 0xd800 && code <= 0xdbff && index + 1 < text.length) {
      length += 4
      index++
    } else length += 3
  }
  return length
}

export const varintLength = (value: number): number => {
  let length = 1
  let rest = value
  while (rest >= 0x80) {
    rest = Math.floor(rest / 128)
    length++
  }
  return length
}

const str8Length = (text: string) => 1 + utf8Length(text)
const bytesLength = (bytes: Uint8Array) => varintLength(bytes.length) + bytes.length

export const headerLength = (sender: string, incarnation: number) =>
  4 + 4 + str8Length(sender) + varintLength(incarnation)

/** Bytes one change takes inside a section. */
export const changeLength = (change: Change): number => {
  let length = varintLength(change.seq) + 1 + str8Length(change.kind) + str8Length(change.id)
  if (change.op !== "meta") length += varintLength(change.ms) + varintLength(change.counter)
  if (change.op !== "delete") length += bytesLength(change.value ?? empty)
  return length
}

export const sectionHeaderLength = (origin: string, count: number) => str8Length(origin) + varintLength(count)

export const snapshotEntryLength = (entry: SnapshotEntry): number =>
  1 +
  str8Length(entry.kind) +
  str8Length(entry.id) +
  str8Length(entry.origin) +
  varintLength(entry.seq) +
  varintLength(entry.ms) +
  varintLength(entry.counter) +
  (entry.value === null ? 0 : bytesLength(entry.value))

export const vectorEntryLength = (origin: string, seq: number) => str8Length(origin) + varintLength(seq)

const empty = new Uint8Array(0)

// ---- writing -----------------------------------------------------------------------------------

class Writer {
  readonly bytes: Uint8Array
  offset = 0
  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity)
  }
  u8(value: number) {
    this.bytes[this.offset++] = value
  }
  u32(value: number) {
    this.bytes[this.offset++] = (value >>> 24) & 0xff
    this.bytes[this.offset++] = (value >>> 16) & 0xff
    this.bytes[this.offset++] = (value >>> 8) & 0xff
    this.bytes[this.offset++] = value & 0xff
  }
  varint(value: number) {
    let rest = value
    while (rest >= 0x80) {
      this.bytes[this.offset++] = (rest % 128) | 0x80
      rest = Math.floor(rest / 128)
    }
    this.bytes[this.offset++] = rest
  }
  str8(text: string) {
    const result = encoder.encodeInto(text, this.bytes.subarray(this.offset + 1))
    this.bytes[this.offset] = result.written
    this.offset += 1 + result.written
  }
  raw(bytes: Uint8Array) {
    this.varint(bytes.length)
    this.bytes.set(bytes, this.offset)
    this.offset += bytes.length
  }
  finish(): Uint8Array {
    return this.bytes.subarray(0, this.offset)
  }
}

const bodyLength = (body: Body): number => {
  switch (body.type) {
    case "changes":
      return (
        1 +
        body.sections.reduce(
          (sum, section) =>
            sum +
            sectionHeaderLength(section.origin, section.changes.length) +
            section.changes.reduce((inner, change) => inner + changeLength(change), 0),
          0,
        )
      )
    case "digest":
      return (
        varintLength(body.digestSeq) +
        varintLength(body.part) +
        varintLength(body.vector.length) +
        body.vector.reduce((sum, [origin, seq]) => sum + vectorEntryLength(origin, seq), 0)
      )
    case "nack":
      return (
        str8Length(body.target) +
        varintLength(body.ranges.length) +
        body.ranges.reduce(
          (sum, range) => sum + str8Length(range.origin) + varintLength(range.from) + varintLength(range.to),
          0,
        )
      )
    case "stats":
      return (
        varintLength(body.counter) +
        varintLength(body.values.length) +
        body.values.reduce(
          (sum, value) => sum + str8Length(value.kind) + str8Length(value.id) + bytesLength(value.value),
          0,
        )
      )
    case "snapshot":
      return (
        varintLength(body.snapshotId) +
        varintLength(body.chunk) +
        varintLength(body.chunks) +
        varintLength(body.vector.length) +
        body.vector.reduce((sum, [origin, seq]) => sum + vectorEntryLength(origin, seq), 0) +
        varintLength(body.entries.length) +
        body.entries.reduce((sum, entry) => sum + snapshotEntryLength(entry), 0)
      )
  }
}

export const encodedLength = (datagram: Datagram): number =>
  headerLength(datagram.sender, datagram.incarnation) + bodyLength(datagram.body)

export const encode = (datagram: Datagram): Uint8Array => {
  const writer = new Writer(encodedLength(datagram))
  writer.u8(magic0)
  writer.u8(magic1)
  writer.u8(wireVersion)
  writer.u8(DatagramType[datagram.body.type])
  writer.u32(datagram.cluster >>> 0)
  writer.str8(datagram.sender)
  writer.varint(datagram.incarnation)
  const body = datagram.body
  switch (body.type) {
    case "changes":
      writer.u8(body.sections.length)
      for (const section of body.sections) {
        writer.str8(section.origin)
        writer.varint(section.changes.length)
        for (const change of section.changes) {
          writer.varint(change.seq)
          writer.u8(Op[change.op])
          writer.str8(change.kind)
          writer.str8(change.id)
          if (change.op !== "meta") {
            writer.varint(change.ms)
            writer.varint(change.counter)
          }
          if (change.op !== "delete") writer.raw(change.value ?? empty)
        }
      }
      break
    case "digest":
      writer.varint(body.digestSeq)
      writer.varint(body.part)
      writer.varint(body.vector.length)
      for (const [origin, seq] of body.vector) {
        writer.str8(origin)
        writer.varint(seq)
      }
      break
    case "nack":
      writer.str8(body.target)
      writer.varint(body.ranges.length)
      for (const range of body.ranges) {
        writer.str8(range.origin)
        writer.varint(range.from)
        writer.varint(range.to)
      }
      break
    case "stats":
      writer.varint(body.counter)
      writer.varint(body.values.length)
      for (const value of body.values) {
        writer.str8(value.kind)
        writer.str8(value.id)
        writer.raw(value.value)
      }
      break
    case "snapshot":
      writer.varint(body.snapshotId)
      writer.varint(body.chunk)
      writer.varint(body.chunks)
      writer.varint(body.vector.length)
      for (const [origin, seq] of body.vector) {
        writer.str8(origin)
        writer.varint(seq)
      }
      writer.varint(body.entries.length)
      for (const entry of body.entries) {
        writer.u8((entry.tag === "spec" ? 1 : 3) | (entry.value === null ? 0 : 4))
        writer.str8(entry.kind)
        writer.str8(entry.id)
        writer.str8(entry.origin)
        writer.varint(entry.seq)
        writer.varint(entry.ms)
        writer.varint(entry.counter)
        if (entry.value !== null) writer.raw(entry.value)
      }
      break
  }
  return writer.finish()
}

// ---- reading -----------------------------------------------------------------------------------

class Malformed {
  readonly reason: RejectReason
  readonly detail: string
  constructor(reason: RejectReason, detail: string) {
    this.reason = reason
    this.detail = detail
  }
}

class Reader {
  offset = 0
  readonly bytes: Uint8Array
  constructor(bytes: Uint8Array) {
    this.bytes = bytes
  }
  need(count: number, what: string) {
    if (this.offset + count > this.bytes.length)
      throw new Malformed("truncated", `ends inside ${what} at byte ${this.offset}`)
  }
  u8(what: string): number {
    this.need(1, what)
    return this.bytes[this.offset++]!
  }
  u32(what: string): number {
    this.need(4, what)
    const b = this.bytes
    const value =
      ((b[this.offset]! << 24) |
        (b[this.offset + 1]! << 16) |
        (b[this.offset + 2]! << 8) |
        b[this.offset + 3]!) >>>
      0
    this.offset += 4
    return value
  }
  varint(what: string): number {
    let value = 0
    let scale = 1
    for (let index = 0; index < 8; index++) {
      const byte = this.u8(what)
      value += (byte & 0x7f) * scale
      if (value > Number.MAX_SAFE_INTEGER) throw new Malformed("malformed", `${what} exceeds 2^53`)
      if ((byte & 0x80) === 0) {
        if (byte === 0 && index > 0) throw new Malformed("malformed", `${what} is a non-canonical varint`)
        return value
      }
      scale *= 128
    }
    throw new Malformed("malformed", `${what} is a varint longer than 8 bytes`)
  }
  /** A count of items that each take at least `minimumBytes`, checked against what is left. */
  count(what: string, minimumBytes: number): number {
    const count = this.varint(what)
    if (count * minimumBytes > this.bytes.length - this.offset) {
      throw new Malformed(
        "truncated",
        `${what} ${count} cannot fit in the ${this.bytes.length - this.offset} bytes left`,
      )
    }
    return count
  }
  str8(what: string): string {
    const length = this.u8(what)
    this.need(length, what)
    const start = this.offset
    this.offset += length
    // Names are short and almost always ASCII: decoding them by hand is several times faster.
    let ascii = ""
    let index = start
    for (; index < this.offset && this.bytes[index]! < 0x80; index++)
      ascii += String.fromCharCode(this.bytes[index]!)
    if (index === this.offset) return ascii
    const slice = this.bytes.subarray(start, this.offset)
    try {
      return decoder.decode(slice)
    } catch {
      throw new Malformed("malformed", `${what} is not UTF-8`)
    }
  }
  raw(what: string): Uint8Array {
    const length = this.varint(what)
    this.need(length, what)
    const slice = this.bytes.slice(this.offset, this.offset + length)
    this.offset += length
    return slice
  }
}

const nonEmptyName = (name: string, what: string): string => {
  if (name.length === 0) throw new Malformed("malformed", `${what} is empty`)
  return name
}

const readVector = (reader: Reader): Array<readonly [string, number]> => {
  const count = reader.count("vector length", 2)
  const vector: Array<readonly [string, number]> = []
  for (let index = 0; index < count; index++) {
    vector.push([nonEmptyName(reader.str8("vector origin"), "vector origin"), reader.varint("vector seq")])
  }
  return vector
}

const readBody = (reader: Reader, type: number): Body => {
  switch (type) {
    case DatagramType.changes: {
      const sectionCount = reader.u8("section count")
      const sections: Array<Section> = []
      for (let s = 0; s < sectionCount; s++) {
        const origin = nonEmptyName(reader.str8("section origin"), "section origin")
        const count = reader.count("change count", 4)
        const changes: Array<Change> = []
        for (let index = 0; index < count; index++) {
          const seq = reader.varint("change seq")
          if (seq === 0) throw new Malformed("malformed", "change seq 0 (sequences start at 1)")
          const code = reader.u8("change op")
          const op: OpName | undefined =
            code === 1 ? "put" : code === 2 ? "delete" : code === 3 ? "meta" : undefined
          if (op === undefined) throw new Malformed("malformed", `unknown change op ${code}`)
          const kind = nonEmptyName(reader.str8("change kind"), "change kind")
          const id = nonEmptyName(reader.str8("change id"), "change id")
          const ms = op === "meta" ? 0 : reader.varint("change ms")
          const counter = op === "meta" ? 0 : reader.varint("change counter")
          const value = op === "delete" ? null : reader.raw("change value")
          changes.push({ origin, seq, op, kind, id, ms, counter, value })
        }
        sections.push({ origin, changes })
      }
      return { type: "changes", sections }
    }
    case DatagramType.digest: {
      const digestSeq = reader.varint("digest seq")
      const part = reader.varint("digest part")
      return { type: "digest", digestSeq, part, vector: readVector(reader) }
    }
    case DatagramType.nack: {
      const target = nonEmptyName(reader.str8("nack target"), "nack target")
      const count = reader.count("nack ranges", 3)
      const ranges: Array<{ origin: string; from: number; to: number }> = []
      for (let index = 0; index < count; index++) {
        const origin = nonEmptyName(reader.str8("nack origin"), "nack origin")
        const from = reader.varint("nack from")
        const to = reader.varint("nack to")
        if (to < from) throw new Malformed("malformed", `nack range ${from}..${to} is backwards`)
        ranges.push({ origin, from, to })
      }
      return { type: "nack", target, ranges }
    }
    case DatagramType.stats: {
      const counter = reader.varint("stats counter")
      const count = reader.count("stats count", 3)
      const values: Array<StatsValue> = []
      for (let index = 0; index < count; index++) {
        const kind = nonEmptyName(reader.str8("stats kind"), "stats kind")
        const id = nonEmptyName(reader.str8("stats id"), "stats id")
        values.push({ kind, id, value: reader.raw("stats value") })
      }
      return { type: "stats", counter, values }
    }
    case DatagramType.snapshot: {
      const snapshotId = reader.varint("snapshot id")
      const chunk = reader.varint("snapshot chunk")
      const chunks = reader.varint("snapshot chunks")
      if (chunks === 0 || chunk >= chunks)
        throw new Malformed("malformed", `snapshot chunk ${chunk} of ${chunks}`)
      const vector = readVector(reader)
      const count = reader.count("snapshot entries", 7)
      const entries: Array<SnapshotEntry> = []
      for (let index = 0; index < count; index++) {
        const flags = reader.u8("snapshot entry tag")
        const base = flags & 3
        if ((base !== 1 && base !== 3) || flags > 7)
          throw new Malformed("malformed", `snapshot entry tag ${flags}`)
        const tag = base === 1 ? "spec" : "meta"
        const kind = nonEmptyName(reader.str8("snapshot kind"), "snapshot kind")
        const id = nonEmptyName(reader.str8("snapshot id"), "snapshot id")
        const origin = nonEmptyName(reader.str8("snapshot origin"), "snapshot origin")
        const seq = reader.varint("snapshot seq")
        const ms = reader.varint("snapshot ms")
        const counter = reader.varint("snapshot counter")
        const value = (flags & 4) !== 0 ? reader.raw("snapshot value") : null
        if (tag === "meta" && value === null)
          throw new Malformed("malformed", "snapshot meta entry without a value")
        entries.push({ tag, kind, id, origin, seq, ms, counter, value })
      }
      return { type: "snapshot", snapshotId, chunk, chunks, vector, entries }
    }
    default:
      throw new Malformed("malformed", `unknown datagram type ${type}`)
  }
}

/** Decodes and validates a datagram for cluster `cluster`; anything else is a typed rejection. */
export const decode = (bytes: Uint8Array, cluster: number, mtu: number): Decoded => {
  const reject = (reason: RejectReason, detail: string): Decoded => ({
    ok: false,
    rejected: { _tag: "DatagramRejected", reason, detail },
  })
  if (bytes.length > mtu) return reject("oversized", `${bytes.length} bytes exceeds the MTU of ${mtu}`)
  if (bytes.length < 8) return reject("truncated", `${bytes.length} bytes is shorter than a header`)
  if (bytes[0] !== magic0 || bytes[1] !== magic1) return reject("bad-magic", "does not start with 'AC'")
  if (bytes[2] !== wireVersion)
    return reject("unsupported-version", `wire version ${bytes[2]}, this node speaks ${wireVersion}`)
  const reader = new Reader(bytes)
  reader.offset = 3
  try {
    const type = reader.u8("type")
    const foreign = reader.u32("cluster")
    if (foreign !== cluster >>> 0)
      return reject("foreign-cluster", `cluster ${foreign}, this node is in cluster ${cluster >>> 0}`)
    const sender = nonEmptyName(reader.str8("sender"), "sender")
    const incarnation = reader.varint("incarnation")
    const body = readBody(reader, type)
    if (reader.offset !== bytes.length) {
      return reject("malformed", `${bytes.length - reader.offset} bytes left over after the body`)
    }
    return { ok: true, datagram: { cluster: foreign, sender, incarnation, body } }
  } catch (error) {
    if (error instanceof Malformed) return reject(error.reason, error.detail)
    throw error
  }
}
