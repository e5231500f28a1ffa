// npm run crash -- [--seed S] [--seeds K] [--states N] [--steps M] [--shrink]
// Runs the crash harness longer than npm test does and prints crash states per second.
// With --shrink, a failing seed is re-run with ever shorter workloads to find the
// shortest prefix of operations that still fails.

import { DEFAULT_SHAPE, describeFailure, runCrashSeed } from "./harness.js";

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} takes a whole number`);
  return value;
}

async function main(): Promise<number> {
  const firstSeed = option("seed", Math.floor(Math.random() * 2 ** 31));
  const seeds = option("seeds", 1);
  const statesMax = option("states", 20000);
  const steps = option("steps", DEFAULT_SHAPE.steps);
  const shrink = process.argv.includes("--shrink");
  let totalStates = 0;
  let totalMs = 0;
  let failed = 0;
  for (let seed = firstSeed; seed < firstSeed + seeds; seed++) {
    const report = await runCrashSeed(seed, statesMax, { ...DEFAULT_SHAPE, steps });
    totalStates += report.states;
    totalMs += report.milliseconds;
    console.log(
      `seed ${seed}: ${report.states} crash states from ${report.operations} I/O operations and ${report.commits} commits, ` +
        `${Math.round(report.states / (report.milliseconds / 1000))} states/s, ${report.failures.length ? "FAILED" : "all consistent"}`,
    );
    if (report.failures.length === 0) continue;
    failed++;
    let shortest = report.failures[0]!;
    if (shrink) {
      let low = 1;
      let high = steps;
      while (low < high) {
        const middle = Math.floor((low + high) / 2);
        const attempt = await runCrashSeed(seed, statesMax, { ...DEFAULT_SHAPE, steps: middle }, 1);
        if (attempt.failures.length > 0) {
          high = middle;
          shortest = attempt.failures[0]!;
        } else {
          low = middle + 1;
        }
      }
      console.log(`shortest failing workload: ${high} steps (--steps ${high})`);
    }
    console.log(describeFailure(shortest));
  }
  console.log(
    `total: ${totalStates} crash states in ${(totalMs / 1000).toFixed(1)} s, ${Math.round(totalStates / (totalMs / 1000))} states/s`,
  );
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(70);
  },
);
