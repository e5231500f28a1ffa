// Section 6: the data path in-process, beside the same I/O done with node fs on a raw
// file in the same directory, in the same run. Neither side fsyncs inside the timing, so
// both measure the page cache and the ratio is the engine's own overhead: lookups, block
// locks, the metadata mutex and splitting requests at 64 KiB.

import { open, rm, type FileHandle } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { assert } from "../../../src/io/assert.js";
import { at } from "../../../src/io/checked-index.js";
import { Pool } from "../../../src/thin/pool.js";
import type { Volume } from "../../../src/thin/volume.js";
import { formatCount, formatRatio, progress, type Section } from "../support/report.js";
import type { ScratchDir } from "../support/scratch-dir.js";
import { randomIndex, seededRandom } from "../support/seeded-random.js";

const VOLUME_BYTES = 256 * 2 ** 20;
const POOL_BYTES = 2 * VOLUME_BYTES;
const SEQUENTIAL_IO_BYTES = 2 ** 20;
const RANDOM_IO_BYTES = 4096;
const RANDOM_OPS = 20_000;
const QUEUE_DEPTHS = [1, 16] as const;
/** Rounds on fresh files; the median damps the page cache's writeback moods. */
const ROUNDS = 3;

/** The two things compared: the same calls land on a thin volume or on a raw file. */
interface Target {
  write(bytes: Buffer, offset: number): Promise<void>;
  read(byteLength: number, offset: number): Promise<Buffer>;
}

interface Workload {
  name: string;
  kind: "write" | "read";
  ioBytes: number;
  offsets: number[];
  queueDepth: number;
  unit: "MiB/s" | "IOPS";
}

export async function measureDataPath(scratch: ScratchDir, seed: number): Promise<Section> {
  const random = seededRandom(seed);
  const sequential = Array.from({ length: VOLUME_BYTES / SEQUENTIAL_IO_BYTES }, (_, i) => i * SEQUENTIAL_IO_BYTES);
  const randomOffsets = Array.from({ length: RANDOM_OPS }, () => randomIndex(random, VOLUME_BYTES / RANDOM_IO_BYTES) * RANDOM_IO_BYTES);
  const workloads: Workload[] = [
    {
      name: "sequential 1 MiB write, first (thinp provisions)",
      kind: "write",
      ioBytes: SEQUENTIAL_IO_BYTES,
      offsets: sequential,
      queueDepth: 1,
      unit: "MiB/s",
    },
    {
      name: "sequential 1 MiB overwrite (in place)",
      kind: "write",
      ioBytes: SEQUENTIAL_IO_BYTES,
      offsets: sequential,
      queueDepth: 1,
      unit: "MiB/s",
    },
    { name: "sequential 1 MiB read", kind: "read", ioBytes: SEQUENTIAL_IO_BYTES, offsets: sequential, queueDepth: 1, unit: "MiB/s" },
  ];
  for (const queueDepth of QUEUE_DEPTHS) {
    workloads.push(
      {
        name: `random 4 KiB write, QD ${queueDepth}`,
        kind: "write",
        ioBytes: RANDOM_IO_BYTES,
        offsets: randomOffsets,
        queueDepth,
        unit: "IOPS",
      },
      {
        name: `random 4 KiB read, QD ${queueDepth}`,
        kind: "read",
        ioBytes: RANDOM_IO_BYTES,
        offsets: randomOffsets,
        queueDepth,
        unit: "IOPS",
      },
    );
  }
  const payload = randomBytes(SEQUENTIAL_IO_BYTES);
  const thinMs = workloads.map((): number[] => []);
  const rawMs = workloads.map((): number[] => []);
  for (let round = 0; round < ROUNDS; round++) {
    progress(`data path: round ${round + 1} of ${ROUNDS}`);
    await runRound(scratch, round, workloads, payload, thinMs, rawMs);
  }
  const rows = workloads.map((workload, i) => {
    const thinRounds = at(thinMs, i, "one list of times per workload");
    const rawRounds = at(rawMs, i, "one list of times per workload");
    const thinRate = rateOf(workload, median(thinRounds));
    const rawRate = rateOf(workload, median(rawRounds));
    const roundRatios = thinRounds.map(
      (elapsedMs, round) => rateOf(workload, elapsedMs) / rateOf(workload, at(rawRounds, round, "both sides ran every round")),
    );
    return [
      workload.name,
      workload.unit,
      formatCount(thinRate),
      formatCount(rawRate),
      formatRatio(thinRate / rawRate),
      roundRatios.map(formatRatio).join(" "),
    ];
  });
  return {
    title: "6. Data-path throughput in-process, beside a raw file",
    method: [
      `A ${VOLUME_BYTES / 2 ** 20} MiB thin volume in a fresh file pool, and a fresh ${VOLUME_BYTES / 2 ** 20} MiB sparse raw file in the same directory driven with node \`fs/promises\` \`FileHandle\` reads and writes, with identical offsets. The workloads run in the order listed.`,
      `Random workloads: ${formatCount(RANDOM_OPS)} operations at seeded random 4 KiB-aligned offsets over the whole volume (all blocks mapped by then, so thinp writes in place); QD n = n requests in flight. Every read allocates a fresh buffer on both sides, as \`Volume.read\` does.`,
      `No fsync inside the timing on either side: both run against the page cache. Both files are fsynced (untimed; thinp by \`pool.commit()\`) before every measurement, so neither inherits the other's writeback. ${ROUNDS} rounds, each on fresh files, alternating which side goes first; the table shows each side's median and, last, every round's ratio, so the noise is visible.`,
    ],
    tables: [
      {
        headers: ["workload", "unit", "thinp", "raw file", "thinp / raw", "ratio per round"],
        rows,
        numeric: [false, false, true, true, true, true],
      },
    ],
  };
}

