import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Interop tests start servers and spawn real clients; two cores, so keep files in parallel modest.
    maxWorkers: 2,
  },
});
