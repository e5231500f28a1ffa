// The superblock (formats/metadata.md, "Superblock"). Two copies live in blocks 0 and 1;
// a commit writes the slot `transactionId % 2`, so the previous commit's superblock is
// never overwritten, and a torn superblock write leaves the older copy to open.

import { randomUUID } from "node:crypto";
import { CorruptBlockError, NotAPoolError } from "../errors.js";
import { assert } from "../io/assert.js";
import { defineLayout, fieldBytes, readUint, writeUint } from "../io/byte-layout.js";
import { uuidBytes, uuidText } from "../io/uuid-bytes.js";
import { BLOCK_HEADER, BLOCK_HEADER_BYTES, BlockType, METADATA_BLOCK_BYTES, sealBlock, verifyBlock } from "../pdata/block-format.js";
import { METADATA_BLOCKS_MAX } from "../pdata/limits.js";
import type { SpaceMapRoot } from "../pdata/space-map-store.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX, POOL_BLOCKS_MAX, SNAPSHOT_TIME_MAX } from "./limits.js";

export const SUPERBLOCK_MAGIC = "THINPOOL";
/** Version 2 added volume identities (formats/metadata.md, "Format versions"). */
export const FORMAT_VERSION = 2;
/** Versions this thinp opens; an older one is written as FORMAT_VERSION by its first commit. */
export const FORMAT_VERSIONS_READ: readonly number[] = [1, 2];
export const SUPERBLOCK_SLOTS = [0, 1] as const;

/** Superblock flag bits (the `flags` field). */
export const SUPERBLOCK_FLAG_REPAIRED_COPY = 1;
const SUPERBLOCK_FLAGS_KNOWN = SUPERBLOCK_FLAG_REPAIRED_COPY;

const SPACE_MAP_ROOT_BYTES = 32;
/** What the superblock records about one space map. */
export const SPACE_MAP_ROOT_LAYOUT = defineLayout("space-map root", SPACE_MAP_ROOT_BYTES, {
  blockCount: { offset: 0, bytes: 8 },
  indexHead: { offset: 8, bytes: 8 },
  /** 0 = none. */
  overflowHead: { offset: 16, bytes: 8 },
  overflowCount: { offset: 24, bytes: 8 },
});

export const SUPERBLOCK_LAYOUT = defineLayout("superblock", METADATA_BLOCK_BYTES, {
  blockHeader: { offset: 0, bytes: BLOCK_HEADER_BYTES },
  magic: { offset: 16, bytes: 8 },
  version: { offset: 24, bytes: 4 },
  flags: { offset: 28, bytes: 4 },
  uuid: { offset: 32, bytes: 16 },
  transactionId: { offset: 48, bytes: 8 },
  snapshotTime: { offset: 56, bytes: 4 },
  reserved60: { offset: 60, bytes: 4 },
  metadataBlockBytes: { offset: 64, bytes: 4 },
  dataBlockBytes: { offset: 68, bytes: 4 },
  reserved72: { offset: 72, bytes: 8 },
  volumeTableRoot: { offset: 80, bytes: 8 },
  nameIndexRoot: { offset: 88, bytes: 8 },
  nextVolumeId: { offset: 96, bytes: 8 },
  createdAt: { offset: 104, bytes: 8 },
  dataSpaceMap: { offset: 112, bytes: SPACE_MAP_ROOT_BYTES },
  metadataSpaceMap: { offset: 144, bytes: SPACE_MAP_ROOT_BYTES },
  dataPathLength: { offset: 176, bytes: 2 },
  /** Variable: `dataPathLength` bytes of UTF-8, at most DATA_PATH_BYTES_MAX. */
  dataPath: { offset: 178, bytes: DATA_PATH_BYTES_MAX },
});
const F = SUPERBLOCK_LAYOUT;
assert(Buffer.byteLength(SUPERBLOCK_MAGIC, "latin1") === F.magic.bytes, "magic fills its field");
assert(DATA_PATH_BYTES_MAX < 2 ** (8 * F.dataPathLength.bytes), "data path length fits its field");
assert(SNAPSHOT_TIME_MAX < 2 ** (8 * F.snapshotTime.bytes), "snapshot time fits its field");

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
  block.write(SUPERBLOCK_MAGIC, F.magic.offset, "latin1");
  writeUint(block, F.version, FORMAT_VERSION);
  writeUint(block, F.flags, superblock.repairedCopy ? SUPERBLOCK_FLAG_REPAIRED_COPY : 0);
  uuidBytes(superblock.uuid).copy(block, F.uuid.offset);
  writeUint(block, F.transactionId, superblock.transactionId);
  writeUint(block, F.snapshotTime, superblock.snapshotTime);
  writeUint(block, F.metadataBlockBytes, METADATA_BLOCK_BYTES);
  writeUint(block, F.dataBlockBytes, DATA_BLOCK_BYTES);
  writeUint(block, F.volumeTableRoot, superblock.volumeTableRoot);
  writeUint(block, F.nameIndexRoot, superblock.nameIndexRoot);
  writeUint(block, F.nextVolumeId, superblock.nextVolumeId);
  writeUint(block, F.createdAt, superblock.createdAt);
  encodeSpaceMapRoot(fieldBytes(block, F.dataSpaceMap), superblock.dataSpaceMap);
  encodeSpaceMapRoot(fieldBytes(block, F.metadataSpaceMap), superblock.metadataSpaceMap);
  const path = Buffer.from(superblock.dataPath, "utf8");
  assert(path.length <= DATA_PATH_BYTES_MAX, `data path of ${path.length} bytes`);
  writeUint(block, F.dataPathLength, path.length);
  path.copy(block, F.dataPath.offset);
  sealBlock(block, BlockType.Superblock, slot);
  return block;
}

