import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Effect, Layer } from "effect"
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import { layerSqlite } from "../../adapters/store/sqlite.ts"
import { applyPersist, emptyImage, type Persist } from "../../core/cdb/durable.ts"
import { applyLogPersist, type DurableLog, type Entry, type LogPersist } from "../../core/decision/log.ts"
import { type DecidedState, type DecisionCommand, emptyDecided } from "../../core/decision/state.ts"
import { DurableStore } from "../../core/ports/store.ts"
import { changeStreams } from "../core/cdb/streams.ts"

const directory = mkdtempSync(join(tmpdir(), "acp-sqlite-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))
let databases = 0
const freshPath = () => join(directory, `node-${++databases}.db`)

const withStore = <A>(
  path: string,
  self: string,
  body: (store: DurableStore["Service"]) => Effect.Effect<A, unknown>,
) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const store = yield* DurableStore
        return yield* body(store)
      }).pipe(
        Effect.provide(Layer.fresh(layerSqlite({ path, self, retainChanges: 1000, synchronous: "FULL" }))),
      ),
    ),
  )

const byKey = (left: readonly [string, unknown], right: readonly [string, unknown]) =>
  left[0] < right[0] ? -1 : 1

const changes = changeStreams({ origins: ["a", "b", "self"], ops: ["put", "delete", "meta"], minLength: 0 })

