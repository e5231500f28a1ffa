// On-disk layout of a space map (formats/metadata.md, "Space maps"): bitmap blocks of one
// count byte per block, an index chain listing the bitmaps, and an overflow chain of exact
// counts (BITMAP_LAYOUT, INDEX_LAYOUT, OVERFLOW_LAYOUT below). A count byte of 255 means
// the real count (255 or more) is in the overflow list.

import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { defineLayout, readUint, writeUint } from "../io/byte-layout.js";
import { readU64, writeU64 } from "../io/integers.js";
import { BLOCK_HEADER_BYTES, METADATA_BLOCK_BYTES } from "./block-format.js";
import { METADATA_BLOCKS_MAX, SPACE_MAP_CHAIN_BLOCKS_MAX } from "./limits.js";

/** Every space-map block keeps its entries from here to the end of the block. */
const PAYLOAD_OFFSET = 32;
const PAYLOAD_BYTES = METADATA_BLOCK_BYTES - PAYLOAD_OFFSET;
const INDEX_ENTRY_BYTES = 8;
const OVERFLOW_ENTRY_BYTES = 12;
export const BITMAP_ENTRIES = PAYLOAD_BYTES; // 4064
export const INDEX_ENTRIES = Math.floor(PAYLOAD_BYTES / INDEX_ENTRY_BYTES); // 508
export const OVERFLOW_ENTRIES = Math.floor(PAYLOAD_BYTES / OVERFLOW_ENTRY_BYTES); // 338

export const BITMAP_LAYOUT = defineLayout("space-map bitmap", METADATA_BLOCK_BYTES, {
  blockHeader: { offset: 0, bytes: BLOCK_HEADER_BYTES },
  chunkIndex: { offset: 16, bytes: 8 },
  entryCount: { offset: 24, bytes: 4 },
  reserved: { offset: 28, bytes: 4 },
  counts: { offset: PAYLOAD_OFFSET, bytes: BITMAP_ENTRIES },
});

/** Index and overflow blocks are links of a chain, and start alike. */
const CHAIN_HEADER = {
  blockHeader: { offset: 0, bytes: BLOCK_HEADER_BYTES },
  nextBlock: { offset: 16, bytes: 8 },
  entryCount: { offset: 24, bytes: 4 },
  reserved: { offset: 28, bytes: 4 },
} as const;

export const INDEX_LAYOUT = defineLayout("space-map index", METADATA_BLOCK_BYTES, {
  ...CHAIN_HEADER,
  bitmapBlocks: { offset: PAYLOAD_OFFSET, bytes: INDEX_ENTRIES * INDEX_ENTRY_BYTES },
});

export const OVERFLOW_LAYOUT = defineLayout("space-map overflow", METADATA_BLOCK_BYTES, {
  ...CHAIN_HEADER,
  entries: { offset: PAYLOAD_OFFSET, bytes: OVERFLOW_ENTRIES * OVERFLOW_ENTRY_BYTES },
});

export const OVERFLOW_ENTRY = defineLayout("space-map overflow entry", OVERFLOW_ENTRY_BYTES, {
  blockIndex: { offset: 0, bytes: 8 },
  count: { offset: 8, bytes: 4 },
});

// A count reaches the overflow list only with 255 referrers, and every referrer is one of
// at most 254 entries in some metadata block: fewer blocks overflow than the metadata file
// has blocks, so no legitimate overflow chain, nor the metadata space map's index chain,
// is mistaken for a loop.
assert(Math.ceil(METADATA_BLOCKS_MAX / OVERFLOW_ENTRIES) <= SPACE_MAP_CHAIN_BLOCKS_MAX, "overflow chain within the chain bound");
assert(Math.ceil(METADATA_BLOCKS_MAX / BITMAP_ENTRIES / INDEX_ENTRIES) <= SPACE_MAP_CHAIN_BLOCKS_MAX, "index chain within the chain bound");

export function encodeBitmap(block: Buffer, chunkIndex: number, counts: Uint8Array): void {
  assert(counts.length <= BITMAP_ENTRIES, "bitmap entries");
  writeUint(block, BITMAP_LAYOUT.chunkIndex, chunkIndex);
  writeUint(block, BITMAP_LAYOUT.entryCount, counts.length);
  block.set(counts, BITMAP_LAYOUT.counts.offset);
}

export function decodeBitmap(block: Buffer, blockIndex: number, expectedChunk: number): Uint8Array {
  const chunkIndex = readUint(block, BITMAP_LAYOUT.chunkIndex);
  const entryCount = readUint(block, BITMAP_LAYOUT.entryCount);
  if (chunkIndex !== expectedChunk) {
    throw new CorruptBlockError(
      blockIndex,
      "bad-space-map",
      `space map bitmap for chunk ${chunkIndex} found where chunk ${expectedChunk} belongs`,
    );
  }
  if (entryCount > BITMAP_ENTRIES) throw new CorruptBlockError(blockIndex, "bad-space-map", `bitmap holds ${entryCount} entries`);
  return block.subarray(BITMAP_LAYOUT.counts.offset, BITMAP_LAYOUT.counts.offset + entryCount);
}

export function encodeChainHeader(block: Buffer, nextBlock: number, entryCount: number): void {
  writeUint(block, CHAIN_HEADER.nextBlock, nextBlock);
  writeUint(block, CHAIN_HEADER.entryCount, entryCount);
}

export function decodeChainHeader(block: Buffer, blockIndex: number, capacity: number): { nextBlock: number; entryCount: number } {
  const nextBlock = readUint(block, CHAIN_HEADER.nextBlock);
  const entryCount = readUint(block, CHAIN_HEADER.entryCount);
  if (!Number.isSafeInteger(nextBlock)) throw new CorruptBlockError(blockIndex, "pointer-out-of-range", "next-block pointer out of range");
  if (entryCount > capacity)
    throw new CorruptBlockError(blockIndex, "bad-space-map", `chain block holds ${entryCount} entries, capacity ${capacity}`);
  return { nextBlock, entryCount };
}

export function writeIndexEntry(block: Buffer, slot: number, location: number): void {
  writeU64(block, INDEX_LAYOUT.bitmapBlocks.offset + slot * INDEX_ENTRY_BYTES, location);
}

export function readIndexEntry(block: Buffer, slot: number): number {
  return readU64(block, INDEX_LAYOUT.bitmapBlocks.offset + slot * INDEX_ENTRY_BYTES);
}

export function writeOverflowEntry(block: Buffer, slot: number, blockIndex: number, count: number): void {
  const at = OVERFLOW_LAYOUT.entries.offset + slot * OVERFLOW_ENTRY_BYTES;
  writeU64(block, at + OVERFLOW_ENTRY.blockIndex.offset, blockIndex);
  block.writeUInt32LE(count, at + OVERFLOW_ENTRY.count.offset);
}

export function readOverflowEntry(block: Buffer, slot: number): [number, number] {
  const at = OVERFLOW_LAYOUT.entries.offset + slot * OVERFLOW_ENTRY_BYTES;
  return [readU64(block, at + OVERFLOW_ENTRY.blockIndex.offset), block.readUInt32LE(at + OVERFLOW_ENTRY.count.offset)];
}
