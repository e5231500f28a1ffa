// One fio job over the NBD engine, its JSON result reduced to the numbers the table shows.

import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { promisify } from "node:util";
import { assert } from "../../src/io/assert.js";

const run = promisify(execFile);

/** Extra time fio gets beyond its own runtime limit before it is killed. */
const FIO_KILL_GRACE_MS = 60_000;
/** A sized job that has not finished by then stops there (fio's --runtime without --time_based). */
export const SIZED_JOB_RUNTIME_MAX_S = 90;

export interface FioJob {
  name: string;
  uri: string;
  rw: "write" | "read" | "randwrite" | "randread";
  blockBytes: number;
  /** Bytes from offset 0 the job covers. */
  regionBytes: number;
  iodepth: number;
  /** Time-based jobs loop over the region for this long; others do one pass over it. */
  runtimeSeconds?: number;
  /** Sends NBD_CMD_FLUSH at the end, so the data is durable before the job counts as done. */
  endFlush?: boolean;
}

export interface FioResult {
  bytesPerSecond: number;
  iops: number;
  ioBytes: number;
  /** Wall time of the whole fio process: connecting, the I/O, the final flush. */
  wallSeconds: number;
}

interface FioDirection {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
}

interface FioJson {
  jobs: { jobname: string; error: number; read: FioDirection; write: FioDirection }[];
}

export async function runFio(job: FioJob, outputPath: string): Promise<FioResult> {
  const timeBased = job.runtimeSeconds !== undefined;
  const runtimeSeconds = job.runtimeSeconds ?? SIZED_JOB_RUNTIME_MAX_S;
  const args = [
    `--name=${job.name}`,
    "--ioengine=nbd",
    `--uri=${job.uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockBytes}`,
    `--size=${job.regionBytes}`,
    `--iodepth=${job.iodepth}`,
    `--runtime=${runtimeSeconds}`,
    ...(timeBased ? ["--time_based", "--ramp_time=1"] : []),
    ...(job.endFlush ? ["--end_fsync=1"] : []),
    "--output-format=json",
    `--output=${outputPath}`,
  ];
  const started = performance.now();
  try {
    await run("fio", args, { timeout: runtimeSeconds * 1000 + FIO_KILL_GRACE_MS });
  } catch (error) {
    const details = error as { stderr?: string; message: string };
    throw new Error(`fio ${job.name} against ${job.uri} failed: ${details.stderr?.trim() || details.message}`, { cause: error });
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const text = await readFile(outputPath, "utf8");
  await rm(outputPath);
  // fio may print notes ahead of the JSON document.
  const parsed = JSON.parse(text.slice(text.indexOf("{"))) as FioJson;
  const result = parsed.jobs[0];
  assert(result !== undefined && result.jobname === job.name, `fio output for ${job.name} names its job`);
  if (result.error !== 0) throw new Error(`fio ${job.name} against ${job.uri} reported error ${result.error}`);
  const direction = job.rw.endsWith("read") ? result.read : result.write;
  if (!timeBased && direction.io_bytes < job.regionBytes) {
    throw new Error(`fio ${job.name} moved ${direction.io_bytes} of ${job.regionBytes} bytes in ${runtimeSeconds} s`);
  }
  return { bytesPerSecond: direction.bw_bytes, iops: direction.iops, ioBytes: direction.io_bytes, wallSeconds };
}
