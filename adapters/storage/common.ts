/**
 * What the storage adapters share: a failure in the port's words, and a filesystem call whose
 * errors become `StorageError`s (ENOSPC: no-space; ENOENT: the pool is not there).
 */
import { mkdir, stat } from "node:fs/promises"
import { dirname } from "node:path"
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

/**
 * `mkdir -p`, one level at a time. Node's recursive `mkdir` never returns for a path whose
 * parent exists but refuses children with ENOENT (anything under /proc: it loops), so a pool
 * with such a path would hang its node's storage calls for good; this fails with ENOENT instead.
 */
export const makeDirectory = async (path: string): Promise<void> => {
  try {
    await mkdir(path)
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === "EEXIST") {
      if ((await stat(path)).isDirectory()) return
      throw error
    }
    const parent = dirname(path)
    if (code !== "ENOENT" || parent === path) throw error
    await makeDirectory(parent)
    await mkdir(path).catch(async (again: { code?: string }) => {
      if (again.code !== "EEXIST" || !(await stat(path)).isDirectory()) throw again
    })
  }
}
