// On-disk layout of a space map (formats/metadata.md, "Space maps"):
//   bitmap block   header | u64 chunk index | u32 entry count | pad | one byte per block
//   index block    header | u64 next index block (0 = last) | u32 entry count | pad | u64 bitmap locations
//   overflow block header | u64 next overflow block (0 = last) | u32 entry count | pad | (u64 block, u32 count)
// A count byte of 255 means the real count (255 or more) is in the overflow list.

import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { readU64, writeU64 } from "../io/integers.js";
import { METADATA_BLOCK_BYTES } from "./block-format.js";

const PAYLOAD_OFFSET = 32;
export const BITMAP_ENTRIES = METADATA_BLOCK_BYTES - PAYLOAD_OFFSET; // 4064
export const INDEX_ENTRIES = (METADATA_BLOCK_BYTES - PAYLOAD_OFFSET) / 8; // 508
const OVERFLOW_ENTRY_BYTES = 12;
export const OVERFLOW_ENTRIES = Math.floor((METADATA_BLOCK_BYTES - PAYLOAD_OFFSET) / OVERFLOW_ENTRY_BYTES); // 338

export function encodeBitmap(block: Buffer, chunkIndex: number, counts: Uint8Array): void {
  assert(counts.length <= BITMAP_ENTRIES, "bitmap entries");
  writeU64(block, 16, chunkIndex);
  block.writeUInt32LE(counts.length, 24);
  block.set(counts, PAYLOAD_OFFSET);
}

export function decodeBitmap(block: Buffer, blockIndex: number, expectedChunk: number): Uint8Array {
  const chunkIndex = readU64(block, 16);
  const entryCount = block.readUInt32LE(24);
  if (chunkIndex !== expectedChunk) {
    throw new CorruptBlockError(blockIndex, "bad-space-map", `space map bitmap for chunk ${chunkIndex} found where chunk ${expectedChunk} belongs`);
  }
  if (entryCount > BITMAP_ENTRIES) throw new CorruptBlockError(blockIndex, "bad-space-map", `bitmap holds ${entryCount} entries`);
  return block.subarray(PAYLOAD_OFFSET, PAYLOAD_OFFSET + entryCount);
}

export function encodeChainHeader(block: Buffer, nextBlock: number, entryCount: number): void {
  writeU64(block, 16, nextBlock);
  block.writeUInt32LE(entryCount, 24);
}

export function decodeChainHeader(block: Buffer, blockIndex: number, capacity: number): { nextBlock: number; entryCount: number } {
  const nextBlock = readU64(block, 16);
  const entryCount = block.readUInt32LE(24);
  if (!Number.isSafeInteger(nextBlock)) throw new CorruptBlockError(blockIndex, "pointer-out-of-range", "next-block pointer out of range");
  if (entryCount > capacity) throw new CorruptBlockError(blockIndex, "bad-space-map", `chain block holds ${entryCount} entries, capacity ${capacity}`);
  return { nextBlock, entryCount };
}

export function writeIndexEntry(block: Buffer, slot: number, location: number): void {
  writeU64(block, PAYLOAD_OFFSET + slot * 8, location);
}

export function readIndexEntry(block: Buffer, slot: number): number {
  return readU64(block, PAYLOAD_OFFSET + slot * 8);
}

export function writeOverflowEntry(block: Buffer, slot: number, blockIndex: number, count: number): void {
  const at = PAYLOAD_OFFSET + slot * OVERFLOW_ENTRY_BYTES;
  writeU64(block, at, blockIndex);
  block.writeUInt32LE(count, at + 8);
}

export function readOverflowEntry(block: Buffer, slot: number): [number, number] {
  const at = PAYLOAD_OFFSET + slot * OVERFLOW_ENTRY_BYTES;
  return [readU64(block, at), block.readUInt32LE(at + 8)];
}
