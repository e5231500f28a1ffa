// Import discards whole blocks of zeros instead of writing them, and export
// leaves them as holes: either way a zero block costs no data block, and a
// sparse image round-trips through the pool without filling it.

import { assert } from "../src/io/assert.js";

export interface ByteRun {
  /** Offset of the run within the buffer it was cut from. */
  start: number;
  byteLength: number;
  /** Whole, block-aligned blocks of zeros only; a partial block is never `zero`. */
  zero: boolean;
}

/**
 * Cuts `bytes`, which sit at `volumeOffset` in a volume of `blockBytes` blocks,
 * into alternating runs of data and of whole zero blocks, adjacent runs of one
 * kind merged. The runs cover `bytes` exactly, in order.
 */
export function zeroBlockRuns(volumeOffset: number, bytes: Uint8Array, blockBytes: number): ByteRun[] {
  assert(Number.isSafeInteger(blockBytes) && blockBytes > 0, `block size ${blockBytes}`);
  const zeroBlock = new Uint8Array(blockBytes);
  const runs: ByteRun[] = [];
  let start = 0;
  while (start < bytes.length) {
    const blockEnd = blockBytes - ((volumeOffset + start) % blockBytes);
    const byteLength = Math.min(blockEnd, bytes.length - start);
    const segment = bytes.subarray(start, start + byteLength);
    const zero = byteLength === blockBytes && Buffer.from(segment.buffer, segment.byteOffset, byteLength).equals(zeroBlock);
    const previous = runs[runs.length - 1];
    if (previous !== undefined && previous.zero === zero) {
      previous.byteLength += byteLength;
    } else {
      runs.push({ start, byteLength, zero });
    }
    start += byteLength;
  }
  return runs;
}
