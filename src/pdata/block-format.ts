// Every metadata block starts with the same 16-byte header so that it identifies itself:
//   0  u32  CRC32C of bytes 4..4096, xor the salt of its block type
//   4  u32  block type
//   8  u64  its own block index
// A block read from the wrong place, or of the wrong type, or with any flipped bit,
// fails verification and is reported by index. See formats/metadata.md.

import { crc32c } from "@node-rs/crc32";
import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { readU64, writeU64 } from "../io/integers.js";
import { METADATA_BLOCK_BYTES } from "./limits.js";

// Its home is limits.ts; the name stays here for the modules that import it from here.
export { METADATA_BLOCK_BYTES };
export const BLOCK_HEADER_BYTES = 16;

export enum BlockType {
  Superblock = 0x5355_5042, // "SUPB"
  BTreeNode = 0x4e4f_4445, // "NODE"
  SpaceMapBitmap = 0x424d_4150, // "BMAP"
  SpaceMapIndex = 0x494e_4458, // "INDX"
  SpaceMapOverflow = 0x4f56_4552, // "OVER"
}

const SALTS: Record<BlockType, number> = {
  [BlockType.Superblock]: 0x0a1b_2c3d,
  [BlockType.BTreeNode]: 0x5e6f_7081,
  [BlockType.SpaceMapBitmap]: 0x1357_9bdf,
  [BlockType.SpaceMapIndex]: 0x2468_ace0,
  [BlockType.SpaceMapOverflow]: 0x7f3e_5d1c,
};

export function blockTypeName(type: number): string {
  return BlockType[type] ?? `unknown(0x${type.toString(16)})`;
}

function checksumOf(block: Buffer, type: BlockType): number {
  return (crc32c(block.subarray(4)) ^ SALTS[type]) >>> 0;
}

/** Stamps the header and checksum; call last, after every other byte is final. */
export function sealBlock(block: Buffer, type: BlockType, blockIndex: number): void {
  assert(block.length === METADATA_BLOCK_BYTES, `metadata block of ${block.length} bytes`);
  block.writeUInt32LE(type, 4);
  writeU64(block, 8, blockIndex);
  block.writeUInt32LE(checksumOf(block, type), 0);
}

/** Verifies type, self-index and checksum of a block just read from `blockIndex`. */
export function verifyBlock(block: Buffer, expectedType: BlockType, blockIndex: number): void {
  const type = block.readUInt32LE(4);
  if (type !== expectedType) {
    if (block.every((byte) => byte === 0)) {
      throw new CorruptBlockError(blockIndex, "wrong-type", `expected a ${blockTypeName(expectedType)} block, found zeros`);
    }
    throw new CorruptBlockError(
      blockIndex,
      "wrong-type",
      `expected a ${blockTypeName(expectedType)} block, found type ${blockTypeName(type)}`,
    );
  }
  const storedIndex = readU64(block, 8);
  if (storedIndex !== blockIndex) {
    throw new CorruptBlockError(blockIndex, "wrong-block-number", `block says it is block ${storedIndex} (misdirected write?)`);
  }
  const expected = checksumOf(block, expectedType);
  const stored = block.readUInt32LE(0);
  if (stored !== expected) {
    throw new CorruptBlockError(
      blockIndex,
      "checksum",
      `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${expected.toString(16)})`,
    );
  }
}
