import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Network tests build namespaces and spawn daemons; run files one at a time
    // on this 2-core machine so timing-sensitive transfers are not starved.
    fileParallelism: false,
    pool: "forks",
  },
});
