/**
 * What the storage adapters share: a failure in the port's words, and a filesystem call whose
 * errors become `StorageError`s (ENOSPC: no-space; ENOENT: the pool is not there).
 */
import { Effect } from "effect"
import { StorageError, type StorageErrorReason } from "../../core/ports/storage.ts"

export const fail = (operation: string, target: string, reason: StorageErrorReason, detail: string) =>
  new StorageError({ reason, operation, target, detail })

export const io = <A>(operation: string, target: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (error) => {
      const text = error instanceof Error ? error.message : String(error)
      const code = (error as { code?: string }).code
      const reason: StorageErrorReason =
        code === "ENOSPC" ? "no-space" : code === "ENOENT" ? "no-such-pool" : "failed"
      return fail(operation, target, reason, text)
    },
  })
