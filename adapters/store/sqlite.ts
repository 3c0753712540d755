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
import { Effect, Layer } from "effect"
import type { Change } from "../../core/cdb/codec.ts"
import { type DurableImage, emptyImage, entryKey, metaKey, type Persist } from "../../core/cdb/durable.ts"
import type { DurableVote } from "../../core/monitor/election.ts"
import { DurableStore, StoreError } from "../../core/ports/store.ts"

const schemaVersion = 1

const ddl = `
CREATE TABLE IF NOT EXISTS entries (kind TEXT NOT NULL, id TEXT NOT NULL, value BLOB, ms INTEGER NOT NULL,
  counter INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (kind TEXT NOT NULL, id TEXT NOT NULL, node TEXT NOT NULL, value BLOB NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY (kind, id, node)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vector (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS own_log (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
  ms INTEGER NOT NULL, counter INTEGER NOT NULL, value BLOB);
CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, number INTEGER, text TEXT) WITHOUT ROWID;
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

export const openSqlite = (options: SqliteOptions) =>
  Effect.try({
    try: () => {
      mkdirSync(dirname(options.path), { recursive: true })
      const db = new DatabaseSync(options.path)
      db.exec(
        `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous}; PRAGMA busy_timeout = 5000;`,
      )
      db.exec(ddl)
      const version = db.prepare("SELECT number FROM node_state WHERE key = 'schema'").get() as
        | { number: number }
        | undefined
      if (version === undefined)
        db.prepare("INSERT INTO node_state (key, number) VALUES ('schema', ?)").run(schemaVersion)
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
    },
    catch: fail("open-failed"),
  })

/** The statements of one open database, prepared once. */
const statements = (db: DatabaseSync) => ({
  putEntry:
    db.prepare(`INSERT INTO entries (kind, id, value, ms, counter, origin, seq) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, ms = excluded.ms, counter = excluded.counter,
      origin = excluded.origin, seq = excluded.seq
    WHERE (excluded.ms, excluded.counter, excluded.origin) > (entries.ms, entries.counter, entries.origin)`),
  putMeta: db.prepare(`INSERT INTO meta (kind, id, node, value, seq) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (kind, id, node) DO UPDATE SET value = excluded.value, seq = excluded.seq WHERE excluded.seq > meta.seq`),
  advance: db.prepare(`INSERT INTO vector (origin, seq) VALUES (?, ?)
    ON CONFLICT (origin) DO UPDATE SET seq = max(vector.seq, excluded.seq)`),
  logOwn: db.prepare(
    "INSERT OR REPLACE INTO own_log (seq, op, kind, id, ms, counter, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
  ),
  trimOwn: db.prepare("DELETE FROM own_log WHERE seq <= ?"),
  setNumber: db.prepare(
    "INSERT INTO node_state (key, number, text) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET number = excluded.number, text = excluded.text",
  ),
})

const applyChange = (sql: ReturnType<typeof statements>, change: Change, self: string) => {
  if (change.op === "meta") sql.putMeta.run(change.kind, change.id, change.origin, change.value!, change.seq)
  else
    sql.putEntry.run(
      change.kind,
      change.id,
      change.value,
      change.ms,
      change.counter,
      change.origin,
      change.seq,
    )
  if (change.origin === self) {
    sql.logOwn.run(change.seq, change.op, change.kind, change.id, change.ms, change.counter, change.value)
  }
}

const loadImage = (db: DatabaseSync): DurableImage => {
  const image = emptyImage()
  for (const row of db
    .prepare("SELECT kind, id, value, ms, counter, origin, seq FROM entries")
    .all() as Array<Record<string, never>>) {
    const entry = row as unknown as {
      kind: string
      id: string
      value: Uint8Array | null
      ms: number
      counter: number
      origin: string
      seq: number
    }
    image.entries.set(entryKey(entry.kind, entry.id), {
      kind: entry.kind,
      id: entry.id,
      value: entry.value,
      version: { ms: entry.ms, counter: entry.counter, origin: entry.origin },
      seq: entry.seq,
    })
  }
  for (const row of db.prepare("SELECT kind, id, node, value, seq FROM meta").all()) {
    const slot = row as unknown as { kind: string; id: string; node: string; value: Uint8Array; seq: number }
    image.meta.set(metaKey(slot.kind, slot.id, slot.node), {
      kind: slot.kind,
      id: slot.id,
      node: slot.node,
      value: slot.value,
      seq: slot.seq,
    })
  }
  for (const row of db.prepare("SELECT origin, seq FROM vector").all()) {
    const position = row as unknown as { origin: string; seq: number }
    image.vector.set(position.origin, position.seq)
  }
  return image
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
        for (const entry of persist.entries) {
          if (entry.tag === "meta")
            sql.putMeta.run(entry.kind, entry.id, entry.origin, entry.value!, entry.seq)
          else
            sql.putEntry.run(
              entry.kind,
              entry.id,
              entry.value,
              entry.ms,
              entry.counter,
              entry.origin,
              entry.seq,
            )
        }
        for (const [origin, seq] of persist.vector) sql.advance.run(origin, seq)
      }
      return DurableStore.of({
        load: Effect.try({
          try: () => {
            const image = loadImage(db)
            for (const row of db
              .prepare("SELECT seq, op, kind, id, ms, counter, value FROM own_log ORDER BY seq")
              .all()) {
              const own = row as unknown as Omit<Change, "origin">
              image.ownLog.push({
                origin: options.self,
                seq: own.seq,
                op: own.op,
                kind: own.kind,
                id: own.id,
                ms: own.ms,
                counter: own.counter,
                value: own.value,
              })
            }
            const term = db.prepare("SELECT number, text FROM node_state WHERE key = 'vote'").get() as
              | { number: number; text: string | null }
              | undefined
            const incarnation = db.prepare("SELECT number FROM node_state WHERE key = 'incarnation'").get() as
              | { number: number }
              | undefined
            const vote: DurableVote = { term: term?.number ?? 0, votedFor: term?.text ?? null }
            return { image, vote, incarnation: incarnation?.number ?? 0 }
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
        persistVote: (vote: DurableVote) =>
          transaction(() => sql.setNumber.run("vote", vote.term, vote.votedFor)),
        nextIncarnation: transaction(() => {
          const row = db.prepare("SELECT number FROM node_state WHERE key = 'incarnation'").get() as
            | { number: number }
            | undefined
          const next = (row?.number ?? 0) + 1
          sql.setNumber.run("incarnation", next, null)
          return next
        }),
      })
    }),
  )