/** One round on fresh files: every workload on both sides, alternating which side goes first. */
async function runRound(
  scratch: ScratchDir,
  round: number,
  workloads: Workload[],
  payload: Buffer,
  thinMs: number[][],
  rawMs: number[][],
): Promise<void> {
  const { dataPath, metaPath } = scratch.poolPaths(`data-path-${round}`);
  const rawPath = scratch.file(`raw-${round}.img`);
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes: POOL_BYTES });
  const rawFile = await open(rawPath, "wx+");
  try {
    await rawFile.truncate(VOLUME_BYTES); // sparse, as the pool's data file starts
    await pool.createVolume("volume", VOLUME_BYTES);
    const volume = await pool.volume("volume");
    const settle = async () => {
      await pool.commit();
      await rawFile.sync();
    };
    const sides = [
      { target: thinTarget(volume), times: thinMs },
      { target: rawTarget(rawFile), times: rawMs },
    ];
    if (round % 2 === 1) sides.reverse();
    for (const [i, workload] of workloads.entries()) {
      for (const side of sides) {
        await settle();
        at(side.times, i, "one list of times per workload").push(await runWorkload(side.target, workload, payload));
      }
    }
    await checkReadBack(volume, payload);
  } finally {
    await rawFile.close();
    await pool.close();
    await Promise.all([rm(rawPath), rm(dataPath), rm(metaPath)]);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return at(sorted, Math.floor(sorted.length / 2), "every workload ran at least one round");
}

function thinTarget(volume: Volume): Target {
  return {
    write: (bytes, offset) => volume.write(offset, bytes),
    read: (byteLength, offset) => volume.read(offset, byteLength),
  };
}

function rawTarget(handle: FileHandle): Target {
  return {
    write: async (bytes, offset) => {
      const { bytesWritten } = await handle.write(bytes, 0, bytes.length, offset);
      assert(bytesWritten === bytes.length, "short raw write");
    },
    read: async (byteLength, offset) => {
      const bytes = Buffer.alloc(byteLength);
      const { bytesRead } = await handle.read(bytes, 0, byteLength, offset);
      assert(bytesRead === byteLength, "short raw read");
      return bytes;
    },
  };
}

/** Runs the workload with `queueDepth` workers sharing one list of offsets; returns elapsed ms. */
async function runWorkload(target: Target, workload: Workload, payload: Buffer): Promise<number> {
  const bytes = payload.subarray(0, workload.ioBytes);
  let next = 0;
  const worker = async () => {
    // Each worker takes the next offset until none is left.
    for (let offset = workload.offsets[next++]; offset !== undefined; offset = workload.offsets[next++]) {
      if (workload.kind === "write") await target.write(bytes, offset);
      else await target.read(workload.ioBytes, offset);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: workload.queueDepth }, worker));
  return performance.now() - started;
}

function rateOf(workload: Workload, elapsedMs: number): number {
  const perSecond = (workload.offsets.length * 1000) / elapsedMs;
  return workload.unit === "IOPS" ? perSecond : (perSecond * workload.ioBytes) / 2 ** 20;
}

/**
 * The numbers mean nothing if the volume does not hold what was written: every 4 KiB holds
 * what the sequential pass put there, or the first 4 KiB of the payload a random write put there.
 */
async function checkReadBack(volume: Volume, payload: Buffer): Promise<void> {
  const randomPiece = payload.subarray(0, RANDOM_IO_BYTES);
  for (let chunkStart = 0; chunkStart < VOLUME_BYTES; chunkStart += SEQUENTIAL_IO_BYTES) {
    const chunk = await volume.read(chunkStart, SEQUENTIAL_IO_BYTES);
    for (let at = 0; at < SEQUENTIAL_IO_BYTES; at += RANDOM_IO_BYTES) {
      const piece = chunk.subarray(at, at + RANDOM_IO_BYTES);
      const ok = piece.equals(payload.subarray(at, at + RANDOM_IO_BYTES)) || piece.equals(randomPiece);
      assert(ok, `volume holds wrong bytes at ${chunkStart + at}`);
    }
  }
}
