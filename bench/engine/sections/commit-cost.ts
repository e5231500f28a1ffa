// Section 3: what a commit costs after N mapping changes. The metadata files are wrapped
// in counters so the table shows the blocks and fsyncs behind each time.

import { NodeStorageFile } from "../../../src/io/node-storage-file.js";
import { METADATA_BLOCK_BYTES } from "../../../src/pdata/block-format.js";
import { DATA_BLOCK_BYTES } from "../../../src/thin/limits.js";
import { Pool } from "../../../src/thin/pool.js";
import { CountingStorageFile } from "../support/counting-file.js";
import { mapFreshBlocks, mapKeys, MAPPINGS_PER_SECTION } from "../support/mapping-builder.js";
import { formatCount, formatMs, progress, type Section } from "../support/report.js";
import type { ScratchDir } from "../support/scratch-dir.js";
import { randomIndex, seededRandom, shuffle, stridedKeys } from "../support/seeded-random.js";
import { formatRme, newBench, statsOf } from "../support/tinybench-stats.js";

const VOLUME_MAPPINGS = 100_000;
const CHANGE_COUNTS = [0, 1, 100, 10_000] as const;
/** Old blocks are freed only at the commit, so each iteration holds up to the largest N extra. */
const POOL_BLOCKS = 2 * VOLUME_MAPPINGS + 2 * Math.max(...CHANGE_COUNTS);

export async function measureCommitCost(scratch: ScratchDir, seed: number): Promise<Section> {
  const random = seededRandom(seed);
  const { dataPath, metaPath } = scratch.poolPaths("commit-cost");
  const metaFile = new CountingStorageFile(await NodeStorageFile.open(metaPath, "create", "metadata file"));
  const dataFile = new CountingStorageFile(await NodeStorageFile.open(dataPath, "create", "data file"));
  const pool = await Pool.formatFiles(metaFile, dataFile, { sizeBytes: POOL_BLOCKS * DATA_BLOCK_BYTES });
  try {
    await pool.createVolume("volume", VOLUME_MAPPINGS * DATA_BLOCK_BYTES);
    progress(`commit cost: prefilling a volume with ${formatCount(VOLUME_MAPPINGS)} mappings`);
    await mapFreshBlocks(pool, "volume", stridedKeys(VOLUME_MAPPINGS, 1));

    const rows: string[][] = [];
    for (const changeCount of CHANGE_COUNTS) {
      const written: number[] = [];
      const syncs: number[] = [];
      const bench = newBench({ time: 500, iterations: changeCount >= 10_000 ? 8 : 24 });
      bench.add("commit", () => pool.commit(), {
        // Untimed: overwrite N random mapped blocks with fresh data blocks, as N first
        // writes after a snapshot would; then start counting.
        beforeEach: async () => {
          const keys = pickDistinct(random, VOLUME_MAPPINGS, changeCount);
          for (let start = 0; start < keys.length; start += MAPPINGS_PER_SECTION) {
            await mapKeys(pool, "volume", keys, start, Math.min(keys.length, start + MAPPINGS_PER_SECTION));
          }
          metaFile.resetCounts();
          dataFile.resetCounts();
        },
        afterEach: (mode) => {
          if (mode !== "run") return;
          written.push(metaFile.writtenBytes / METADATA_BLOCK_BYTES);
          syncs.push(metaFile.syncCount + dataFile.syncCount);
        },
      });
      progress(`commit cost: ${formatCount(changeCount)} changes per commit`);
      await bench.run();
      const stats = statsOf(bench.tasks[0]);
      rows.push([
        formatCount(changeCount),
        formatMs(stats.meanMs),
        formatMs(stats.p50Ms),
        formatMs(stats.p99Ms),
        formatRme(stats),
        formatCount(mean(written)),
        formatCount(mean(syncs)),
        String(stats.sampleCount),
      ]);
    }
    return {
      title: "3. Commit cost after N mapping changes",
      method: [
        `A file pool whose volume holds ${formatCount(VOLUME_MAPPINGS)} mappings. Before each timed \`pool.commit()\` (untimed) N random mapped blocks are remapped to fresh data blocks.`,
        "A commit writes the shadowed B-tree nodes, the changed space-map bitmaps and the superblock, with fsyncs of the data and metadata files; `blocks written` and `fsyncs` are counted by a wrapper around the files. N = 0 is a commit with nothing written or changed since the last one, which syncs nothing.",
      ],
      tables: [
        {
          headers: ["N changes", "mean ms", "p50 ms", "p99 ms", "rme", "metadata blocks written", "fsyncs", "samples"],
          rows,
          numeric: [true, true, true, true, true, true, true, true],
        },
      ],
    };
  } finally {
    await pool.close();
  }
}

/** `count` distinct blocks out of 0..blockCount-1, in random order. */
function pickDistinct(random: () => number, blockCount: number, count: number): number[] {
  if (count * 4 > blockCount) return shuffle(stridedKeys(blockCount, 1), random).slice(0, count);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(randomIndex(random, blockCount));
  return [...picked];
}

function mean(values: number[]): number {
  return values.length === 0 ? 0 : values.reduce((sum, value) => sum + value, 0) / values.length;
}
