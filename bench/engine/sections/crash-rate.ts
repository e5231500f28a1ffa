// Section 8: how fast the crash harness builds and verifies crash states, the figure that
// bounds how many states npm test and npm run crash can afford.

import { runCrashSeed } from "../../../test/crash/harness.js";
import { formatCount, progress, type Section } from "../support/report.js";

const SEEDS = 2;
const STATES_PER_SEED = 3000;

export async function measureCrashRate(seed: number): Promise<Section> {
  const rows: string[][] = [];
  let states = 0;
  let milliseconds = 0;
  for (let i = 0; i < SEEDS; i++) {
    progress(`crash rate: seed ${seed + i}`);
    const report = await runCrashSeed(seed + i, STATES_PER_SEED);
    const failure = report.failures[0];
    if (failure !== undefined) throw new Error(`crash harness found a failure with seed ${seed + i}: ${failure.problem}`);
    states += report.states;
    milliseconds += report.milliseconds;
    rows.push([
      String(seed + i),
      formatCount(report.operations),
      formatCount(report.commits),
      formatCount(report.states),
      formatCount(report.states / (report.milliseconds / 1000)),
    ]);
  }
  rows.push(["all", "", "", formatCount(states), formatCount(states / (milliseconds / 1000))]);
  return {
    title: "8. Crash states per second",
    method: [
      "The crash harness (test/crash): a seeded workload over a memory pool, its writes and syncs recorded; each crash state is rebuilt, reopened, checked and its data verified.",
      `Same code as \`npm run crash -- --seed S --states ${STATES_PER_SEED}\`; the time includes the workload.`,
    ],
    tables: [
      { headers: ["seed", "I/O operations", "commits", "crash states", "states/s"], rows, numeric: [false, true, true, true, true] },
    ],
  };
}
