// One fio run over the NBD engine, its JSON result reduced to the numbers the tables show.
// A run has one job, or one job repeated on several connections (--numjobs), whose numbers
// are summed.

import { spawn, type ChildProcess } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { assert } from "../../src/io/assert.js";

/** Extra time fio gets beyond its own runtime limit before it is killed. */
const FIO_KILL_GRACE_MS = 60_000;
/** A sized job that has not finished by then stops there (fio's --runtime without --time_based). */
export const SIZED_JOB_RUNTIME_MAX_S = 90;
/** fio's exit status after it has ended its jobs on SIGTERM and written its results. */
const FIO_EXIT_AFTER_SIGTERM = 128;

export interface FioJob {
  name: string;
  uri: string;
  rw: "write" | "read" | "randwrite" | "randread";
  blockBytes: number;
  /** Bytes the job covers, from offsetBytes (default 0). */
  regionBytes: number;
  offsetBytes?: number;
  /** Queue depth of each connection. */
  iodepth: number;
  /** fio jobs, each with its own NBD connection (--numjobs, reported as one group); default 1. */
  connections?: number;
  /** Time-based jobs loop over the region for this long; others do one pass over it. */
  runtimeSeconds?: number;
  /** Sends NBD_CMD_FLUSH at the end, so the data is durable before the job counts as done. */
  endFlush?: boolean;
  /** Sends NBD_CMD_FLUSH after every this many writes (--fsync). */
  flushEveryWrites?: number;
  /** Caps the job at this many requests per second (--rate_iops). */
  rateIops?: number;
  /** Seeds the random offsets (--randseed); without it fio's fixed default seed, the same every run. */
  randomSeed?: number;
}

export interface FioResult {
  bytesPerSecond: number;
  iops: number;
  ioBytes: number;
  /** Every request fio completed, over the whole run (no job here has a ramp): reads, writes and flushes. */
  requests: number;
  flushes: number;
  /** Wall time of the whole fio process: connecting, the I/O, the final flush. */
  wallSeconds: number;
}

interface FioDirection {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  total_ios: number;
}

interface FioJobJson {
  jobname: string;
  error: number;
  read: FioDirection;
  write: FioDirection;
  /** Present when the job issued flushes. */
  sync?: { total_ios: number };
}

interface FioJson {
  jobs: FioJobJson[];
}

const running = new Set<FioRun>();

process.on("exit", () => {
  for (const fio of running) fio.kill();
});

/** A started fio process; its result comes when it exits by itself or is stopped. */
export class FioRun {
  private stopping = false;
  private readonly result: Promise<FioResult>;
  private readonly child: ChildProcess;

  private constructor(
    private readonly job: FioJob,
    private readonly outputPath: string,
  ) {
    const runtimeSeconds = job.runtimeSeconds ?? SIZED_JOB_RUNTIME_MAX_S;
    const started = performance.now();
    const child = spawn("fio", fioArguments(job, outputPath), { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    running.add(this);
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    const timer = setTimeout(() => this.kill(), runtimeSeconds * 1000 + FIO_KILL_GRACE_MS);
    const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
      child.once("error", (error) => resolve({ code: null, error }));
      child.once("exit", (code) => resolve({ code }));
    });
    this.result = exited.then(async ({ code, error }) => {
      clearTimeout(timer);
      running.delete(this);
      const wallSeconds = (performance.now() - started) / 1000;
      const expected = code === 0 || (this.stopping && code === FIO_EXIT_AFTER_SIGTERM);
      if (!expected) {
        const why = error?.message ?? (stderr.trim() || `exit status ${code ?? "none: killed by a signal"}`);
        throw new Error(`fio ${job.name} against ${job.uri} failed: ${why}`);
      }
      return this.parse(wallSeconds, runtimeSeconds);
    });
    // A caller that is busy elsewhere when fio fails hears of it from finished() or stop().
    this.result.catch(() => undefined);
  }

  static start(job: FioJob, outputPath: string): FioRun {
    return new FioRun(job, outputPath);
  }

  /** The result once fio has run its course. */
  finished(): Promise<FioResult> {
    return this.result;
  }

  /** Ends the jobs now (SIGTERM: fio stops, reports what it did and exits) and gives that result. */
  stop(): Promise<FioResult> {
    this.stopping = true;
    this.child.kill("SIGTERM");
    return this.result;
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }

  private async parse(wallSeconds: number, runtimeSeconds: number): Promise<FioResult> {
    const { job, outputPath } = this;
    const text = await readFile(outputPath, "utf8");
    await rm(outputPath);
    // fio may print notes ahead of the JSON document.
    const parsed = JSON.parse(text.slice(text.indexOf("{"))) as FioJson;
    // With --group_reporting there is one entry for all connections, without it one each: summing covers both.
    const jobs = parsed.jobs.filter((entry) => entry.jobname === job.name);
    assert(jobs.length > 0, `fio output for ${job.name} names its job`);
    const failed = jobs.find((entry) => entry.error !== 0);
    if (failed) throw new Error(`fio ${job.name} against ${job.uri} reported error ${failed.error}`);
    const direction = (entry: FioJobJson) => (job.rw.endsWith("read") ? entry.read : entry.write);
    const sum = (value: (entry: FioJobJson) => number) => jobs.reduce((total, entry) => total + value(entry), 0);
    const ioBytes = sum((entry) => direction(entry).io_bytes);
    const timeBased = job.runtimeSeconds !== undefined;
    if (!timeBased && ioBytes < job.regionBytes) {
      throw new Error(`fio ${job.name} moved ${ioBytes} of ${job.regionBytes} bytes in ${runtimeSeconds} s`);
    }
    const flushes = sum((entry) => entry.sync?.total_ios ?? 0);
    return {
      bytesPerSecond: sum((entry) => direction(entry).bw_bytes),
      iops: sum((entry) => direction(entry).iops),
      ioBytes,
      requests: sum((entry) => entry.read.total_ios + entry.write.total_ios) + flushes,
      flushes,
      wallSeconds,
    };
  }
}

function fioArguments(job: FioJob, outputPath: string): string[] {
  const connections = job.connections ?? 1;
  return [
    `--name=${job.name}`,
    "--ioengine=nbd",
    `--uri=${job.uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockBytes}`,
    `--offset=${job.offsetBytes ?? 0}`,
    `--size=${job.regionBytes}`,
    `--iodepth=${job.iodepth}`,
    `--runtime=${job.runtimeSeconds ?? SIZED_JOB_RUNTIME_MAX_S}`,
    // No --ramp_time: fio leaves a ramp out of its request counts, and the server CPU beside
    // every row is divided by the requests of the whole run. Warm-ups are runs of their own.
    ...(job.runtimeSeconds !== undefined ? ["--time_based"] : []),
    ...(connections > 1 ? [`--numjobs=${connections}`, "--group_reporting"] : []),
    ...(job.endFlush ? ["--end_fsync=1"] : []),
    ...(job.flushEveryWrites !== undefined ? [`--fsync=${job.flushEveryWrites}`] : []),
    ...(job.rateIops !== undefined ? [`--rate_iops=${job.rateIops}`] : []),
    ...(job.randomSeed !== undefined ? [`--randseed=${job.randomSeed}`] : []),
    "--output-format=json",
    `--output=${outputPath}`,
  ];
}

export function runFio(job: FioJob, outputPath: string): Promise<FioResult> {
  return FioRun.start(job, outputPath).finished();
}
