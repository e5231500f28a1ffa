// The qemu:dirty-bitmap: contexts of a served pool: what changed in an export since another
// volume, from the two mapping trees (Pool.diffSides), for one BLOCK_STATUS range at a time.

import { assert } from "../io/assert.js";
import type { ByteRange, ChangeTracker } from "../nbd/catalog.js";
import { DATA_BLOCK_BYTES } from "../thin/limits.js";
import type { Pool } from "../thin/pool.js";
import type { DiffSides } from "../thin/volume-diff.js";

/**
 * A tracker of the blocks in which `sides.right` (the export) differs from `sides.left` (the
 * base). Every kind of difference counts: a block either maps alone, or both map to different
 * data blocks. Only the blocks the range touches are compared, so the cost of a BLOCK_STATUS
 * grows with the changes in its range, not with the volume.
 */
export function volumeChanges(pool: Pool, sides: DiffSides): ChangeTracker {
  return {
    async changedRanges(offset: number, byteLength: number): Promise<ByteRange[]> {
      assert(Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(byteLength) && byteLength > 0, "changed range request");
      const end = offset + byteLength;
      const fromBlock = Math.floor(offset / DATA_BLOCK_BYTES);
      const toBlock = Math.ceil(end / DATA_BLOCK_BYTES);
      const ranges: ByteRange[] = [];
      // Bounded by the blocks in the range: at most one range per block.
      for await (const difference of pool.diffSides(sides, { fromBlock, toBlock })) {
        const start = Math.max(offset, difference.offset);
        const stop = Math.min(end, difference.offset + difference.length);
        if (start >= stop) continue;
        const last = ranges[ranges.length - 1];
        // Kinds that follow each other are one changed range to the client.
        if (last !== undefined && last.offset + last.length === start) last.length = stop - last.offset;
        else ranges.push({ offset: start, length: stop - start });
      }
      return ranges;
    },
  };
}
