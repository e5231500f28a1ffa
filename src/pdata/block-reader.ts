// The one way a metadata block comes off the disk, for the engine, check and repair alike:
// the pointer that led to it is held to the file's size, then the block's type, self index
// and checksum are verified (block-format.ts). Repair and check trust a block exactly as far
// as the engine does because they read it through the same function.

import { CorruptBlockError } from "../errors.js";
import type { StorageFile } from "../io/storage-file.js";
import { METADATA_BLOCK_BYTES, verifyBlock, type BlockType } from "./block-format.js";

/** Reads one verified block of a type; throws CorruptBlockError naming the block. */
export type VerifiedBlockReader = (blockIndex: number, type: BlockType) => Promise<Buffer>;

/**
 * Block indexes reach here from pointers read off the disk. A block that verifies can still
 * point past the file (an engine bug, a stale block): that is corruption to report, not an
 * invariant of this process to assert.
 */
export function requireBlockInFile(blockIndex: number, blockCount: number, path?: string): void {
  if (!(Number.isSafeInteger(blockIndex) && blockIndex >= 0 && blockIndex < blockCount)) {
    throw new CorruptBlockError(
      blockIndex,
      "pointer-out-of-range",
      `a pointer to it lies beyond the metadata file's ${blockCount} blocks`,
      path,
    );
  }
}

/** Reads block `blockIndex` of a metadata file of `blockCount` blocks and verifies it is a `type` block. */
export async function readVerifiedBlock(
  file: StorageFile,
  blockIndex: number,
  type: BlockType,
  blockCount: number,
  path?: string,
): Promise<Buffer> {
  requireBlockInFile(blockIndex, blockCount, path);
  const block = Buffer.alloc(METADATA_BLOCK_BYTES);
  await file.read(block, blockIndex * METADATA_BLOCK_BYTES);
  verifyBlock(block, type, blockIndex);
  return block;
}

/** A reader of the blocks of a file whose size the superblock gives. */
export function verifiedBlockReader(file: StorageFile, blockCount: number, path?: string): VerifiedBlockReader {
  return (blockIndex, type) => readVerifiedBlock(file, blockIndex, type, blockCount, path);
}
