// Every metadata block starts with the same 16-byte header so that it identifies itself:
// the CRC32C of the rest of the block xor the salt of its type, its type, and its own block
// index (BLOCK_HEADER below; formats/metadata.md, "Every block"). A block read from the
// wrong place, or of the wrong type, or with any flipped bit, fails verification and is
// reported by index.

import { crc32c } from "@node-rs/crc32";
import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { defineLayout, readUint, writeUint } from "../io/byte-layout.js";
import { METADATA_BLOCK_BYTES } from "./limits.js";

// Its home is limits.ts; the name stays here for the modules that import it from here.
export { METADATA_BLOCK_BYTES };
export const BLOCK_HEADER_BYTES = 16;

export const BLOCK_HEADER = defineLayout("block header", BLOCK_HEADER_BYTES, {
  /** Covers every byte after itself. */
  checksum: { offset: 0, bytes: 4 },
  blockType: { offset: 4, bytes: 4 },
  blockIndex: { offset: 8, bytes: 8 },
});
const CHECKSUMMED_FROM = BLOCK_HEADER.checksum.offset + BLOCK_HEADER.checksum.bytes;

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
  return (crc32c(block.subarray(CHECKSUMMED_FROM)) ^ SALTS[type]) >>> 0;
}

/** Stamps the header and checksum; call last, after every other byte is final. */
export function sealBlock(block: Buffer, type: BlockType, blockIndex: number): void {
  assert(block.length === METADATA_BLOCK_BYTES, `metadata block of ${block.length} bytes`);
  writeUint(block, BLOCK_HEADER.blockType, type);
  writeUint(block, BLOCK_HEADER.blockIndex, blockIndex);
  writeUint(block, BLOCK_HEADER.checksum, checksumOf(block, type));
}

/** Verifies type, self-index and checksum of a block just read from `blockIndex`. */
export function verifyBlock(block: Buffer, expectedType: BlockType, blockIndex: number): void {
  const type = readUint(block, BLOCK_HEADER.blockType);
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
  const storedIndex = readUint(block, BLOCK_HEADER.blockIndex);
  if (storedIndex !== blockIndex) {
    throw new CorruptBlockError(blockIndex, "wrong-block-number", `block says it is block ${storedIndex} (misdirected write?)`);
  }
  const expected = checksumOf(block, expectedType);
  const stored = readUint(block, BLOCK_HEADER.checksum);
  if (stored !== expected) {
    throw new CorruptBlockError(
      blockIndex,
      "checksum",
      `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${expected.toString(16)})`,
    );
  }
}
