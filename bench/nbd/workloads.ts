// The three workloads, each on a fresh export per server so no run inherits another's
// allocation or cache state beyond what the page cache keeps.

import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  createQcow2,
  serveQemuNbd,
  serveThinp,
  THINP_POOL_BYTES,
  type BenchOptions,
  type Contender,
  type ServedExport,
} from "./contenders.js";
import { runFio, type FioJob, type FioResult } from "./fio.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const VOLUME_BYTES = 1 * GiB;
export const SEQUENTIAL_BYTES = 512 * MiB;
export const SEQUENTIAL_BLOCK_BYTES = 1 * MiB;
export const SEQUENTIAL_IODEPTH = 8;
/** Random I/O stays inside the part the sequential pre-write filled. */
export const RANDOM_REGION_BYTES = 512 * MiB;
export const RANDOM_BLOCK_BYTES = 4 * KiB;
export const RANDOM_IODEPTH = 16;
export const RANDOM_SECONDS = 10;

export type MetricId = "seqWrite" | "seqWriteFlushed" | "seqRead" | "randRead" | "randWrite" | "snapshotWrite";

/** metric -> server label -> value (MB/s or IOPS, as the metric says). */
export type Measurements = Map<MetricId, Map<string, number>>;

export function emptyMeasurements(): Measurements {
  return new Map();
}

function record(measurements: Measurements, metric: MetricId, label: string, value: number): void {
  let row = measurements.get(metric);
  if (!row) measurements.set(metric, (row = new Map()));
  row.set(label, value);
}

const megabytesPerSecond = (result: FioResult) => result.bytesPerSecond / 1e6;

export interface WorkloadContext {
  scratchDir: string;
  options: BenchOptions;
  measurements: Measurements;
  progress: (message: string) => void;
}

/** A directory of its own for one server's files, removed afterwards. */
async function inFreshDir<T>(context: WorkloadContext, name: string, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(context.scratchDir, name.replace(/[^a-z0-9]+/gi, "-"));
  await mkdir(dir);
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `body` against a served export and always stops the server; a body failure wins over a stop failure. */
async function whileServed<T>(served: ServedExport, body: (uri: string) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await body(served.uri);
  } catch (error) {
    await served.stop().catch(() => undefined);
    throw error;
  }
  await served.stop();
  return result;
}

function fio(dir: string, job: FioJob): Promise<FioResult> {
  return runFio(job, join(dir, `${job.name}.json`));
}

function sequentialWrite(uri: string, regionBytes: number): FioJob {
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

function randomJob(uri: string, rw: "randread" | "randwrite", regionBytes: number): FioJob {
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

/** 1: sequential 1 MiB writes to a new export, flushed, then the same range read back. */
export async function sequential(context: WorkloadContext, contender: Contender): Promise<void> {
  await inFreshDir(context, `seq-${contender.label}`, async (dir) => {
    const served = await contender.serveFresh(dir, VOLUME_BYTES);
    await whileServed(served, async (uri) => {
      const write = await fio(dir, sequentialWrite(uri, SEQUENTIAL_BYTES));
      record(context.measurements, "seqWrite", contender.label, megabytesPerSecond(write));
      record(context.measurements, "seqWriteFlushed", contender.label, write.ioBytes / write.wallSeconds / 1e6);
      const read = await fio(dir, { ...sequentialWrite(uri, SEQUENTIAL_BYTES), name: "seq-read", rw: "read", endFlush: false });
      record(context.measurements, "seqRead", contender.label, megabytesPerSecond(read));
      context.progress(
        `${contender.label}: seq write ${megabytesPerSecond(write).toFixed(0)} MB/s, read ${megabytesPerSecond(read).toFixed(0)} MB/s`,
      );
    });
  });
}

/** 2: 4 KiB random reads, then random writes, at queue depth 16 over a pre-written region. */
export async function random(context: WorkloadContext, contender: Contender): Promise<void> {
  await inFreshDir(context, `rand-${contender.label}`, async (dir) => {
    const served = await contender.serveFresh(dir, VOLUME_BYTES);
    await whileServed(served, async (uri) => {
      await fio(dir, sequentialWrite(uri, RANDOM_REGION_BYTES));
      const read = await fio(dir, randomJob(uri, "randread", RANDOM_REGION_BYTES));
      record(context.measurements, "randRead", contender.label, read.iops);
      const write = await fio(dir, randomJob(uri, "randwrite", RANDOM_REGION_BYTES));
      record(context.measurements, "randWrite", contender.label, write.iops);
      context.progress(`${contender.label}: 4k randread ${read.iops.toFixed(0)} IOPS, randwrite ${write.iops.toFixed(0)} IOPS`);
    });
  });
}

/**
 * 3: copy-on-write. A 1 GiB export is written in full and flushed, its server stopped;
 * then a fresh snapshot of it (thinp) or a fresh qcow2 overlay on it (qemu-nbd) takes 4 KiB
 * random writes over the whole range.
 */
export async function snapshotWrites(context: WorkloadContext): Promise<void> {
  const thinpLabel = "thinp";
  await inFreshDir(context, "cow-thinp", async (dir) => {
    const base = await serveThinp(
      dir,
      { createPoolBytes: THINP_POOL_BYTES, volumes: [{ name: "base", sizeBytes: VOLUME_BYTES }], snapshots: [] },
      context.options,
      "base",
    );
    await whileServed(base, (uri) => fio(dir, sequentialWrite(uri, VOLUME_BYTES)));
    const snapshot = await serveThinp(dir, { volumes: [], snapshots: [{ origin: "base", name: "snap" }] }, context.options, "snap");
    const write = await whileServed(snapshot, (uri) => fio(dir, randomJob(uri, "randwrite", VOLUME_BYTES)));
    record(context.measurements, "snapshotWrite", thinpLabel, write.iops);
    context.progress(`thinp: 4k randwrite to a fresh snapshot ${write.iops.toFixed(0)} IOPS`);
  });

  const qcow2Label = "qemu-nbd qcow2";
  await inFreshDir(context, "cow-qcow2", async (dir) => {
    const basePath = join(dir, "base.qcow2");
    await createQcow2(basePath, VOLUME_BYTES);
    await whileServed(await serveQemuNbd("qcow2", basePath, dir), (uri) => fio(dir, sequentialWrite(uri, VOLUME_BYTES)));
    const overlayPath = join(dir, "overlay.qcow2");
    await createQcow2(overlayPath, VOLUME_BYTES, basePath);
    const write = await whileServed(await serveQemuNbd("qcow2", overlayPath, dir), (uri) =>
      fio(dir, randomJob(uri, "randwrite", VOLUME_BYTES)),
    );
    record(context.measurements, "snapshotWrite", qcow2Label, write.iops);
    context.progress(`qemu-nbd qcow2: 4k randwrite to a fresh overlay ${write.iops.toFixed(0)} IOPS`);
  });
}
