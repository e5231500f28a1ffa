// The workloads over one export per server whose first 512 MiB is written sequentially and
// flushed before any of them runs: 2 (random I/O on one connection), 4 (the same on four
// connections), 5 (a flush after every write), and 6 (reads-during-commits.ts). Every server
// stays up with its export throughout, so the rounds can alternate between them.

import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Contender, ServedExport } from "./contenders.js";
import type { FioJob } from "./fio.js";
import type { MetricId } from "./measurements.js";
import {
  describeCpu,
  dirName,
  fio,
  measured,
  RANDOM_REGION_BYTES,
  randomJob,
  record,
  ROUNDS,
  sequentialWrite,
  turnOrder,
  VOLUME_BYTES,
  type WorkloadContext,
} from "./workload-context.js";

export const CONNECTIONS = 4;
/** Per connection, so the four together keep 32 requests in flight, twice workload 2's 16. */
export const CONNECTION_IODEPTH = 8;
/** Per round; shorter than workload 2's 5 s to keep the whole bench near 10 minutes on 2 cores. */
export const CONNECTIONS_SECONDS = 4;
/** Per round. At queue depth 1 each write waits for its flush, so a run completes few requests; 5 s keeps the CPU reading many ticks long. */
export const FLUSH_EACH_WRITE_SECONDS = 5;

export interface PreWrittenExport {
  label: string;
  dir: string;
  served: ServedExport;
}

/** Serves one export per contender, pre-writes RANDOM_REGION_BYTES of each, runs `body`, stops them all. */
export async function withPreWrittenExports(
  context: WorkloadContext,
  contenders: readonly Contender[],
  body: (exports: readonly PreWrittenExport[]) => Promise<void>,
): Promise<void> {
  const exports: PreWrittenExport[] = [];
  const dirs: string[] = [];
  try {
    for (const contender of contenders) {
      const dir = join(context.scratchDir, dirName(`pre-written-${contender.label}`));
      await mkdir(dir);
      dirs.push(dir);
      const served = await contender.serveFresh(dir, VOLUME_BYTES);
      exports.push({ label: contender.label, dir, served });
      await fio(dir, sequentialWrite(served.uri, RANDOM_REGION_BYTES));
    }
    await body(exports);
    // Stopped one by one so a server that fails to stop cleanly is reported; the finally stops the rest.
    for (const { served } of exports) await served.stop();
    exports.length = 0;
  } finally {
    await Promise.allSettled(exports.map(({ served }) => served.stop()));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  }
}

/** Runs the job `jobFor` gives on every export in ROUNDS rounds, taking turns, and records it as `metric`. */
async function inRounds(
  context: WorkloadContext,
  exports: readonly PreWrittenExport[],
  metric: MetricId,
  jobFor: (uri: string) => FioJob,
): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) {
    for (const { label, dir, served } of turnOrder(exports, round)) {
      const job = jobFor(served.uri);
      const run = await measured(dir, served, job);
      record(context, metric, label, run.result.iops, run.cpuMicrosPerRequest);
      context.progress(`round ${round + 1}, ${label}: ${job.name} ${run.result.iops.toFixed(0)} IOPS, ${describeCpu(run)}`);
    }
  }
}

/** 2: 4 KiB random reads, then random writes, at queue depth 16 over the pre-written region. */
export async function random(context: WorkloadContext, exports: readonly PreWrittenExport[]): Promise<void> {
  await inRounds(context, exports, "randRead", (uri) => randomJob(uri, "randread", RANDOM_REGION_BYTES));
  await inRounds(context, exports, "randWrite", (uri) => randomJob(uri, "randwrite", RANDOM_REGION_BYTES));
}

function connectionsJob(uri: string, rw: "randread" | "randwrite"): FioJob {
  return {
    ...randomJob(uri, rw, RANDOM_REGION_BYTES),
    name: `${rw}-${CONNECTIONS}-connections`,
    connections: CONNECTIONS,
    iodepth: CONNECTION_IODEPTH,
    runtimeSeconds: CONNECTIONS_SECONDS,
  };
}

/** 4: workload 2's jobs on four connections at once (fio --numjobs=4), queue depth 8 each. */
export async function multiConnection(context: WorkloadContext, exports: readonly PreWrittenExport[]): Promise<void> {
  await inRounds(context, exports, "randReadConnections", (uri) => connectionsJob(uri, "randread"));
  await inRounds(context, exports, "randWriteConnections", (uri) => connectionsJob(uri, "randwrite"));
}

/** 5: a database's pattern: 4 KiB random writes at queue depth 1, each followed by a flush (fio --fsync=1). */
export async function flushEachWrite(context: WorkloadContext, exports: readonly PreWrittenExport[]): Promise<void> {
  await inRounds(context, exports, "flushEachWrite", (uri) => ({
    ...randomJob(uri, "randwrite", RANDOM_REGION_BYTES),
    name: "randwrite-flush-each",
    iodepth: 1,
    flushEveryWrites: 1,
    runtimeSeconds: FLUSH_EACH_WRITE_SECONDS,
  }));
}
