// 6: reads while commits run. Each round and server: workload 2's 4 KiB random read job
// alone, then the same job while a second fio process on another connection writes to the
// export's other half at a modest rate with a flush every 100 writes, 100 ms apart. For
// thinp every flush is a commit of the pool's metadata; the figure that matters is how much
// the reads slow down meanwhile.

import { setTimeout as sleep } from "node:timers/promises";
import { FioRun, type FioJob, type FioResult } from "./fio.js";
import type { PreWrittenExport } from "./pre-written-workloads.js";
import {
  describeCpu,
  fio,
  fioOutputPath,
  measured,
  microsPerRequest,
  RANDOM_BLOCK_BYTES,
  RANDOM_REGION_BYTES,
  randomJob,
  record,
  ROUNDS,
  syncAll,
  turnOrder,
  VOLUME_BYTES,
  withServerCpu,
  type CpuReading,
  type WorkloadContext,
} from "./workload-context.js";

/** Per round, each of the two read jobs. */
export const COMMIT_READ_SECONDS = 4;
export const WRITER_RATE_IOPS = 1000;
/** At WRITER_RATE_IOPS, a flush every 100 ms. */
export const WRITER_FLUSH_EVERY_WRITES = 100;
/** The writer runs alone this long before the reads start, so they start among commits already under way. */
const WRITER_LEAD_SECONDS = 1;
/** The writer's own time limit past the reads, in case it is never stopped. */
const WRITER_RUNTIME_SPARE_SECONDS = 5;

function readJob(uri: string): FioJob {
  return { ...randomJob(uri, "randread", RANDOM_REGION_BYTES), name: "randread-commits", runtimeSeconds: COMMIT_READ_SECONDS };
}

/**
 * The region past the pre-written half, which the readers never touch: the first writes to
 * it allocate, so the commits carry new mappings. A seed per round makes each round write
 * offsets the last did not (fio's default seed would repeat them), the same ones for every server.
 */
function writerJob(uri: string, round: number): FioJob {
  return {
    name: "randwrite-committer",
    uri,
    rw: "randwrite",
    blockBytes: RANDOM_BLOCK_BYTES,
    offsetBytes: RANDOM_REGION_BYTES,
    regionBytes: VOLUME_BYTES - RANDOM_REGION_BYTES,
    iodepth: 1,
    rateIops: WRITER_RATE_IOPS,
    flushEveryWrites: WRITER_FLUSH_EVERY_WRITES,
    runtimeSeconds: WRITER_LEAD_SECONDS + COMMIT_READ_SECONDS + WRITER_RUNTIME_SPARE_SECONDS,
    randomSeed: 100 + round,
  };
}

interface WithWriter extends CpuReading {
  read: FioResult;
  written: FioResult;
}

/**
 * The read job with the writer running from before it starts until it ends. The server CPU
 * is read before the writer starts and after it has exited, so it covers both, and is
 * divided by the requests of both.
 */
async function readWithWriter(exported: PreWrittenExport, round: number): Promise<WithWriter> {
  const { dir, served } = exported;
  await syncAll();
  const { value, cpuSeconds } = await withServerCpu(served, async () => {
    const job = writerJob(served.uri, round);
    const writer = FioRun.start(job, fioOutputPath(dir, job));
    try {
      await sleep(WRITER_LEAD_SECONDS * 1000);
      const read = await fio(dir, { ...readJob(served.uri), name: "randread-with-committer" });
      return { read, written: await writer.stop() };
    } catch (error) {
      writer.kill();
      await writer.finished().catch(() => undefined);
      throw error;
    }
  });
  return { ...value, cpuSeconds, cpuMicrosPerRequest: microsPerRequest(cpuSeconds, value.read.requests + value.written.requests) };
}

export async function readsDuringCommits(context: WorkloadContext, exports: readonly PreWrittenExport[]): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) {
    for (const exported of turnOrder(exports, round)) {
      const { label, dir, served } = exported;
      const alone = await measured(dir, served, readJob(served.uri));
      record(context, "commitReadAlone", label, alone.result.iops, alone.cpuMicrosPerRequest);
      const withWriter = await readWithWriter(exported, round);
      record(context, "commitReadWithWriter", label, withWriter.read.iops, withWriter.cpuMicrosPerRequest);
      const dropPercent = ((alone.result.iops - withWriter.read.iops) / alone.result.iops) * 100;
      context.measurements.record("commitReadDrop", label, dropPercent);
      context.measurements.record("commitWriterWrite", label, withWriter.written.iops);
      context.progress(
        `round ${round + 1}, ${label}: 4k randread alone ${alone.result.iops.toFixed(0)} IOPS, ${describeCpu(alone)}; ` +
          `with the writer ${withWriter.read.iops.toFixed(0)} IOPS (${dropPercent.toFixed(1)}% lower), ${describeCpu(withWriter)}; ` +
          `writer ${withWriter.written.iops.toFixed(0)} writes/s, ${withWriter.written.flushes} flushes`,
      );
    }
  }
}
