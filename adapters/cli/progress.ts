/**
 * Progress of a long job on stderr. On a terminal one line is redrawn in place; anywhere else
 * (a file, a pipe, CI) a plain line is written only when the job reaches a new tenth of its
 * work, or when the text of a job without a fraction changes — so a 500-seed sweep logs ten
 * lines, not 500 redraws.
 */

export interface Progress {
  /** The job's state now; `fraction` (0..1) is how much of it is done, where that is known. */
  readonly update: (line: string, fraction?: number) => void
  /** Ends the redrawn line (a terminal) and writes `line`, if given, as a plain one. */
  readonly done: (line?: string) => void
  /** A line that stays (a failure as it happens), written above the redrawn one. */
  readonly note: (line: string) => void
}

export const progressOn = (
  stream: { readonly isTTY?: boolean; readonly write: (text: string) => unknown } = process.stderr,
  enabled = true,
): Progress => {
  const terminal = stream.isTTY === true
  let drawn = false
  let lastPlain: string | undefined
  let lastTenth = -1
  return {
    update: (line, fraction) => {
      if (!enabled) return
      if (terminal) {
        stream.write(`\r${line}\x1b[K`)
        drawn = true
        return
      }
      if (fraction === undefined) {
        if (line === lastPlain) return
      } else {
        const tenth = Math.floor(Math.min(1, Math.max(0, fraction)) * 10)
        if (tenth === lastTenth) return
        lastTenth = tenth
      }
      lastPlain = line
      stream.write(`${line}\n`)
    },
    note: (line) => {
      if (terminal && drawn) stream.write("\r\x1b[K")
      drawn = false
      stream.write(`${line}\n`)
    },
    done: (line) => {
      if (!enabled) return
      if (drawn) stream.write("\n")
      drawn = false
      lastPlain = undefined
      lastTenth = -1
      if (line !== undefined) stream.write(`${line}\n`)
    },
  }
}
