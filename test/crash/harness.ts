// The crash harness: run seeded workloads, build every crash state the I/O log allows
// (within a budget), and verify each. Used by test/crash-consistency.test.ts and by
// `npm run crash -- --seed S --states N`.

import { SeededRandom } from "../support/random.js";
import { forEachCrashState } from "./crash-states.js";
import { verifyCrashState } from "./crash-verify.js";
import { runCrashWorkload, type WorkloadShape } from "./crash-workload.js";

export interface CrashFailure {
  seed: number;
  state: string;
  problem: string;
  steps: string[];
}

export interface CrashRunReport {
  seed: number;
  states: number;
  commits: number;
  operations: number;
  failures: CrashFailure[];
  milliseconds: number;
}

export const DEFAULT_SHAPE: WorkloadShape = { steps: 220, poolBlocks: 2048 };

export async function runCrashSeed(
  seed: number,
  statesMax: number,
  shape: WorkloadShape = DEFAULT_SHAPE,
  failuresMax = 3,
): Promise<CrashRunReport> {
  const started = performance.now();
  const workload = await runCrashWorkload(seed, shape);
  const random = new SeededRandom(seed ^ 0x5eed);
  const failures: CrashFailure[] = [];
  let index = 0;
  const states = await forEachCrashState(workload.log, workload.bases, { random, statesMax }, async (state) => {
    if (failures.length >= failuresMax) return;
    const problem = await verifyCrashState(workload, state, { random, fullRead: index++ % 64 === 0, sampledBlocks: 6 });
    if (problem) failures.push({ seed, state: state.description, problem, steps: workload.steps });
  });
  return {
    seed,
    states,
    commits: workload.commits.length,
    operations: workload.log.operations.length,
    failures,
    milliseconds: performance.now() - started,
  };
}

export function describeFailure(failure: CrashFailure): string {
  return [
    `crash state failed (replay: THINP_SEED=${failure.seed} npm run crash -- --seed ${failure.seed})`,
    `  state: ${failure.state}`,
    `  problem: ${failure.problem}`,
    `  workload: ${failure.steps.join("; ")}`,
  ].join("\n");
}