describe("sqlite store", () => {
  it("loads exactly what applyPersist holds in memory, after any sequence of persisted steps", async () => {
    await fc.assert(
      fc.asyncProperty(changes, fc.integer({ min: 1, max: 8 }), async (all, stepSize) => {
        const path = freshPath()
        const steps: Array<Persist> = []
        for (let index = 0; index < all.length; index += stepSize)
          steps.push({ _tag: "Persist", changes: all.slice(index, index + stepSize) })
        const memory = emptyImage()
        for (const step of steps) applyPersist(memory, step, "self", 1000)
        // Persisted two at a time: a batch is one transaction, and must equal its steps applied in order.
        const batches = steps.flatMap((_, index) => (index % 2 === 0 ? [steps.slice(index, index + 2)] : []))
        await withStore(path, "self", (store) => Effect.forEach(batches, store.persist, { discard: true }))
        const loaded = await withStore(path, "self", (store) => store.load)
        expect(new Map([...loaded.image.entries].sort(byKey))).toEqual(
          new Map([...memory.entries].sort(byKey)),
        )
        expect(new Map([...loaded.image.meta].sort(byKey))).toEqual(new Map([...memory.meta].sort(byKey)))
        expect(new Map([...loaded.image.vector].sort(byKey))).toEqual(new Map([...memory.vector].sort(byKey)))
        expect(loaded.image.ownLog).toEqual(memory.ownLog)
      }),
      { numRuns: 40 },
    )
  })

  it("serves no value that fails its checksum: another origin's is asked again, its own restored from its log, else reported lost", async () => {
    const path = freshPath()
    const value = (text: string) => new TextEncoder().encode(text)
    const change = (origin: string, seq: number, id: string) => ({
      origin,
      seq,
      op: "put" as const,
      kind: "project",
      id,
      ms: 1_000 + seq,
      counter: 0,
      value: value(`${origin}-${id}`),
    })
    const persist: Persist = {
      _tag: "Persist",
      changes: [
        change("a", 1, "a1"),
        change("a", 2, "a2"),
        change("a", 3, "a3"),
        change("self", 1, "s1"),
        change("self", 2, "s2"),
        change("self", 3, "s3"),
      ],
    }
    await withStore(path, "self", (store) => store.persist([persist]))
    // Flip what is stored, behind SQLite's back: two values, and one own change's log row too.
    const db = new DatabaseSync(path)
    db.prepare("UPDATE entries SET value = ? WHERE id = ?").run(value("tampered"), "a2")
    db.prepare("UPDATE entries SET value = ? WHERE id = ?").run(value("tampered"), "s1")
    db.prepare("UPDATE entries SET value = ? WHERE id = ?").run(value("tampered"), "s2")
    db.prepare("UPDATE own_log SET value = ? WHERE seq = 2").run(value("tampered"))
    db.close()
    const loaded = await withStore(path, "self", (store) => store.load)
    const text = (id: string) => {
      const stored = loaded.image.entries.get(`project\u0000${id}`)?.value
      return stored === undefined || stored === null ? undefined : new TextDecoder().decode(stored)
    }
    expect(loaded.corrupted).toEqual(
      expect.arrayContaining([
        { kind: "project", id: "a2", origin: "a", seq: 2, outcome: "asked-again" },
        { kind: "project", id: "s1", origin: "self", seq: 1, outcome: "restored" },
        { kind: "project", id: "s2", origin: "self", seq: 2, outcome: "lost" },
      ]),
    )
    expect(text("a2")).toBeUndefined()
    expect(text("a1")).toBe("a-a1")
    // a's stream is rewound to before the bad value, so the node asks its peers from #2 on.
    expect(loaded.image.vector.get("a")).toBe(1)
    expect(text("s1")).toBe("self-s1")
    expect(text("s2")).toBeUndefined()
    expect(loaded.image.vector.get("self")).toBe(3)
    // The own log answers repairs by position: it keeps what follows the bad row, consecutive.
    expect(loaded.image.ownLog.map((kept) => kept.seq)).toEqual([3])
  })

  it("keeps the decision log as applyLogPersist does in memory; an entry that fails its checksum ends the log there", async () => {
    const path = freshPath()
    const entry = (index: number, term: number): Entry<DecisionCommand> => ({
      index,
      term,
      body: {
        _tag: "Command",
        command: { _tag: "Place", system: `s${index}`, node: "n1" },
        origin: "self",
        ticket: index,
      },
    })
    const steps: ReadonlyArray<LogPersist<DecisionCommand, DecidedState>> = [
      { _tag: "PersistEntries", from: 1, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] },
      // A new primary's log wins from index 3 on.
      { _tag: "PersistEntries", from: 3, entries: [entry(3, 2), entry(4, 2)] },
      {
        _tag: "PersistSnapshot",
        snapshot: {
          index: 2,
          term: 1,
          state: { ...emptyDecided, epoch: 2 },
          membership: { voters: ["self"], learners: [] },
        },
      },
      { _tag: "PersistEntries", from: 5, entries: [entry(5, 2), entry(6, 2)] },
    ]
    let memory: DurableLog<DecisionCommand, DecidedState> = { snapshot: undefined, entries: [] }
    for (const step of steps) memory = applyLogPersist(memory, step)
    await withStore(path, "self", (store) =>
      Effect.forEach(steps, (step) => store.commit({ persists: [], decisions: [step] }), { discard: true }),
    )
    const loaded = await withStore(path, "self", (store) => store.load)
    expect(loaded.decisions).toEqual(memory)
    expect(loaded.decisions.entries.map((held) => `${held.index}@${held.term}`)).toEqual([
      "3@2",
      "4@2",
      "5@2",
      "6@2",
    ])
    const db = new DatabaseSync(path)
    db.prepare("UPDATE decision_log SET body = replace(body, 's5', 's9') WHERE idx = 5").run()
    db.close()
    const corrupted = await withStore(path, "self", (store) => store.load)
    expect(corrupted.decisions.entries.map((held) => held.index)).toEqual([3, 4])
  })

  it("keeps the vote, counts incarnations and keeps the seal clock's largest lead across reopening", async () => {
    const path = freshPath()
    const first = await withStore(path, "n1", (store) =>
      Effect.andThen(store.persistVote({ term: 7, votedFor: "n2" }), store.recordStart),
    )
    expect(first).toEqual({ incarnation: 1, sealLeadUs: 0 })
    await withStore(path, "n1", (store) =>
      Effect.andThen(store.persistSealLead(26_893_000), store.persistSealLead(5_000)),
    )
    const second = await withStore(path, "n1", (store) => store.recordStart)
    const loaded = await withStore(path, "n1", (store) => store.load)
    expect(loaded.vote).toEqual({ term: 7, votedFor: "n2" })
    // The lead only grows: the lower one written after it is ignored.
    expect(second).toEqual({ incarnation: 2, sealLeadUs: 26_893_000 })
    expect(loaded.incarnation).toBe(2)
  })

  it("refuses a data directory that belongs to another node, with a clear error, and leaves it intact", async () => {
    const path = freshPath()
    await withStore(path, "n1", (store) =>
      store.persist([
        {
          _tag: "Persist",
          changes: [
            {
              origin: "n1",
              seq: 1,
              op: "put",
              kind: "system",
              id: "vm",
              ms: 1,
              counter: 0,
              value: new Uint8Array([1]),
            },
          ],
        },
      ]),
    )
    const error = await Effect.runPromise(
      Effect.flip(
        Effect.scoped(
          Effect.provide(
            Effect.gen(function* () {
              return yield* DurableStore
            }),
            Layer.fresh(layerSqlite({ path, self: "n2", retainChanges: 10, synchronous: "FULL" })),
          ),
        ),
      ),
    )
    expect(error).toMatchObject({ _tag: "StoreError", reason: "open-failed" })
    expect(error.detail).toContain("belongs to node n1, not n2")
    const loaded = await withStore(path, "n1", (store) => store.load)
    expect(loaded.image.entries.size).toBe(1)
  })
})
