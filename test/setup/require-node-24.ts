// Every test file runs this first: the project pins Node 24 (package.json devDependencies),
// and a run on the machine's own Node would test something users never run.
const major = Number(process.versions.node.split(".")[0])
if (major !== 24) {
  throw new Error(
    `ACP's tests need Node 24 (found ${process.versions.node} at ${process.execPath}). ` +
      "Run them through npm (`npm test`), which puts the project's pinned Node first on PATH.",
  )
}
