// The million-mapping pool that sections 2, 4 and 5 share: one 1 TiB volume with every
// 16th block mapped (2^20 mappings, so the pool needs 64 GiB of sparse data file), built
// through the metadata layer in sequential or random key order.

import { stat } from "node:fs/promises";
import { DATA_BLOCK_BYTES } from "../../../src/thin/limits.js";
import { Pool } from "../../../src/thin/pool.js";
import { mapFreshBlocks } from "../support/mapping-builder.js";
import { formatCount, progress } from "../support/report.js";
import type { ScratchDir } from "../support/scratch-dir.js";
import { seededRandom, shuffle, stridedKeys } from "../support/seeded-random.js";

export const LARGE_VOLUME = "large";
export const LARGE_VOLUME_BYTES = 2 ** 40;
export const LARGE_STRIDE_BLOCKS = 16;
export const LARGE_MAPPINGS = LARGE_VOLUME_BYTES / DATA_BLOCK_BYTES / LARGE_STRIDE_BLOCKS;
/** Room for the small volume and the snapshots' first writes, should anyone add them. */
const SPARE_DATA_BLOCKS = 8192;

export type KeyOrder = "sequential" | "random";

export interface LargePool {
  pool: Pool;
  metaPath: string;
  dataPath: string;
  order: KeyOrder;
  mappingCount: number;
  buildMs: number;
  /** Metadata blocks in use right after the build's last commit, before anything else is added. */
  metadataBlocksUsed: number;
  dataFileBytes: number;
  /** Bytes the data file occupies on disk: it is sparse. */
  dataFileAllocatedBytes: number;
}

export async function buildLargePool(scratch: ScratchDir, order: KeyOrder, seed: number): Promise<LargePool> {
  const { dataPath, metaPath } = scratch.poolPaths(`large-${order}`);
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes: (LARGE_MAPPINGS + SPARE_DATA_BLOCKS) * DATA_BLOCK_BYTES });
  try {
    await pool.createVolume(LARGE_VOLUME, LARGE_VOLUME_BYTES);
    const keys = stridedKeys(LARGE_MAPPINGS, LARGE_STRIDE_BLOCKS);
    if (order === "random") shuffle(keys, seededRandom(seed));
    progress(`large pool (${order}): mapping ${formatCount(LARGE_MAPPINGS)} blocks of a 1 TiB volume`);
    const started = performance.now();
    await mapFreshBlocks(pool, LARGE_VOLUME, keys, (mapped) => {
      if (mapped % 200_000 < 50_000) progress(`large pool (${order}): ${formatCount(mapped)} mapped`);
    });
    const buildMs = performance.now() - started;
    const dataStat = await stat(dataPath);
    return {
      pool,
      metaPath,
      dataPath,
      order,
      mappingCount: LARGE_MAPPINGS,
      buildMs,
      // A pool just built has both space maps: the count is known.
      metadataBlocksUsed: pool.status().metadataBlocksUsed!,
      dataFileBytes: dataStat.size,
      dataFileAllocatedBytes: dataStat.blocks * 512,
    };
  } catch (error) {
    await pool.close();
    throw error;
  }
}
