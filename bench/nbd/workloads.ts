// The three workloads. Each measured run starts from a fresh export (workload 1 and every
// snapshot or overlay of workload 3) or from one pre-written per server (workload 2), and
// every number is taken in ROUNDS rounds with the servers taking turns, starting with a
// different server each round.

import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { assert } from "../../src/io/assert.js";
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
import type { Measurements } from "./measurements.js";

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

export interface WorkloadContext {
  scratchDir: string;
  options: BenchOptions;
  measurements: Measurements;
  progress: (message: string) => void;
}

const megabytesPerSecond = (result: FioResult) => result.bytesPerSecond / 1e6;

/** The contenders in the order they run in `round`: rotated, so none always goes first. */
function turnOrder<T>(items: readonly T[], round: number): T[] {
  const start = round % items.length;
  return [...items.slice(start), ...items.slice(0, start)];
}

function dirName(label: string): string {
  return label.replace(/[^a-z0-9]+/gi, "-");
}

/** A directory of its own for one server's files, removed afterwards. */
async function inFreshDir<T>(context: WorkloadContext, name: string, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(context.scratchDir, dirName(name));
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

const run = promisify(execFile);

/**
 * sync(1) before every measured job: dirty pages left by the previous job (the last round's
 * copy-on-write run leaves a gigabyte) would otherwise be written back during the next one,
 * and whichever server ran next would pay for it.
 */
async function measured(dir: string, job: FioJob): Promise<FioResult> {
  await run("sync");
  return fio(dir, job);
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
export async function sequential(context: WorkloadContext, contenders: readonly Contender[]): Promise<void> {
  const { measurements } = context;
  for (let round = 0; round < ROUNDS; round++) {
    for (const contender of turnOrder(contenders, round)) {
      await inFreshDir(context, `seq-${contender.label}`, async (dir) => {
        const served = await contender.serveFresh(dir, VOLUME_BYTES);
        await whileServed(served, async (uri) => {
          const write = await measured(dir, sequentialWrite(uri, SEQUENTIAL_BYTES));
          measurements.record("seqWrite", contender.label, megabytesPerSecond(write));
          measurements.record("seqWriteFlushed", contender.label, write.ioBytes / write.wallSeconds / 1e6);
          const read = await measured(dir, { ...sequentialWrite(uri, SEQUENTIAL_BYTES), name: "seq-read", rw: "read", endFlush: false });
          measurements.record("seqRead", contender.label, megabytesPerSecond(read));
          context.progress(
            `round ${round + 1}, ${contender.label}: seq write ${megabytesPerSecond(write).toFixed(0)} MB/s, read ${megabytesPerSecond(read).toFixed(0)} MB/s`,
          );
        });
      });
    }
  }
}

/**
 * 2: 4 KiB random reads, then random writes, at queue depth 16 over a pre-written region.
 * Every server stays up with its export for the whole workload so the rounds can alternate.
 */
export async function random(context: WorkloadContext, contenders: readonly Contender[]): Promise<void> {
  const dirs = new Map<Contender, string>();
  const served = new Map<Contender, ServedExport>();
  try {
    for (const contender of contenders) {
      const dir = join(context.scratchDir, dirName(`rand-${contender.label}`));
      await mkdir(dir);
      dirs.set(contender, dir);
      const exported = await contender.serveFresh(dir, VOLUME_BYTES);
      served.set(contender, exported);
      await fio(dir, sequentialWrite(exported.uri, RANDOM_REGION_BYTES));
    }
    for (const [rw, metric] of [
      ["randread", "randRead"],
      ["randwrite", "randWrite"],
    ] as const) {
      for (let round = 0; round < ROUNDS; round++) {
        for (const contender of turnOrder(contenders, round)) {
          const dir = dirs.get(contender);
          const exported = served.get(contender);
          assert(dir !== undefined && exported !== undefined, "every contender was set up above");
          const result = await measured(dir, randomJob(exported.uri, rw, RANDOM_REGION_BYTES));
          context.measurements.record(metric, contender.label, result.iops);
          context.progress(`round ${round + 1}, ${contender.label}: 4k ${rw} ${result.iops.toFixed(0)} IOPS`);
        }
      }
    }
    for (const exported of served.values()) await exported.stop();
    served.clear();
  } finally {
    await Promise.allSettled([...served.values()].map((exported) => exported.stop()));
    for (const dir of dirs.values()) await rm(dir, { recursive: true, force: true });
  }
}

/**
 * 3: copy-on-write. A 1 GiB export is written in full and flushed and its server stopped;
 * then, each round, a fresh snapshot of it (thinp) or a fresh qcow2 overlay on it
 * (qemu-nbd) is served and takes 4 KiB random writes over the whole range.
 */
export async function snapshotWrites(context: WorkloadContext): Promise<void> {
  const thinpDir = join(context.scratchDir, "cow-thinp");
  const qcow2Dir = join(context.scratchDir, "cow-qcow2");
  try {
    await mkdir(thinpDir);
    await mkdir(qcow2Dir);
    const base = await serveThinp(
      thinpDir,
      { createPoolBytes: THINP_POOL_BYTES, volumes: [{ name: "base", sizeBytes: VOLUME_BYTES }], snapshots: [] },
      context.options,
      "base",
    );
    await whileServed(base, (uri) => fio(thinpDir, sequentialWrite(uri, VOLUME_BYTES)));
    const basePath = join(qcow2Dir, "base.qcow2");
    await createQcow2(basePath, VOLUME_BYTES);
    await whileServed(await serveQemuNbd("qcow2", basePath, qcow2Dir), (uri) => fio(qcow2Dir, sequentialWrite(uri, VOLUME_BYTES)));

    const runs = [
      { label: "thinp", run: (round: number) => snapshotRound(context, thinpDir, round) },
      { label: "qemu-nbd qcow2", run: (round: number) => overlayRound(qcow2Dir, basePath, round) },
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const { label, run } of turnOrder(runs, round)) {
        const result = await run(round);
        context.measurements.record("snapshotWrite", label, result.iops);
        context.progress(`round ${round + 1}, ${label}: 4k randwrite to a fresh snapshot/overlay ${result.iops.toFixed(0)} IOPS`);
      }
    }
  } finally {
    await rm(thinpDir, { recursive: true, force: true });
    await rm(qcow2Dir, { recursive: true, force: true });
  }
}

/** The previous round's snapshot goes first, so every round starts from one shared base. */
async function snapshotRound(context: WorkloadContext, dir: string, round: number): Promise<FioResult> {
  const name = `snap-${round}`;
  const setup = {
    volumes: [],
    snapshots: [{ origin: "base", name }],
    deleteVolumes: round === 0 ? [] : [`snap-${round - 1}`],
  };
  const snapshot = await serveThinp(dir, setup, context.options, name);
  return whileServed(snapshot, (uri) => measured(dir, randomJob(uri, "randwrite", VOLUME_BYTES)));
}

async function overlayRound(dir: string, basePath: string, round: number): Promise<FioResult> {
  const overlayPath = join(dir, `overlay-${round}.qcow2`);
  await createQcow2(overlayPath, VOLUME_BYTES, basePath);
  try {
    return await whileServed(await serveQemuNbd("qcow2", overlayPath, dir), (uri) =>
      measured(dir, randomJob(uri, "randwrite", VOLUME_BYTES)),
    );
  } finally {
    await rm(overlayPath, { force: true });
  }
}
