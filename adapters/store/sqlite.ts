/**
 * The durable store on SQLite (`node:sqlite`, built into Node 24): WAL, and `synchronous=FULL`
 * so a committed step is on disk before the driver acknowledges the writes in it (`NORMAL`
 * trades that for speed: a crash may lose the last commits, never corrupt the file). Each
 * `Persist` is one transaction; last-writer-wins is done by SQLite itself with a row-value
 * comparison, exactly as `mergeEntry` does in memory.
 */
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { crc32 } from "node:zlib"
import { Effect, Layer, Schedule } from "effect"
import type { Change } from "../../core/cdb/codec.ts"
import { emptyImage, entryKey, metaKey, type Persist } from "../../core/cdb/durable.ts"
import type { DurableLog, Entry, LogPersist, Snapshot } from "../../core/decision/log.ts"
import type { DecidedState, DecisionCommand } from "../../core/decision/state.ts"
import type { DurableVote } from "../../core/monitor/election.ts"
import { type CorruptedValue, DurableStore, StoreError } from "../../core/ports/store.ts"

/** 2: every stored value carries a CRC-32 of itself and its identity (version 1 is migrated). */
const schemaVersion = 2

const ddl = `
CREATE TABLE IF NOT EXISTS entries (kind TEXT NOT NULL, id TEXT NOT NULL, value BLOB, ms INTEGER NOT NULL,
  counter INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, checksum INTEGER,
  PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (kind TEXT NOT NULL, id TEXT NOT NULL, node TEXT NOT NULL, value BLOB NOT NULL,
  seq INTEGER NOT NULL, checksum INTEGER, PRIMARY KEY (kind, id, node)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vector (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS own_log (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
  ms INTEGER NOT NULL, counter INTEGER NOT NULL, value BLOB, checksum INTEGER);
CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, number INTEGER, text TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decision_log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, body TEXT NOT NULL,
  checksum INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS decision_snapshot (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL,
  term INTEGER NOT NULL, body TEXT NOT NULL, checksum INTEGER NOT NULL);
`

export interface SqliteOptions {
  readonly path: string
  readonly self: string
  /** How many of its own changes the node keeps to repair others after a restart. */
  readonly retainChanges: number
  readonly synchronous: "FULL" | "NORMAL"
}

const fail = (reason: StoreError["reason"]) => (error: unknown) =>
  new StoreError({ reason, detail: error instanceof Error ? error.message : String(error) })

/**
 * The CRC-32 of a stored value together with what identifies it (kind, id, version, origin,
 * sequence), so a value moved to another row fails as surely as a flipped byte.
 */
const checksum = (
  kind: string,
  id: string,
  origin: string,
  ms: number,
  counter: number,
  seq: number,
  value: Uint8Array | null,
): number => {
  const identity = crc32(`${kind}\u0000${id}\u0000${origin}\u0000${ms}\u0000${counter}\u0000${seq}\u0000`)
  return value === null ? crc32("\u0000null", identity) : crc32(value, identity)
}

/** A failed commit, named by what the storage said (SQLite's message and code) and the file. */
const writeFailure = (path: string) => (error: unknown) => {
  const message = error instanceof Error ? error.message : String(error)
  const code = (error as { errcode?: number }).errcode
  // SQLITE_FULL is 13; SQLITE_IOERR 10 (with extended codes in the high bits).
  const reason =
    code === 13 || /disk is full|SQLITE_FULL|ENOSPC/i.test(message)
      ? "disk-full"
      : (code ?? 0) % 256 === 10 || /disk I\/O error|SQLITE_IOERR|EIO/i.test(message)
        ? "io-error"
        : "write-failed"
  return new StoreError({ reason, detail: `${path}: ${message}` })
}

