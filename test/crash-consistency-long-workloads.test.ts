// The same crash harness over longer workloads: more commits, fuller and deeper trees.

import { describe, expect, it } from "vitest";
import { DEFAULT_SHAPE, describeFailure, runCrashSeed } from "./crash/harness.js";
import { testSeeds } from "./support/random.js";

const STATES_PER_SEED = 2900;
const STATES_PER_SEED_MIN = 2500;

describe("crash states of long workloads", () => {
  for (const seed of testSeeds(4)) {
    it(`every crash state of long workload ${seed} reopens to a commit with its data`, async () => {
      const report = await runCrashSeed(seed, STATES_PER_SEED, { ...DEFAULT_SHAPE, steps: DEFAULT_SHAPE.steps * 2 });
      expect(report.failures.map(describeFailure)).toEqual([]);
      expect(report.states).toBeGreaterThanOrEqual(STATES_PER_SEED_MIN);
    });
  }
});
