/**
 * Every datagram on the wire is sealed with the cluster key, so a stranger on the same L2 cannot
 * inject state, and says inside the seal who sent it, in which run, with which number, so a
 * recorded datagram cannot be played back — from any address:
 *
 *   channel:u8  senderLength:u8  sender  incarnation:u32  counter:u64  destination:u32  payload  tag:16 bytes
 *
 * (the tag an HMAC-SHA256 over the rest, truncated), or, when the cluster encrypts (the channel
 * byte's high bit set):
 *
 *   channel|0x80:u8  senderLength:u8  sender  incarnation:u32  counter:u64  destination:u32  salt:u32  ciphertext  tag:16
 *
 * The destination (a hash of "n:<node>" or "d:<domain>") is sealed too: a datagram a receiver
 * was not sent — one an adversary carries from one side of a partition to the other, or to
 * another domain — is dropped as misdirected, so it cannot make a node believe it hears a peer.
 *
 * with the nonce salt‖counter (the salt is drawn once per process, so nodes sharing the key
 * never reuse a nonce) and the header as associated data. The HMAC and AES keys are derived
 * from the cluster key with HKDF, each for its own purpose.
 *
 * A receiver keeps, per sender — the authenticated id, never the socket address — its latest
 * incarnation, the highest counter seen in it and which counters below it arrived, over the last
 * 200 ms of the counter (an anti-replay window as IPsec keeps one, spanning time rather than a
 * count, since the counter is a clock). A higher incarnation (the sender restarted; it is its durable restart
 * count) starts a new window; anything from an older one is a replay. The counter is the
 * sender's wall clock in microseconds plus the largest lead it took from a peer, and never below
 * a counter it took (a hybrid logical clock that runs with time), so a receiver that restarted —
 * starting from its wall clock plus the lead it kept — takes nothing sealed well before its own
 * start, and a sender whose wall clock is behind still seals at the cluster's time
 * (core/transport/replay.ts).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from "node:crypto"
import { fnv1a32 } from "../../core/hash.ts"
import type { Channel, DropReason } from "../../core/ports/transport.ts"
import { ReplayWindow, reorderToleratedUs, SealClock } from "../../core/transport/replay.ts"

const maxSenderBytes = 63
/** The largest overhead either form adds to a payload (a sender id of the longest, 63 bytes). */
export const envelopeOverhead = 1 + 1 + maxSenderBytes + 4 + 8 + 4 + 4 + 16

/** What a datagram is sealed for: a node, or every node of a domain. */
export const toNode = (node: string) => `n:${node}`
export const toDomain = (domain: string) => `d:${domain}`
const destinationHash = (destination: string) => fnv1a32(0x811c9dc5, destination)
const encryptedFlag = 0x80

const deriveKey = (key: Uint8Array, purpose: string) =>
  Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), `acp ${purpose}`, 32))
const channelCodes: Record<Channel, number> = { cdb: 1, monitor: 2 }
const tagLength = 16

export class Sealer {
  private readonly clock: SealClock
  private counter = 0n
  private readonly key: KeyObject
  private readonly encryptionKey: Buffer | undefined
  private readonly salt: Buffer
  /** channel (filled per datagram), sender, incarnation: the header's fixed part. */
  private readonly prefix: Buffer

  private readonly clockMicros: () => number

  constructor(
    key: Uint8Array,
    sender: string,
    incarnation: number,
    startMicros: number,
    encrypt = false,
    clockMicros: () => number = () => 0,
    /** The lead over the wall clock this node's seal clock had (its store kept it): 0 for a new node. */
    leadMicros = 0,
  ) {
    this.clockMicros = clockMicros
    // A KeyObject made once: given a Buffer, createHmac imports the key again on every datagram
    // (17 µs per HMAC of a 1200-byte datagram here, against 3.4 µs with the KeyObject).
    this.key = createSecretKey(deriveKey(key, "datagram authentication"))
    this.encryptionKey = encrypt ? deriveKey(key, "datagram encryption") : undefined
    this.salt = randomBytes(4)
    this.clock = new SealClock(startMicros, leadMicros)
    const id = Buffer.from(sender, "utf8")
    if (id.length === 0 || id.length > maxSenderBytes)
      throw new Error(`envelope: a sender id has 1-${maxSenderBytes} bytes, not ${id.length}`)
    this.prefix = Buffer.alloc(2 + id.length + 4)
    this.prefix[1] = id.length
    id.copy(this.prefix, 2)
    this.prefix.writeUInt32BE(incarnation >>> 0, 2 + id.length)
  }

