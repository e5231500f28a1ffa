// The superblock (formats/metadata.md, "Superblock"). Two copies live in blocks 0 and 1;
// a commit writes the slot `transactionId % 2`, so the previous commit's superblock is
// never overwritten, and a torn superblock write leaves the older copy to open.

import { randomUUID } from "node:crypto";
import { CorruptBlockError, NotAPoolError } from "../errors.js";
import { assert } from "../io/assert.js";
import { readU64, writeU64 } from "../io/integers.js";
import { BlockType, METADATA_BLOCK_BYTES, sealBlock, verifyBlock } from "../pdata/block-format.js";
import type { SpaceMapRoot } from "../pdata/space-map-store.js";
import { METADATA_BLOCKS_MAX } from "../pdata/transaction-manager.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX, POOL_BYTES_MAX, SNAPSHOT_TIME_MAX } from "./limits.js";

export const SUPERBLOCK_MAGIC = "THINPOOL";
export const FORMAT_VERSION = 1;
export const SUPERBLOCK_SLOTS = [0, 1] as const;

/** Superblock flag bits (offset 28). */
export const SUPERBLOCK_FLAG_REPAIRED_COPY = 1;
const SUPERBLOCK_FLAGS_KNOWN = SUPERBLOCK_FLAG_REPAIRED_COPY;

export interface Superblock {
  uuid: string;
  /** Written by `thinp repair --output`: not the pool's metadata until put in place (data-file.md). */
  repairedCopy: boolean;
  transactionId: number;
  snapshotTime: number;
  volumeTableRoot: number;
  nameIndexRoot: number;
  nextVolumeId: number;
  createdAt: number;
  dataSpaceMap: SpaceMapRoot;
  metadataSpaceMap: SpaceMapRoot;
  /** The data file, relative to the directory of the metadata file. */
  dataPath: string;
}

export function newPoolUuid(): string {
  return randomUUID();
}

export function encodeSuperblock(superblock: Superblock, slot: number): Buffer {
  const block = Buffer.alloc(METADATA_BLOCK_BYTES);
  block.write(SUPERBLOCK_MAGIC, 16, "latin1");
  block.writeUInt32LE(FORMAT_VERSION, 24);
  block.writeUInt32LE(superblock.repairedCopy ? SUPERBLOCK_FLAG_REPAIRED_COPY : 0, 28);
  Buffer.from(superblock.uuid.replaceAll("-", ""), "hex").copy(block, 32);
  writeU64(block, 48, superblock.transactionId);
  block.writeUInt32LE(superblock.snapshotTime, 56);
  block.writeUInt32LE(METADATA_BLOCK_BYTES, 64);
  block.writeUInt32LE(DATA_BLOCK_BYTES, 68);
  writeU64(block, 80, superblock.volumeTableRoot);
  writeU64(block, 88, superblock.nameIndexRoot);
  writeU64(block, 96, superblock.nextVolumeId);
  writeU64(block, 104, superblock.createdAt);
  encodeSpaceMapRoot(block, 112, superblock.dataSpaceMap);
  encodeSpaceMapRoot(block, 144, superblock.metadataSpaceMap);
  const path = Buffer.from(superblock.dataPath, "utf8");
  assert(path.length <= DATA_PATH_BYTES_MAX, `data path of ${path.length} bytes`);
  block.writeUInt16LE(path.length, 176);
  path.copy(block, 178);
  sealBlock(block, BlockType.Superblock, slot);
  return block;
}