/** Schema 1 to 2: a checksum column in every table of values, filled from what is there. */
const migrateToChecksums = (db: DatabaseSync) => {
  db.exec("BEGIN")
  for (const table of ["entries", "meta", "own_log"])
    db.exec(`ALTER TABLE ${table} ADD COLUMN checksum INTEGER`)
  const self = (db.prepare("SELECT text FROM node_state WHERE key = 'self'").get() as { text: string }).text
  const entries = db.prepare("UPDATE entries SET checksum = ? WHERE kind = ? AND id = ?")
  for (const row of db
    .prepare("SELECT kind, id, value, ms, counter, origin, seq FROM entries")
    .all() as unknown as Array<Row>)
    entries.run(
      checksum(row.kind, row.id, row.origin, row.ms, row.counter, row.seq, row.value),
      row.kind,
      row.id,
    )
  const meta = db.prepare("UPDATE meta SET checksum = ? WHERE kind = ? AND id = ? AND node = ?")
  for (const row of db.prepare("SELECT kind, id, node, value, seq FROM meta").all() as unknown as Array<Row>)
    meta.run(checksum(row.kind, row.id, row.node, 0, 0, row.seq, row.value), row.kind, row.id, row.node)
  const own = db.prepare("UPDATE own_log SET checksum = ? WHERE seq = ?")
  for (const row of db
    .prepare("SELECT seq, kind, id, ms, counter, value FROM own_log")
    .all() as unknown as Array<Row>)
    own.run(checksum(row.kind, row.id, self, row.ms, row.counter, row.seq, row.value), row.seq)
  db.prepare("UPDATE node_state SET number = ? WHERE key = 'schema'").run(schemaVersion)
  db.exec("COMMIT")
}

interface Row {
  readonly kind: string
  readonly id: string
  readonly node: string
  readonly origin: string
  readonly op: Change["op"]
  readonly value: Uint8Array | null
  readonly ms: number
  readonly counter: number
  readonly seq: number
  readonly checksum: number | null
}

export const openSqlite = (options: SqliteOptions) =>
  Effect.try({
    try: () => {
      mkdirSync(dirname(options.path), { recursive: true })
      const db = new DatabaseSync(options.path)
      // Closed again where it cannot be made ready: each try again opens it afresh.
      try {
        db.exec(
          `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous}; PRAGMA busy_timeout = 5000;`,
        )
        db.exec(ddl)
        const version = db.prepare("SELECT number FROM node_state WHERE key = 'schema'").get() as
          | { number: number }
          | undefined
        if (version === undefined)
          db.prepare("INSERT INTO node_state (key, number) VALUES ('schema', ?)").run(schemaVersion)
        else if (version.number === 1) migrateToChecksums(db)
        else if (version.number !== schemaVersion)
          throw new Error(`schema version ${version.number}, this build reads ${schemaVersion}`)
        const self = db.prepare("SELECT text FROM node_state WHERE key = 'self'").get() as
          | { text: string }
          | undefined
        if (self === undefined)
          db.prepare("INSERT INTO node_state (key, text) VALUES ('self', ?)").run(options.self)
        else if (self.text !== options.self)
          throw new Error(`this data directory belongs to node ${self.text}, not ${options.self}`)
        return db
      } catch (error) {
        db.close()
        throw error
      }
    },
    // A full disk or a failing device is the storage's refusal, not a store that cannot be read.
    catch: (error) => {
      const failure = writeFailure(options.path)(error)
      return failure.reason === "write-failed" ? fail("open-failed")(error) : failure
    },
  }).pipe(
    // Opened again once space returns: a node restarted onto a full disk waits, saying why each
    // time, as a running one writes again (found by the fault harness, seed 5005: the disk filled
    // in the second between counting a restart and opening the store for the node, which died).
    Effect.tapError((error) =>
      error.reason === "disk-full" || error.reason === "io-error"
        ? Effect.logError(
            `cannot open ${options.path} (${error.reason}): ${error.detail}; trying again every second`,
          )
        : Effect.void,
    ),
    Effect.retry({
      schedule: Schedule.spaced("1 second"),
      while: (error) => error.reason === "disk-full" || error.reason === "io-error",
    }),
  )

