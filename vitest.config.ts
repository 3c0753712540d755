import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup/require-node-24.ts"],
    pool: "forks",
    testTimeout: 60_000,
    reporters: ["default", "./test/setup/summary-reporter.ts"],
  },
})