/** Decodes one superblock slot; `metaPath` names the file in errors. */
export function decodeSuperblock(block: Buffer, slot: number, metaPath: string): Superblock {
  if (fieldBytes(block, F.magic).toString("latin1") !== SUPERBLOCK_MAGIC) {
    if (readUint(block, BLOCK_HEADER.blockType) === BlockType.Superblock)
      throw new CorruptBlockError(slot, "bad-superblock", "superblock magic is wrong", metaPath);
    throw new NotAPoolError(metaPath, `block ${slot} has no thinp superblock magic`);
  }
  verifyBlock(block, BlockType.Superblock, slot);
  const version = readUint(block, F.version);
  if (!FORMAT_VERSIONS_READ.includes(version))
    throw new NotAPoolError(metaPath, `format version ${version}; this thinp reads versions ${FORMAT_VERSIONS_READ.join(" and ")}`);
  const metadataBlockBytes = readUint(block, F.metadataBlockBytes);
  const dataBlockBytes = readUint(block, F.dataBlockBytes);
  if (metadataBlockBytes !== METADATA_BLOCK_BYTES || dataBlockBytes !== DATA_BLOCK_BYTES) {
    throw new CorruptBlockError(
      slot,
      "bad-superblock",
      `block sizes ${metadataBlockBytes}/${dataBlockBytes} are not ${METADATA_BLOCK_BYTES}/${DATA_BLOCK_BYTES}`,
      metaPath,
    );
  }
  const flags = readUint(block, F.flags);
  if ((flags & ~SUPERBLOCK_FLAGS_KNOWN) !== 0) {
    throw new NotAPoolError(
      metaPath,
      `superblock flags 0x${flags.toString(16)} include some this thinp does not know; a newer thinp wrote it`,
    );
  }
  const pathLength = readUint(block, F.dataPathLength);
  if (pathLength > DATA_PATH_BYTES_MAX) throw new CorruptBlockError(slot, "bad-superblock", `data path length ${pathLength}`, metaPath);
  const superblock: Superblock = {
    repairedCopy: (flags & SUPERBLOCK_FLAG_REPAIRED_COPY) !== 0,
    uuid: uuidText(fieldBytes(block, F.uuid)),
    transactionId: readUint(block, F.transactionId),
    snapshotTime: readUint(block, F.snapshotTime),
    volumeTableRoot: readUint(block, F.volumeTableRoot),
    nameIndexRoot: readUint(block, F.nameIndexRoot),
    nextVolumeId: readUint(block, F.nextVolumeId),
    createdAt: readUint(block, F.createdAt),
    dataSpaceMap: decodeSpaceMapRoot(fieldBytes(block, F.dataSpaceMap)),
    metadataSpaceMap: decodeSpaceMapRoot(fieldBytes(block, F.metadataSpaceMap)),
    dataPath: block.toString("utf8", F.dataPath.offset, F.dataPath.offset + pathLength),
  };
  const metadataBlocks = superblock.metadataSpaceMap.blockCount;
  const pointers = [
    superblock.volumeTableRoot,
    superblock.nameIndexRoot,
    superblock.dataSpaceMap.indexHead,
    superblock.metadataSpaceMap.indexHead,
  ];
  // A block that verifies can still hold values no commit writes (an engine bug, a stale
  // block): the space maps' sizes become array sizes and the snapshot time goes into every
  // new mapping, so each is held to its limit here.
  const dataBlocks = superblock.dataSpaceMap.blockCount;
  if (
    !Number.isSafeInteger(superblock.transactionId) ||
    !Number.isSafeInteger(superblock.nextVolumeId) ||
    !Number.isSafeInteger(dataBlocks) ||
    dataBlocks === 0 ||
    dataBlocks > POOL_BLOCKS_MAX ||
    !Number.isSafeInteger(metadataBlocks) ||
    metadataBlocks > METADATA_BLOCKS_MAX ||
    superblock.snapshotTime > SNAPSHOT_TIME_MAX ||
    pointers.some((p) => !Number.isSafeInteger(p) || p < SUPERBLOCK_SLOTS.length || p >= metadataBlocks)
  ) {
    throw new CorruptBlockError(slot, "bad-superblock", "superblock fields are out of range", metaPath);
  }
  return superblock;
}

function encodeSpaceMapRoot(field: Buffer, root: SpaceMapRoot): void {
  writeUint(field, SPACE_MAP_ROOT_LAYOUT.blockCount, root.blockCount);
  writeUint(field, SPACE_MAP_ROOT_LAYOUT.indexHead, root.indexHead);
  writeUint(field, SPACE_MAP_ROOT_LAYOUT.overflowHead, root.overflowHead);
  writeUint(field, SPACE_MAP_ROOT_LAYOUT.overflowCount, root.overflowCount);
}

function decodeSpaceMapRoot(field: Buffer): SpaceMapRoot {
  return {
    blockCount: readUint(field, SPACE_MAP_ROOT_LAYOUT.blockCount),
    indexHead: readUint(field, SPACE_MAP_ROOT_LAYOUT.indexHead),
    overflowHead: readUint(field, SPACE_MAP_ROOT_LAYOUT.overflowHead),
    overflowCount: readUint(field, SPACE_MAP_ROOT_LAYOUT.overflowCount),
  };
}