/** The statements of one open database, prepared once. */
const statements = (db: DatabaseSync) => ({
  putEntry:
    db.prepare(`INSERT INTO entries (kind, id, value, ms, counter, origin, seq, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, ms = excluded.ms, counter = excluded.counter,
      origin = excluded.origin, seq = excluded.seq, checksum = excluded.checksum
    WHERE (excluded.ms, excluded.counter, excluded.origin) > (entries.ms, entries.counter, entries.origin)`),
  putMeta: db.prepare(`INSERT INTO meta (kind, id, node, value, seq, checksum) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (kind, id, node) DO UPDATE SET value = excluded.value, seq = excluded.seq, checksum = excluded.checksum
    WHERE excluded.seq > meta.seq`),
  advance: db.prepare(`INSERT INTO vector (origin, seq) VALUES (?, ?)
    ON CONFLICT (origin) DO UPDATE SET seq = max(vector.seq, excluded.seq)`),
  logOwn: db.prepare(
    "INSERT OR REPLACE INTO own_log (seq, op, kind, id, ms, counter, value, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  ),
  trimOwn: db.prepare("DELETE FROM own_log WHERE seq <= ?"),
  dropDecisionsFrom: db.prepare("DELETE FROM decision_log WHERE idx >= ?"),
  dropDecisionsUpTo: db.prepare("DELETE FROM decision_log WHERE idx <= ?"),
  putDecision: db.prepare("INSERT INTO decision_log (idx, term, body, checksum) VALUES (?, ?, ?, ?)"),
  putDecisionSnapshot: db.prepare(
    "INSERT OR REPLACE INTO decision_snapshot (id, idx, term, body, checksum) VALUES (0, ?, ?, ?, ?)",
  ),
  raiseSealLead: db.prepare(
    "INSERT INTO node_state (key, number) VALUES ('seal-lead', ?) ON CONFLICT (key) DO UPDATE SET number = max(number, excluded.number)",
  ),
  setNumber: db.prepare(
    "INSERT INTO node_state (key, number, text) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET number = excluded.number, text = excluded.text",
  ),
})

/** One entry or meta row, with the checksum of what it holds. */
const putRow = (
  sql: ReturnType<typeof statements>,
  row: {
    readonly meta: boolean
    readonly kind: string
    readonly id: string
    readonly origin: string
    readonly ms: number
    readonly counter: number
    readonly seq: number
    readonly value: Uint8Array | null
  },
) => {
  const { kind, id, origin, ms, counter, seq, value } = row
  if (row.meta) sql.putMeta.run(kind, id, origin, value!, seq, checksum(kind, id, origin, 0, 0, seq, value))
  else
    sql.putEntry.run(
      kind,
      id,
      value,
      ms,
      counter,
      origin,
      seq,
      checksum(kind, id, origin, ms, counter, seq, value),
    )
}

const applyChange = (sql: ReturnType<typeof statements>, change: Change, self: string) => {
  putRow(sql, { ...change, meta: change.op === "meta" })
  const { kind, id, ms, counter, seq, value } = change
  if (change.origin === self)
    sql.logOwn.run(
      seq,
      change.op,
      kind,
      id,
      ms,
      counter,
      value,
      checksum(kind, id, self, ms, counter, seq, value),
    )
}

type Decisions = DurableLog<DecisionCommand, DecidedState>

/** The decision log's rows: JSON bodies with a CRC-32 of index, term and body. */
const persistDecision = (
  sql: ReturnType<typeof statements>,
  persist: LogPersist<DecisionCommand, DecidedState>,
) => {
  if (persist._tag === "PersistEntries") {
    sql.dropDecisionsFrom.run(persist.from)
    for (const entry of persist.entries) {
      const body = JSON.stringify(entry.body)
      sql.putDecision.run(
        entry.index,
        entry.term,
        body,
        crc32(`${entry.index}\u0000${entry.term}\u0000${body}`),
      )
    }
    return
  }
  const { snapshot } = persist
  const body = JSON.stringify({ state: snapshot.state, membership: snapshot.membership })
  sql.putDecisionSnapshot.run(
    snapshot.index,
    snapshot.term,
    body,
    crc32(`${snapshot.index}\u0000${snapshot.term}\u0000${body}`),
  )
  sql.dropDecisionsUpTo.run(snapshot.index)
}

/**
 * The decision log as stored. An entry that fails its checksum ends the log there (it and what
 * follows are left out, and the primary sends them again); a snapshot that fails is an error
 * (what it decided cannot be asked of anyone by this node alone).
 */
const loadDecisions = (db: DatabaseSync): { decisions: Decisions; dropped: number } => {
  const row = db.prepare("SELECT idx, term, body, checksum FROM decision_snapshot WHERE id = 0").get() as
    | { idx: number; term: number; body: string; checksum: number }
    | undefined
  if (row !== undefined && row.checksum !== crc32(`${row.idx}\u0000${row.term}\u0000${row.body}`))
    throw new Error("the decision log's snapshot fails its checksum")
  const parsed =
    row === undefined
      ? undefined
      : (JSON.parse(row.body) as Pick<Snapshot<DecidedState>, "state" | "membership">)
  const snapshot =
    row === undefined || parsed === undefined ? undefined : { index: row.idx, term: row.term, ...parsed }
  const entries: Array<Entry<DecisionCommand>> = []
  let dropped = 0
  let expected = (snapshot?.index ?? 0) + 1
  for (const entry of db
    .prepare("SELECT idx, term, body, checksum FROM decision_log ORDER BY idx")
    .all() as Array<{
    idx: number
    term: number
    body: string
    checksum: number
  }>) {
    if (
      dropped > 0 ||
      entry.idx !== expected ||
      entry.checksum !== crc32(`${entry.idx}\u0000${entry.term}\u0000${entry.body}`)
    ) {
      dropped++
      continue
    }
    entries.push({
      index: entry.idx,
      term: entry.term,
      body: JSON.parse(entry.body) as Entry<DecisionCommand>["body"],
    })
    expected++
  }
  return { decisions: { snapshot, entries }, dropped }
}

/**
 * The durable image, every value checked against its checksum. A value that fails is left out;
 * another origin's stream is rewound to just before it, so the node asks its peers for it again
 * (by repair, or a snapshot); one of this node's own is restored from its own log where that
 * still holds it (checked too), else reported lost (the node then asks a peer for a snapshot).
 */
const loadImage = (db: DatabaseSync, self: string) => {
  const image = emptyImage()
  const corrupted: Array<CorruptedValue> = []
  const own = new Map<number, Change>()
  for (const row of db
    .prepare("SELECT seq, op, kind, id, ms, counter, value, checksum FROM own_log ORDER BY seq")
    .all() as unknown as Array<Row>) {
    if (
      row.checksum !== null &&
      row.checksum !== checksum(row.kind, row.id, self, row.ms, row.counter, row.seq, row.value)
    )
      continue
    const change: Change = {
      origin: self,
      seq: row.seq,
      op: row.op,
      kind: row.kind,
      id: row.id,
      ms: row.ms,
      counter: row.counter,
      value: row.value,
    }
    own.set(row.seq, change)
    // The log answers peers' repairs by position, so it must be consecutive: a row missing or
    // failing its checksum ends what is kept before it (peers asking for more get a snapshot).
    const last = image.ownLog[image.ownLog.length - 1]
    if (last !== undefined && last.seq + 1 !== row.seq) image.ownLog.length = 0
    image.ownLog.push(change)
  }
  const rewind = new Map<string, number>()
  const failed = (row: Row, origin: string) => {
    if (origin === self) {
      const kept = own.get(row.seq)
      const restored = kept !== undefined && kept.kind === row.kind && kept.id === row.id
      corrupted.push({
        kind: row.kind,
        id: row.id,
        origin,
        seq: row.seq,
        outcome: restored ? "restored" : "lost",
      })
      return restored ? kept : undefined
    }
    rewind.set(origin, Math.min(rewind.get(origin) ?? Number.MAX_SAFE_INTEGER, row.seq - 1))
    corrupted.push({ kind: row.kind, id: row.id, origin, seq: row.seq, outcome: "asked-again" })
    return undefined
  }
  for (const row of db
    .prepare("SELECT kind, id, value, ms, counter, origin, seq, checksum FROM entries")
    .all() as unknown as Array<Row>) {
    let value = row.value
    if (
      row.checksum !== null &&
      row.checksum !== checksum(row.kind, row.id, row.origin, row.ms, row.counter, row.seq, row.value)
    ) {
      const restored = failed(row, row.origin)
      if (restored === undefined || restored.ms !== row.ms || restored.counter !== row.counter) continue
      value = restored.value
    }
    image.entries.set(entryKey(row.kind, row.id), {
      kind: row.kind,
      id: row.id,
      value,
      version: { ms: row.ms, counter: row.counter, origin: row.origin },
      seq: row.seq,
    })
  }
  for (const row of db
    .prepare("SELECT kind, id, node, value, seq, checksum FROM meta")
    .all() as unknown as Array<Row>) {
    if (
      row.checksum !== null &&
      row.checksum !== checksum(row.kind, row.id, row.node, 0, 0, row.seq, row.value)
    ) {
      const restored = failed(row, row.node)
      if (restored === undefined) continue
    }
    image.meta.set(metaKey(row.kind, row.id, row.node), {
      kind: row.kind,
      id: row.id,
      node: row.node,
      value: row.value!,
      seq: row.seq,
    })
  }
  for (const row of db.prepare("SELECT origin, seq FROM vector").all()) {
    const position = row as unknown as { origin: string; seq: number }
    image.vector.set(
      position.origin,
      Math.min(position.seq, rewind.get(position.origin) ?? Number.MAX_SAFE_INTEGER),
    )
  }
  return { image, corrupted }
}

export const layerSqlite = (options: SqliteOptions) =>
  Layer.effect(
    DurableStore,
    Effect.gen(function* () {
      const db = yield* Effect.acquireRelease(openSqlite(options), (db) => Effect.sync(() => db.close()))
      const sql = statements(db)
      // What must reach the disk before the commit returns: this node's own changes (a write is
      // acknowledged only once durable), its vote and its incarnation. Changes received from
      // others are committed without waiting for the fsync (WAL, synchronous=NORMAL: a process
      // crash loses nothing, a power loss only the newest ones, which the node then asks again
      // like any gap). With synchronous=NORMAL configured, nothing waits.
      let mode: "FULL" | "NORMAL" = options.synchronous
      const syncMode = (wanted: "FULL" | "NORMAL") => {
        const effective = options.synchronous === "FULL" ? wanted : "NORMAL"
        if (effective === mode) return
        db.exec(`PRAGMA synchronous = ${effective}`)
        mode = effective
      }
      const transaction = <A>(body: () => A, durable = true) =>
        Effect.try({
          try: () => {
            syncMode(durable ? "FULL" : "NORMAL")
            db.exec("BEGIN")
            try {
              const result = body()
              db.exec("COMMIT")
              return result
            } catch (error) {
              // SQLite may have rolled back already (a full disk does): the original error counts.
              try {
                db.exec("ROLLBACK")
              } catch {}
              throw error
            }
          },
          catch: writeFailure(options.path),
        })
      const persistOne = (persist: Persist) => {
        if (persist._tag === "Persist") {
          let lastOwn = 0
          // Stream positions once per origin, at the end: one statement per change fewer.
          const upTo = new Map<string, number>()
          for (const change of persist.changes) {
            applyChange(sql, change, options.self)
            upTo.set(change.origin, Math.max(upTo.get(change.origin) ?? 0, change.seq))
            if (change.origin === options.self) lastOwn = change.seq
          }
          for (const [origin, seq] of upTo) sql.advance.run(origin, seq)
          if (lastOwn > options.retainChanges * 2) sql.trimOwn.run(lastOwn - options.retainChanges)
          return
        }
        for (const entry of persist.entries) putRow(sql, { ...entry, meta: entry.tag === "meta" })
        for (const [origin, seq] of persist.vector) sql.advance.run(origin, seq)
      }
      return DurableStore.of({
        load: Effect.try({
          try: () => {
            const { image, corrupted } = loadImage(db, options.self)
            const term = db.prepare("SELECT number, text FROM node_state WHERE key = 'vote'").get() as
              | { number: number; text: string | null }
              | undefined
            const incarnation = db.prepare("SELECT number FROM node_state WHERE key = 'incarnation'").get() as
              | { number: number }
              | undefined
            const vote: DurableVote = { term: term?.number ?? 0, votedFor: term?.text ?? null }
            const { decisions } = loadDecisions(db)
            return { image, vote, incarnation: incarnation?.number ?? 0, corrupted, decisions }
          },
          catch: fail("corrupt"),
        }),
        persist: (persists: ReadonlyArray<Persist>) =>
          transaction(
            () => {
              for (const persist of persists) persistOne(persist)
            },
            persists.some(
              (persist) =>
                persist._tag === "Persist" &&
                persist.changes.some((change) => change.origin === options.self),
            ),
          ),
        commit: (commit) =>
          transaction(
            () => {
              for (const persist of commit.persists) persistOne(persist)
              if (commit.vote !== undefined) sql.setNumber.run("vote", commit.vote.term, commit.vote.votedFor)
              for (const persist of commit.decisions ?? []) persistDecision(sql, persist)
            },
            commit.vote !== undefined ||
              (commit.decisions ?? []).length > 0 ||
              commit.persists.some(
                (persist) =>
                  persist._tag === "Persist" &&
                  persist.changes.some((change) => change.origin === options.self),
              ),
          ),
        persistVote: (vote: DurableVote) =>
          transaction(() => sql.setNumber.run("vote", vote.term, vote.votedFor)),
        recordStart: transaction(() => {
          const number = (key: string) =>
            (
              db.prepare("SELECT number FROM node_state WHERE key = ?").get(key) as
                | { number: number }
                | undefined
            )?.number ?? 0
          const incarnation = number("incarnation") + 1
          sql.setNumber.run("incarnation", incarnation, null)
          return { incarnation, sealLeadUs: number("seal-lead") }
        }),
        persistSealLead: (leadUs) => transaction(() => sql.raiseSealLead.run(Math.floor(leadUs))),
      })
    }),
  )
