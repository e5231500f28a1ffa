// The workloads that start every measured run from a fresh export: 1 (a new export per
// round) and 3 (a fresh snapshot or overlay per round). The ones over a shared pre-written
// export are in pre-written-workloads.ts and reads-during-commits.ts.

import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createQcow2, serveQemuNbd, serveThinp, THINP_POOL_BYTES, type Contender, type ServedExport } from "./contenders.js";
import {
  describeCpu,
  fio,
  inFreshDir,
  measured,
  randomJob,
  record,
  ROUNDS,
  SEQUENTIAL_BYTES,
  sequentialWrite,
  turnOrder,
  VOLUME_BYTES,
  whileServed,
  type MeasuredRun,
  type WorkloadContext,
} from "./workload-context.js";
import type { FioResult } from "./fio.js";

const megabytesPerSecond = (result: FioResult) => result.bytesPerSecond / 1e6;

/** 1: sequential 1 MiB writes to a new export, flushed, then the same range read back. */
export async function sequential(context: WorkloadContext, contenders: readonly Contender[]): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) {
    for (const contender of turnOrder(contenders, round)) {
      await inFreshDir(context, `seq-${contender.label}`, async (dir) => {
        await whileServed(await contender.serveFresh(dir, VOLUME_BYTES), async (served) => {
          const write = await measured(dir, served, sequentialWrite(served.uri, SEQUENTIAL_BYTES));
          record(context, "seqWrite", contender.label, megabytesPerSecond(write.result), write.cpuMicrosPerRequest);
          context.measurements.record("seqWriteFlushed", contender.label, write.result.ioBytes / write.result.wallSeconds / 1e6);
          const readJob = { ...sequentialWrite(served.uri, SEQUENTIAL_BYTES), name: "seq-read", rw: "read", endFlush: false } as const;
          const read = await measured(dir, served, readJob);
          record(context, "seqRead", contender.label, megabytesPerSecond(read.result), read.cpuMicrosPerRequest);
          context.progress(
            `round ${round + 1}, ${contender.label}: seq write ${megabytesPerSecond(write.result).toFixed(0)} MB/s, ${describeCpu(write)}; ` +
              `read ${megabytesPerSecond(read.result).toFixed(0)} MB/s, ${describeCpu(read)}`,
          );
        });
      });
    }
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
    await whileServed(base, (served) => fio(thinpDir, sequentialWrite(served.uri, VOLUME_BYTES)));
    const basePath = join(qcow2Dir, "base.qcow2");
    await createQcow2(basePath, VOLUME_BYTES);
    await whileServed(await serveQemuNbd("qcow2", basePath, qcow2Dir), (served) =>
      fio(qcow2Dir, sequentialWrite(served.uri, VOLUME_BYTES)),
    );

    const runs = [
      { label: "thinp", run: (round: number) => snapshotRound(context, thinpDir, round) },
      { label: "qemu-nbd qcow2", run: (round: number) => overlayRound(qcow2Dir, basePath, round) },
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const { label, run } of turnOrder(runs, round)) {
        const measuredRun = await run(round);
        record(context, "snapshotWrite", label, measuredRun.result.iops, measuredRun.cpuMicrosPerRequest);
        context.progress(
          `round ${round + 1}, ${label}: 4k randwrite to a fresh snapshot/overlay ${measuredRun.result.iops.toFixed(0)} IOPS, ${describeCpu(measuredRun)}`,
        );
      }
    }
  } finally {
    await rm(thinpDir, { recursive: true, force: true });
    await rm(qcow2Dir, { recursive: true, force: true });
  }
}

function copyOnWriteRun(dir: string, served: ServedExport): Promise<MeasuredRun> {
  return measured(dir, served, randomJob(served.uri, "randwrite", VOLUME_BYTES));
}

/** The previous round's snapshot goes first, so every round starts from one shared base. */
async function snapshotRound(context: WorkloadContext, dir: string, round: number): Promise<MeasuredRun> {
  const name = `snap-${round}`;
  const setup = {
    volumes: [],
    snapshots: [{ origin: "base", name }],
    deleteVolumes: round === 0 ? [] : [`snap-${round - 1}`],
  };
  return whileServed(await serveThinp(dir, setup, context.options, name), (served) => copyOnWriteRun(dir, served));
}

async function overlayRound(dir: string, basePath: string, round: number): Promise<MeasuredRun> {
  const overlayPath = join(dir, `overlay-${round}.qcow2`);
  await createQcow2(overlayPath, VOLUME_BYTES, basePath);
  try {
    return await whileServed(await serveQemuNbd("qcow2", overlayPath, dir), (served) => copyOnWriteRun(dir, served));
  } finally {
    await rm(overlayPath, { force: true });
  }
}
