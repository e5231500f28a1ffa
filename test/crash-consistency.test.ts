// Crash consistency: every crash state a power cut could leave reopens to a commit, checks
// clean, and holds that commit's data. Two files, so the two test workers share the work;
// npm run crash runs longer.

import { describe, expect, it } from "vitest";
import { describeFailure, runCrashSeed } from "./crash/harness.js";
import { testSeeds } from "./support/random.js";

const STATES_PER_SEED = 2900;
// 4 seeds here and 4 in the long-workload file: at least 20,000 crash states per run.
const STATES_PER_SEED_MIN = 2500;

describe("crash states", () => {
  for (const seed of testSeeds(4)) {
    it(`every crash state of workload ${seed} reopens to a commit with its data`, async () => {
      const report = await runCrashSeed(seed, STATES_PER_SEED);
      expect(report.failures.map(describeFailure)).toEqual([]);
      expect(report.states).toBeGreaterThanOrEqual(STATES_PER_SEED_MIN);
    });
  }
});
