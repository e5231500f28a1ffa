// Section 1: how fast the metadata layer inserts and looks up mappings in a volume that
// already holds 100k of them, for sequential and for random virtual blocks.

import { Pool } from "../../../src/thin/pool.js";
import { DATA_BLOCK_BYTES } from "../../../src/thin/limits.js";
import { lookupKeys, mapFreshBlocks, mapKeys, unmapKeys, MAPPINGS_PER_SECTION } from "../support/mapping-builder.js";
import { formatCount, formatMs, progress, type Section } from "../support/report.js";
import type { ScratchDir } from "../support/scratch-dir.js";
import { seededRandom, shuffle, stridedKeys } from "../support/seeded-random.js";
import { formatRme, newBench, ratePerSecond, statsOf } from "../support/tinybench-stats.js";

export const PREFILLED_MAPPINGS = 100_000;
/** Each timed iteration inserts or looks up this many mappings in one metadata section. */
const BATCH_MAPPINGS = MAPPINGS_PER_SECTION;
/** Data blocks: both prefilled volumes, plus a batch in flight, with room to spare. */
const POOL_BLOCKS = 4 * PREFILLED_MAPPINGS;

export async function measureMappingRates(scratch: ScratchDir, seed: number): Promise<Section> {
  const random = seededRandom(seed);
  const { dataPath, metaPath } = scratch.poolPaths("mapping-rate");
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes: POOL_BLOCKS * DATA_BLOCK_BYTES });
  try {
    // Sequential: blocks 0..100k-1 mapped in order; inserts append 100k.., lookups walk a run.
    const sequentialKeys = stridedKeys(PREFILLED_MAPPINGS, 1);
    const appendedKeys = stridedKeys(BATCH_MAPPINGS, 1).map((offset) => PREFILLED_MAPPINGS + offset);
    // Random: the even blocks of 0..200k mapped in random order; inserts land on random odd blocks.
    const evenKeys = shuffle(stridedKeys(PREFILLED_MAPPINGS, 2), random);
    const oddKeys = shuffle(
      stridedKeys(PREFILLED_MAPPINGS, 2).map((key) => key + 1),
      random,
    );
    await pool.createVolume("sequential", (PREFILLED_MAPPINGS + BATCH_MAPPINGS) * DATA_BLOCK_BYTES);
    await pool.createVolume("random", 2 * PREFILLED_MAPPINGS * DATA_BLOCK_BYTES);
    progress(`mapping rate: prefilling two volumes with ${formatCount(PREFILLED_MAPPINGS)} mappings each`);
    await mapFreshBlocks(pool, "sequential", sequentialKeys);
    await mapFreshBlocks(pool, "random", evenKeys);

    let window = 0;
    const nextWindow = (keyCount: number) => {
      const start = (window++ * BATCH_MAPPINGS) % (keyCount - BATCH_MAPPINGS + 1);
      return [start, start + BATCH_MAPPINGS] as const;
    };
    let inserted: readonly [readonly number[], number, number] | null = null;
    // Each insert batch is removed again and committed outside the timing, so every
    // iteration starts from the same committed 100k-mapping tree.
    const undoInsert = {
      afterEach: async () => {
        if (!inserted) return;
        const [keys, start, end] = inserted;
        await unmapKeys(pool, keys === appendedKeys ? "sequential" : "random", keys, start, end);
        await pool.commit();
        inserted = null;
      },
    };

    const bench = newBench({ time: 1000, iterations: 24 });
    bench.add(
      "insert, sequential blocks",
      async () => {
        inserted = [appendedKeys, 0, BATCH_MAPPINGS];
        await mapKeys(pool, "sequential", appendedKeys, 0, BATCH_MAPPINGS);
      },
      undoInsert,
    );
    bench.add(
      "insert, random blocks",
      async () => {
        const [start, end] = nextWindow(oddKeys.length);
        inserted = [oddKeys, start, end];
        await mapKeys(pool, "random", oddKeys, start, end);
      },
      undoInsert,
    );
    bench.add("lookup, sequential blocks", async () => {
      const [start, end] = nextWindow(sequentialKeys.length);
      await lookupKeys(pool, "sequential", sequentialKeys, start, end);
    });
    bench.add("lookup, random blocks", async () => {
      const [start, end] = nextWindow(evenKeys.length);
      await lookupKeys(pool, "random", evenKeys, start, end);
    });
    progress("mapping rate: running tinybench");
    await bench.run();

    const rows = bench.tasks.map((task) => {
      const stats = statsOf(task);
      return [
        task.name,
        formatCount(ratePerSecond(stats, BATCH_MAPPINGS)),
        formatMs(stats.meanMs),
        formatMs(stats.p99Ms),
        formatRme(stats),
        String(stats.sampleCount),
      ];
    });
    return {
      title: "1. Mapping insert and lookup rate (metadata layer, file pool)",
      method: [
        `A file pool in the temp dir; each volume holds ${formatCount(PREFILLED_MAPPINGS)} committed mappings.`,
        `One tinybench iteration = ${formatCount(BATCH_MAPPINGS)} \`allocateDataBlock\` + \`mapBlock\` (insert) or \`lookupMapping\` (lookup) calls in one \`pool.transactions.change\` section (\`read\` for lookups).`,
        "Sequential inserts append past the last mapped block; random inserts land between random mapped blocks. Each insert batch is unmapped and committed again after its iteration (untimed), so every iteration starts from the same tree; the timed part never commits.",
      ],
      tables: [
        {
          headers: ["operation", "mappings/s", `ms per ${formatCount(BATCH_MAPPINGS)}`, "p99 ms", "rme", "samples"],
          rows,
          numeric: [false, true, true, true, true, true],
        },
      ],
    };
  } finally {
    await pool.close();
  }
}
