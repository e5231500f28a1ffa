// Maps every block of a volume, in order, through the metadata layer: `allocateDataBlock` +
// `mapBlock` in `pool.transactions.change` sections, as a write's mapping is made and as
// mapping-builder.ts does, but without a key array (10^7 keys would be 80 MB of the bench's
// heap), in sections of 50,000 and with a commit every 10^6. Per mapping it costs about what
// `mapFreshBlocks` costs: the time goes to `mapBlock` itself, not to the sections and commits
// around it. No data is written, so the data file stays sparse.

import { assert } from "../../../src/io/assert.js";
import type { Pool } from "../../../src/thin/pool.js";
import type { BuildProgress } from "./mapping-builder.js";

/** mapBlock calls per metadata section; the pool writes dirty blocks out between sections. */
export const BULK_MAPPINGS_PER_SECTION = 50_000;
/** A commit every this many mappings keeps each transaction bounded. */
export const BULK_MAPPINGS_PER_COMMIT = 1_000_000;

/** Maps virtual blocks 0..blockCount-1 of the volume to fresh data blocks; commits as it goes and at the end. */
export async function mapEveryBlock(pool: Pool, volumeName: string, blockCount: number, progress?: BuildProgress): Promise<void> {
  assert(BULK_MAPPINGS_PER_COMMIT % BULK_MAPPINGS_PER_SECTION === 0, "commits fall between sections");
  for (let start = 0; start < blockCount; start += BULK_MAPPINGS_PER_SECTION) {
    const end = Math.min(blockCount, start + BULK_MAPPINGS_PER_SECTION);
    await pool.transactions.change(async (metadata) => {
      const state = await metadata.requireVolume(volumeName);
      for (let virtualBlock = start; virtualBlock < end; virtualBlock++) {
        const dataBlock = metadata.allocateDataBlock();
        assert(dataBlock !== null, "the bench sized its pool too small");
        await metadata.mapBlock(state, virtualBlock, dataBlock);
      }
    });
    if (end % BULK_MAPPINGS_PER_COMMIT === 0 || end === blockCount) {
      await pool.commit();
      progress?.(end);
    }
  }
}
