// What every workload shares: the sizes, the rounds with the servers taking turns, and the
// measured fio run, which syncs first, warms up, and brackets the run with readings of the
// server's CPU time so each number comes with the server CPU per request it cost.

import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { BenchOptions, ServedExport } from "./contenders.js";
import { runFio, type FioJob, type FioResult } from "./fio.js";
import type { Measurements, MetricId } from "./measurements.js";
import { cpuTickSeconds } from "./server-cpu.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const ROUNDS = 3;
export const VOLUME_BYTES = 1 * GiB;
export const SEQUENTIAL_BYTES = 512 * MiB;
export const SEQUENTIAL_BLOCK_BYTES = 1 * MiB;
export const SEQUENTIAL_IODEPTH = 8;
/** Random I/O stays inside the part the sequential pre-write filled. */
export const RANDOM_REGION_BYTES = 512 * MiB;
export const RANDOM_BLOCK_BYTES = 4 * KiB;
export const RANDOM_IODEPTH = 16;
/** Per round; ROUNDS rounds make 15 s of each random job per server. */
export const RANDOM_SECONDS = 5;
/** Before every time-based measured run, the same job runs unmeasured this long. */
export const WARM_UP_SECONDS = 1;
/**
 * The warm-up draws its offsets from a seed of its own: with the measured run's seed it would
 * touch exactly the offsets the measured run starts on, and in workload 3 those would then
 * be copied already.
 */
const WARM_UP_RANDOM_SEED = 1;

export interface WorkloadContext {
  scratchDir: string;
  options: BenchOptions;
  measurements: Measurements;
  /** Server CPU per request, in microseconds, keyed like `measurements`. */
  cpuPerRequest: Measurements;
  progress: (message: string) => void;
}

export interface CpuReading {
  /** Server user + system CPU seconds over the whole run. */
  cpuSeconds: number;
  /** The same, in microseconds per request the run completed. */
  cpuMicrosPerRequest: number;
}

export interface MeasuredRun extends CpuReading {
  result: FioResult;
}

/** The items in the order they run in `round`: rotated, so none always goes first. */
export function turnOrder<T>(items: readonly T[], round: number): T[] {
  const start = round % items.length;
  return [...items.slice(start), ...items.slice(0, start)];
}

export function dirName(label: string): string {
  return label.replace(/[^a-z0-9]+/gi, "-");
}

/** A directory of its own for one server's files, removed afterwards. */
export async function inFreshDir<T>(context: WorkloadContext, name: string, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(context.scratchDir, dirName(name));
  await mkdir(dir);
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `body` against a served export and always stops the server; a body failure wins over a stop failure. */
export async function whileServed<T>(served: ServedExport, body: (served: ServedExport) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await body(served);
  } catch (error) {
    await served.stop().catch(() => undefined);
    throw error;
  }
  await served.stop();
  return result;
}

export function fioOutputPath(dir: string, job: FioJob): string {
  return join(dir, `${job.name}.json`);
}

export function fio(dir: string, job: FioJob): Promise<FioResult> {
  return runFio(job, fioOutputPath(dir, job));
}

const run = promisify(execFile);

/**
 * sync(1) before every measured job: dirty pages left by the previous job (the last round's
 * copy-on-write run leaves a gigabyte) would otherwise be written back during the next one,
 * and whichever server ran next would pay for it.
 */
export async function syncAll(): Promise<void> {
  await run("sync");
}

/** The server's CPU seconds (user + system) spent while `body` runs, with body's result. */
export async function withServerCpu<T>(served: ServedExport, body: () => Promise<T>): Promise<{ value: T; cpuSeconds: number }> {
  const before = await served.cpuSeconds();
  const value = await body();
  return { value, cpuSeconds: (await served.cpuSeconds()) - before };
}

export function microsPerRequest(cpuSeconds: number, requests: number): number {
  return requests === 0 ? 0 : (cpuSeconds * 1e6) / requests;
}

/** A reading of only a few clock ticks says little; the progress line shows how many there were. */
export function describeCpu({ cpuSeconds, cpuMicrosPerRequest }: CpuReading): string {
  return `server CPU ${cpuMicrosPerRequest.toFixed(1)} µs/request (${Math.round(cpuSeconds / cpuTickSeconds())} ticks)`;
}

/**
 * A measured fio run: sync, then for a time-based job an unmeasured warm-up of the same job
 * (in place of fio's --ramp_time, which fio would leave out of its request counts), then the
 * job with the server's CPU time read just before fio starts and just after it exits.
 */
export async function measured(dir: string, served: ServedExport, job: FioJob): Promise<MeasuredRun> {
  await syncAll();
  if (job.runtimeSeconds !== undefined) {
    await fio(dir, { ...job, name: `${job.name}-warm-up`, runtimeSeconds: WARM_UP_SECONDS, randomSeed: WARM_UP_RANDOM_SEED });
  }
  const { value: result, cpuSeconds } = await withServerCpu(served, () => fio(dir, job));
  return { result, cpuSeconds, cpuMicrosPerRequest: microsPerRequest(cpuSeconds, result.requests) };
}

/** Records one round's figure of a row and the server CPU per request it cost. */
export function record(context: WorkloadContext, metric: MetricId, label: string, value: number, cpuMicrosPerRequest: number): void {
  context.measurements.record(metric, label, value);
  context.cpuPerRequest.record(metric, label, cpuMicrosPerRequest);
}

export function sequentialWrite(uri: string, regionBytes: number): FioJob {
  return {
    name: "seq-write",
    uri,
    rw: "write",
    blockBytes: SEQUENTIAL_BLOCK_BYTES,
    regionBytes,
    iodepth: SEQUENTIAL_IODEPTH,
    endFlush: true,
  };
}

export function randomJob(uri: string, rw: "randread" | "randwrite", regionBytes: number): FioJob {
  return {
    name: rw,
    uri,
    rw,
    blockBytes: RANDOM_BLOCK_BYTES,
    regionBytes,
    iodepth: RANDOM_IODEPTH,
    runtimeSeconds: RANDOM_SECONDS,
  };
}