/** Decodes one superblock slot; `metaPath` names the file in errors. */
export function decodeSuperblock(block: Buffer, slot: number, metaPath: string): Superblock {
  if (block.toString("latin1", 16, 24) !== SUPERBLOCK_MAGIC) {
    if (block.readUInt32LE(4) === BlockType.Superblock) throw new CorruptBlockError(slot, "bad-superblock", "superblock magic is wrong", metaPath);
    throw new NotAPoolError(metaPath, `block ${slot} has no thinp superblock magic`);
  }
  verifyBlock(block, BlockType.Superblock, slot);
  const version = block.readUInt32LE(24);
  if (version !== FORMAT_VERSION) throw new NotAPoolError(metaPath, `format version ${version}; this thinp reads version ${FORMAT_VERSION}`);
  const metadataBlockBytes = block.readUInt32LE(64);
  const dataBlockBytes = block.readUInt32LE(68);
  if (metadataBlockBytes !== METADATA_BLOCK_BYTES || dataBlockBytes !== DATA_BLOCK_BYTES) {
    throw new CorruptBlockError(slot, "bad-superblock", `block sizes ${metadataBlockBytes}/${dataBlockBytes} are not ${METADATA_BLOCK_BYTES}/${DATA_BLOCK_BYTES}`, metaPath);
  }
  const flags = block.readUInt32LE(28);
  if ((flags & ~SUPERBLOCK_FLAGS_KNOWN) !== 0) {
    throw new NotAPoolError(metaPath, `superblock flags 0x${flags.toString(16)} include some this thinp does not know; a newer thinp wrote it`);
  }
  const pathLength = block.readUInt16LE(176);
  if (pathLength > DATA_PATH_BYTES_MAX) throw new CorruptBlockError(slot, "bad-superblock", `data path length ${pathLength}`, metaPath);
  const hex = block.toString("hex", 32, 48);
  const superblock: Superblock = {
    repairedCopy: (flags & SUPERBLOCK_FLAG_REPAIRED_COPY) !== 0,
    uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
    transactionId: readU64(block, 48),
    snapshotTime: block.readUInt32LE(56),
    volumeTableRoot: readU64(block, 80),
    nameIndexRoot: readU64(block, 88),
    nextVolumeId: readU64(block, 96),
    createdAt: readU64(block, 104),
    dataSpaceMap: decodeSpaceMapRoot(block, 112),
    metadataSpaceMap: decodeSpaceMapRoot(block, 144),
    dataPath: block.toString("utf8", 178, 178 + pathLength),
  };
  const metadataBlocks = superblock.metadataSpaceMap.blockCount;
  const pointers = [superblock.volumeTableRoot, superblock.nameIndexRoot, superblock.dataSpaceMap.indexHead, superblock.metadataSpaceMap.indexHead];
  // A block that verifies can still hold values no commit writes (an engine bug, a stale
  // block): the space maps' sizes become array sizes and the snapshot time goes into every
  // new mapping, so each is held to its limit here.
  const dataBlocks = superblock.dataSpaceMap.blockCount;
  if (
    !Number.isSafeInteger(superblock.transactionId) || !Number.isSafeInteger(superblock.nextVolumeId) ||
    !Number.isSafeInteger(dataBlocks) || dataBlocks === 0 || dataBlocks > POOL_BYTES_MAX / DATA_BLOCK_BYTES ||
    !Number.isSafeInteger(metadataBlocks) || metadataBlocks > METADATA_BLOCKS_MAX ||
    superblock.snapshotTime > SNAPSHOT_TIME_MAX ||
    pointers.some((p) => !Number.isSafeInteger(p) || p < SUPERBLOCK_SLOTS.length || p >= metadataBlocks)
  ) {
    throw new CorruptBlockError(slot, "bad-superblock", "superblock fields are out of range", metaPath);
  }
  return superblock;
}

function encodeSpaceMapRoot(block: Buffer, at: number, root: SpaceMapRoot): void {
  writeU64(block, at, root.blockCount);
  writeU64(block, at + 8, root.indexHead);
  writeU64(block, at + 16, root.overflowHead);
  writeU64(block, at + 24, root.overflowCount);
}

function decodeSpaceMapRoot(block: Buffer, at: number): SpaceMapRoot {
  return {
    blockCount: readU64(block, at),
    indexHead: readU64(block, at + 8),
    overflowHead: readU64(block, at + 16),
    overflowCount: readU64(block, at + 24),
  };
}
