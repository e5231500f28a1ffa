// Child process for section 5: opens a pool fresh, reads random 4 KiB pieces across one
// volume, and prints one JSON line with its peak resident memory. A fresh process is the
// point: nothing built while the pool was made can hide in this heap.

import { parseArgs } from "node:util";
import { assert } from "../../src/io/assert.js";
import { DATA_BLOCK_BYTES } from "../../src/thin/limits.js";
import { Pool } from "../../src/thin/pool.js";
import { randomIndex, seededRandom } from "./support/seeded-random.js";

export const READ_BYTES = 4096;

export interface ReopenReport {
  openMs: number;
  readMs: number;
  readCount: number;
  /** Reads that landed in a mapped block (the rest read an unmapped block as zeros). */
  mappedReadCount: number;
  maxRssKiB: number;
  heapUsedBytes: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      meta: { type: "string" },
      volume: { type: "string" },
      reads: { type: "string" },
      stride: { type: "string" },
      seed: { type: "string" },
    },
  });
  const readCount = Number(values.reads);
  const strideBlocks = Number(values.stride);
  assert(values.meta !== undefined && values.volume !== undefined, "--meta and --volume are required");
  assert(Number.isSafeInteger(readCount) && Number.isSafeInteger(strideBlocks) && strideBlocks > 0, "--reads and --stride are integers");
  const random = seededRandom(Number(values.seed ?? 1));

  const opened = performance.now();
  const pool = await Pool.open(values.meta);
  const volume = await pool.volume(values.volume);
  const openMs = performance.now() - opened;

  const blockCount = Math.floor(volume.sizeBytes / DATA_BLOCK_BYTES);
  const slotsPerBlock = DATA_BLOCK_BYTES / READ_BYTES;
  let mappedReadCount = 0;
  const started = performance.now();
  for (let i = 0; i < readCount; i++) {
    // Half the reads aim at a mapped block (every stride-th), so lookups reach real leaves
    // and the data file is read too; the rest land anywhere in the volume.
    let virtualBlock = randomIndex(random, blockCount);
    if (i % 2 === 0) virtualBlock -= virtualBlock % strideBlocks;
    if (virtualBlock % strideBlocks === 0) mappedReadCount++;
    const offset = virtualBlock * DATA_BLOCK_BYTES + randomIndex(random, slotsPerBlock) * READ_BYTES;
    const bytes = await volume.read(offset, READ_BYTES);
    assert(bytes.length === READ_BYTES, "short read");
  }
  const readMs = performance.now() - started;
  const report: ReopenReport = {
    openMs,
    readMs,
    readCount,
    mappedReadCount,
    maxRssKiB: process.resourceUsage().maxRSS,
    heapUsedBytes: process.memoryUsage().heapUsed,
  };
  await pool.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