  /** Seals `payload` for `destination` (`toNode` or `toDomain`). */
  seal(channel: Channel, payload: Uint8Array, destination = ""): Buffer {
    if (this.encryptionKey !== undefined)
      return this.sealEncrypted(channel, payload, this.encryptionKey, destination)
    const header = this.prefix.length + 8 + 4
    const out = Buffer.allocUnsafe(header + payload.length + tagLength)
    this.prefix.copy(out, 0)
    out[0] = channelCodes[channel]
    this.tick()
    out.writeBigUInt64BE(this.counter, this.prefix.length)
    out.writeUInt32BE(destinationHash(destination), this.prefix.length + 8)
    out.set(payload, header)
    const tag = createHmac("sha256", this.key)
      .update(out.subarray(0, header + payload.length))
      .digest()
    tag.copy(out, header + payload.length, 0, tagLength)
    return out
  }

  /** A counter a peer sealed with, taken (authenticated, not a replay): ours stays above it. */
  observe(counter: number): void {
    this.clock.observe(counter, this.clockMicros())
  }

  /** How far the seal clock runs ahead of the wall clock (µs), for the store to keep across restarts. */
  get leadMicros(): number {
    return this.clock.leadUs
  }

  /** The next counter: one more than the last, never below the wall clock nor what was observed. */
  private tick(): void {
    this.counter = BigInt(this.clock.next(this.clockMicros()))
  }

  private sealEncrypted(channel: Channel, payload: Uint8Array, key: Buffer, destination: string): Buffer {
    const header = Buffer.allocUnsafe(this.prefix.length + 8 + 4 + 4)
    this.prefix.copy(header, 0)
    header[0] = channelCodes[channel] | encryptedFlag
    this.tick()
    header.writeBigUInt64BE(this.counter, this.prefix.length)
    header.writeUInt32BE(destinationHash(destination), this.prefix.length + 8)
    this.salt.copy(header, this.prefix.length + 12)
    const counterBytes = header.subarray(this.prefix.length, this.prefix.length + 8)
    const cipher = createCipheriv("aes-256-gcm", key, Buffer.concat([this.salt, counterBytes]))
    cipher.setAAD(header)
    return Buffer.concat([header, cipher.update(payload), cipher.final(), cipher.getAuthTag()])
  }
}

export type Opened =
  | {
      readonly ok: true
      readonly channel: Channel
      readonly payload: Uint8Array
      /** Who sealed it, as the seal proves (not where it came from). */
      readonly sender: string
      readonly incarnation: number
      /** The counter it was sealed with (µs of its sender's hybrid clock). */
      readonly counter: number
    }
  | { readonly ok: false; readonly reason: DropReason }

/** The header's parts, where the datagram is long enough to hold them. */
const readHeader = (bytes: Buffer, encrypted: boolean) => {
  const senderLength = bytes[1] ?? 0
  const fixed = 2 + senderLength + 4 + 8 + 4 + (encrypted ? 4 : 0)
  if (senderLength === 0 || senderLength > maxSenderBytes || bytes.length < fixed + tagLength)
    return undefined
  return {
    length: fixed,
    sender: bytes.toString("utf8", 2, 2 + senderLength),
    incarnation: bytes.readUInt32BE(2 + senderLength),
    counter: bytes.readBigUInt64BE(2 + senderLength + 4),
    destination: bytes.readUInt32BE(2 + senderLength + 12),
  }
}

export class Opener {
  private readonly key: KeyObject
  private readonly encryptionKey: Buffer | undefined
  private readonly window: ReplayWindow
  private readonly maxPayloadBytes: number

