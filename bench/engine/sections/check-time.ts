// Section 7: `thinp check` on a pool holding a million mappings shared by 100 snapshots.
// Shared subtrees are walked once, so the check costs the pool's distinct metadata, not
// the mappings it presents to the volumes.

import { checkPool } from "../../../src/thin/check.js";
import { Pool } from "../../../src/thin/pool.js";
import { mapFreshBlocks } from "../support/mapping-builder.js";
import { formatCount, formatMs, progress, type Section } from "../support/report.js";
import { seededRandom, shuffle, stridedKeys } from "../support/seeded-random.js";
import { LARGE_STRIDE_BLOCKS, LARGE_VOLUME, type LargePool } from "./large-pool.js";

export const CHECK_SNAPSHOTS = 100;
/** Blocks each snapshot rewrites, so the snapshots diverge from the origin and each other. */
const REMAPPED_PER_SNAPSHOT = 64;
/** The bound for 1M mappings across 100 snapshots. */
const CHECK_SECONDS_MAX = 10;

export async function measureCheckTime(large: LargePool, seed: number): Promise<Section> {
  const pool = await Pool.open(large.metaPath);
  const random = seededRandom(seed ^ 0xc4ec);
  try {
    for (let i = 0; i < CHECK_SNAPSHOTS; i++) {
      const name = `snap-${i}`;
      await pool.snapshot(LARGE_VOLUME, name);
      const keys = shuffle(stridedKeys(large.mappingCount, LARGE_STRIDE_BLOCKS), random).slice(0, REMAPPED_PER_SNAPSHOT);
      await mapFreshBlocks(pool, name, keys);
    }
    await pool.commit();
  } finally {
    await pool.close();
  }
  progress(`check time: checking ${formatCount(large.mappingCount)} mappings shared by ${CHECK_SNAPSHOTS} snapshots`);
  const started = performance.now();
  const report = await checkPool(large.metaPath);
  const elapsedMs = performance.now() - started;
  const { verified } = report;
  return {
    title: `7. Check time: 1M mappings across ${CHECK_SNAPSHOTS} snapshots`,
    method: [
      `The section-4 ${large.order} pool (one volume, ${formatCount(large.mappingCount)} mappings) gets ${CHECK_SNAPSHOTS} snapshots, each of which remaps ${REMAPPED_PER_SNAPSHOT} random blocks, then is closed.`,
      "`checkPool` (what `thinp check` runs) then verifies every checksum, tree invariant and reference count, in this process, timed end to end.",
    ],
    tables: [
      {
        headers: ["measure", "value"],
        rows: [
          ["check time", `${formatMs(elapsedMs)} ms`],
          ["clean", String(report.clean)],
          ["volumes", formatCount(verified.volumes)],
          ["mappings verified (summed over volumes)", formatCount(verified.mappings)],
          ["distinct tree nodes read", formatCount(verified.treeNodes)],
          ["metadata blocks", formatCount(verified.metadataBlocks)],
          ["data blocks referenced", formatCount(verified.dataBlocksReferenced)],
        ],
        numeric: [false, true],
      },
    ],
    findings: [elapsedMs / 1000 < CHECK_SECONDS_MAX ? `PASS: under ${CHECK_SECONDS_MAX} s.` : `FAIL: over ${CHECK_SECONDS_MAX} s.`],
  };
}
