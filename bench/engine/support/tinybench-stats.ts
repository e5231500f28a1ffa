// The few numbers the report takes from a tinybench task, in milliseconds per iteration.

import { Bench, type BenchOptions, type Task } from "tinybench";

export interface IterationStats {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Relative margin of error of the mean, in percent (95 % confidence). */
  rmePercent: number;
  sampleCount: number;
}

/** Defaults for the bench's micro-benchmarks: short, and a failure stops the run. */
export function newBench(options: BenchOptions): Bench {
  return new Bench({ throws: true, warmupIterations: 4, warmupTime: 100, ...options });
}

export function statsOf(task: Task | undefined): IterationStats {
  if (!task) throw new Error("tinybench task missing");
  const result = task.result;
  if (result.state === "errored") throw result.error;
  if (result.state !== "completed") throw new Error(`tinybench task '${task.name}' ended ${result.state}`);
  const { latency } = result;
  return { meanMs: latency.mean, p50Ms: latency.p50, p99Ms: latency.p99, rmePercent: latency.rme, sampleCount: latency.samplesCount };
}

/** Operations per second when each iteration does `operationsPerIteration` of them. */
export function ratePerSecond(stats: IterationStats, operationsPerIteration: number): number {
  return (operationsPerIteration * 1000) / stats.meanMs;
}

export function formatRme(stats: IterationStats): string {
  return `±${stats.rmePercent.toFixed(1)} %`;
}