  private readonly startedMonotonicMs = performance.now()
  private readonly destinations: ReadonlySet<number> | undefined

  /**
   * With `requireEncryption`, a datagram that is only authenticated is dropped as `unencrypted`.
   * `startedMicros`: when this receiver started (wall µs); with `toleratedOffsetMicros`, a
   * sender's first datagram needs a counter from `startedMicros - toleratedOffsetMicros` on, and
   * once that long has passed (on the monotonic clock) nothing sealed before the start is taken.
   * `destinations`: what this receiver is (`toNode(self)`, `toDomain(its domain)`); a datagram
   * sealed for anything else is dropped as `misdirected`.
   */
  constructor(
    key: Uint8Array,
    maxPayloadBytes: number,
    requireEncryption = false,
    startedMicros = 0,
    toleratedOffsetMicros = 0,
    destinations?: ReadonlyArray<string>,
  ) {
    this.destinations = destinations === undefined ? undefined : new Set(destinations.map(destinationHash))
    this.window = new ReplayWindow(
      reorderToleratedUs,
      BigInt(Math.floor(startedMicros - toleratedOffsetMicros)),
      toleratedOffsetMicros,
    )
    this.key = createSecretKey(deriveKey(key, "datagram authentication"))
    this.encryptionKey = requireEncryption ? deriveKey(key, "datagram encryption") : undefined
    this.maxPayloadBytes = maxPayloadBytes
  }

  open(datagram: Uint8Array): Opened {
    const bytes = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.length)
    const encrypted = ((bytes[0] ?? 0) & encryptedFlag) !== 0
    const header = readHeader(bytes, encrypted)
    if (header === undefined) return { ok: false, reason: "malformed-envelope" }
    if (bytes.length - header.length - tagLength > this.maxPayloadBytes)
      return { ok: false, reason: "oversized" }
    if (this.encryptionKey !== undefined && !encrypted) return { ok: false, reason: "unencrypted" }
    const code = bytes[0]! & ~encryptedFlag
    const channel: Channel | undefined = code === 1 ? "cdb" : code === 2 ? "monitor" : undefined
    const payload = encrypted ? this.decrypt(bytes, header.length) : this.verify(bytes, header.length)
    if (payload === undefined) return { ok: false, reason: "unauthenticated" }
    if (channel === undefined) return { ok: false, reason: "malformed-envelope" }
    if (this.destinations !== undefined && !this.destinations.has(header.destination))
      return { ok: false, reason: "misdirected" }
    const sinceStartUs = (performance.now() - this.startedMonotonicMs) * 1000
    if (!this.window.accept(header.sender, header.incarnation, header.counter, sinceStartUs))
      return { ok: false, reason: "replayed" }
    return {
      ok: true,
      channel,
      payload,
      sender: header.sender,
      incarnation: header.incarnation,
      counter: Number(header.counter),
    }
  }

  private verify(bytes: Buffer, headerLength: number): Uint8Array | undefined {
    const body = bytes.subarray(0, bytes.length - tagLength)
    const expected = createHmac("sha256", this.key).update(body).digest().subarray(0, tagLength)
    if (!timingSafeEqual(expected, bytes.subarray(bytes.length - tagLength))) return undefined
    return bytes.subarray(headerLength, bytes.length - tagLength)
  }

  private decrypt(bytes: Buffer, headerLength: number): Uint8Array | undefined {
    if (this.encryptionKey === undefined) return undefined
    const counter = bytes.subarray(headerLength - 16, headerLength - 8)
    const salt = bytes.subarray(headerLength - 4, headerLength)
    const decipher = createDecipheriv("aes-256-gcm", this.encryptionKey, Buffer.concat([salt, counter]))
    decipher.setAAD(bytes.subarray(0, headerLength))
    decipher.setAuthTag(bytes.subarray(bytes.length - tagLength))
    try {
      return Buffer.concat([
        decipher.update(bytes.subarray(headerLength, bytes.length - tagLength)),
        decipher.final(),
      ])
    } catch {
      return undefined
    }
  }
}
