// The parts of Linux dm-thin's binary metadata that restore reads (formats/dm-thin-metadata.md):
// the superblock, B-tree nodes, and the two value types their leaves hold. Layouts, the
// kernel's checksum, and decoders that take one 4096-byte block and return typed fields or
// throw a CorruptBlockError naming that block. The tree walk is in dm-metadata-source.ts.

import { crc32c } from "@node-rs/crc32";
import { CorruptBlockError } from "../../errors.js";
import { defineLayout, readUint, type Field } from "../../io/byte-layout.js";
import { readU64 } from "../../io/integers.js";
import { DM_THIN_DEV_ID_MAX } from "../limits.js";

/** dm-thin's metadata block: THIN_METADATA_BLOCK_SIZE, always 8 sectors. */
export const DM_METADATA_BLOCK_BYTES = 4096;
export const DM_METADATA_BLOCK_SECTORS = DM_METADATA_BLOCK_BYTES / 512;
export const DM_SUPERBLOCK_INDEX = 0;
/** THIN_SUPERBLOCK_MAGIC: the pool's creation date, 27 Feb 2010. */
export const DM_SUPERBLOCK_MAGIC = 27022010;
export const DM_SUPERBLOCK_VERSIONS: readonly number[] = [1, 2];

/** The salts dm-persistent-data xors into each block type's checksum, so a block of one type never verifies as another. */
export const DM_CHECKSUM_SALTS = {
  superblock: 160774, // SUPERBLOCK_CSUM_XOR, dm-thin-metadata.c
  "B-tree node": 121107, // BTREE_CSUM_XOR, dm-btree-internal.h
  "space-map bitmap": 240779, // BITMAP_CSUM_XOR, dm-space-map-common.h
  "space-map index": 160478, // INDEX_CSUM_XOR, dm-space-map-common.h
} as const;
export type DmBlockType = keyof typeof DM_CHECKSUM_SALTS;

/** struct thin_disk_superblock, the fields restore reads or checks; the rest of the block is zeros. */
export const DM_SUPERBLOCK_LAYOUT = defineLayout("dm-thin superblock", DM_METADATA_BLOCK_BYTES, {
  checksum: { offset: 0, bytes: 4 },
  flags: { offset: 4, bytes: 4 },
  blockIndex: { offset: 8, bytes: 8 },
  uuid: { offset: 16, bytes: 16 },
  magic: { offset: 32, bytes: 8 },
  version: { offset: 40, bytes: 4 },
  time: { offset: 44, bytes: 4 },
  transactionId: { offset: 48, bytes: 8 },
  heldRoot: { offset: 56, bytes: 8 },
  dataSpaceMapRoot: { offset: 64, bytes: 128 },
  metadataSpaceMapRoot: { offset: 192, bytes: 128 },
  mappingRoot: { offset: 320, bytes: 8 },
  detailsRoot: { offset: 328, bytes: 8 },
  dataBlockSectors: { offset: 336, bytes: 4 },
  metadataBlockSectors: { offset: 340, bytes: 4 },
  metadataBlockCount: { offset: 344, bytes: 8 },
  compatFlags: { offset: 352, bytes: 4 },
  compatRoFlags: { offset: 356, bytes: 4 },
  incompatFlags: { offset: 360, bytes: 4 },
});

/** struct disk_sm_root, the start of each 128-byte space-map root: only nrBlocks is read. */
export const DM_SPACE_MAP_ROOT_LAYOUT = defineLayout("dm-thin space-map root", 128, {
  blockCount: { offset: 0, bytes: 8 },
  allocatedCount: { offset: 8, bytes: 8 },
  bitmapRoot: { offset: 16, bytes: 8 },
  refCountRoot: { offset: 24, bytes: 8 },
});

/** struct node_header (dm-btree-internal.h); keys follow at 32, then the values. */
export const DM_NODE_HEADER_BYTES = 32;
export const DM_NODE_HEADER = defineLayout("dm-thin node header", DM_NODE_HEADER_BYTES, {
  checksum: { offset: 0, bytes: 4 },
  flags: { offset: 4, bytes: 4 },
  blockIndex: { offset: 8, bytes: 8 },
  entryCount: { offset: 16, bytes: 4 },
  maxEntries: { offset: 20, bytes: 4 },
  valueBytes: { offset: 24, bytes: 4 },
  padding: { offset: 28, bytes: 4 },
});
export const DM_KEY_BYTES = 8;
const INTERNAL_NODE_FLAG = 1;
const LEAF_NODE_FLAG = 2;
/** An internal node's values, and the top-level mapping tree's leaf values, are le64 block indexes. */
export const DM_BLOCK_POINTER_BYTES = 8;

/** A mapping leaf's value: pack_block_time(), data block << 24 | time. */
export const DM_BLOCK_TIME_BYTES = 8;
export const DM_BLOCK_TIME_TIME_BITS = 24;

/** struct disk_device_details, a device-details leaf's value. */
export const DM_DEVICE_DETAILS_BYTES = 24;
export const DM_DEVICE_DETAILS_LAYOUT = defineLayout("dm-thin device details", DM_DEVICE_DETAILS_BYTES, {
  mappedBlocks: { offset: 0, bytes: 8 },
  transactionId: { offset: 8, bytes: 8 },
  creationTime: { offset: 16, bytes: 4 },
  snapshottedTime: { offset: 20, bytes: 4 },
});

/**
 * dm_bm_checksum(): the kernel's raw crc32c(~0, ...) with no final inversion, that is the
 * standard CRC32C inverted, xor the type's salt, over the block after its checksum field.
 */
function checksumOf(block: Buffer, salt: number): number {
  return (~crc32c(block.subarray(4)) ^ salt) >>> 0;
}

/** The kernel's own block validators (sb_check, node_check): checksum first, then self-location. */
export function verifyDmBlock(
  block: Buffer,
  type: DmBlockType,
  blockIndex: number,
  path?: string,
  blockIndexField: Field = DM_NODE_HEADER.blockIndex,
): void {
  const stored = block.readUInt32LE(0);
  const expected = checksumOf(block, DM_CHECKSUM_SALTS[type]);
  if (stored !== expected) {
    if (block.every((byte) => byte === 0)) {
      throw new CorruptBlockError(blockIndex, "wrong-type", `expected a dm-thin ${type}, found zeros`, path);
    }
    // A block that verifies under another type's salt is a pointer to the wrong kind of block.
    const salt = (stored ^ checksumOf(block, 0)) >>> 0;
    const other = (Object.keys(DM_CHECKSUM_SALTS) as DmBlockType[]).find((name) => DM_CHECKSUM_SALTS[name] === salt);
    if (other !== undefined) throw new CorruptBlockError(blockIndex, "wrong-type", `expected a dm-thin ${type}, found a ${other}`, path);
    throw new CorruptBlockError(
      blockIndex,
      "checksum",
      `dm-thin ${type} checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${expected.toString(16)})`,
      path,
    );
  }
  const storedIndex = readU64(block, blockIndexField.offset);
  if (storedIndex !== blockIndex) {
    throw new CorruptBlockError(
      blockIndex,
      "wrong-block-number",
      `dm-thin ${type} says it is block ${storedIndex} (misdirected write?)`,
      path,
    );
  }
}

export interface DmSuperblockFields {
  uuid: string;
  version: number;
  time: number;
  transactionId: number;
  /** The metadata snapshot's superblock, 0 when none is held; read by nothing here. */
  heldRoot: number;
  mappingRoot: number;
  detailsRoot: number;
  dataBlockSectors: number;
  dataBlockCount: number;
  /** Blocks of the metadata device the kernel's space map manages: every pointer is below it. */
  metadataBlockCount: number;
}

/** Decodes and checks block 0 as dm-thin's superblock_validator and __open_metadata do. */
export function decodeDmSuperblock(block: Buffer): DmSuperblockFields {
  const L = DM_SUPERBLOCK_LAYOUT;
  verifyDmBlock(block, "superblock", DM_SUPERBLOCK_INDEX, undefined, L.blockIndex);
  const bad = (reason: string): never => {
    throw new CorruptBlockError(DM_SUPERBLOCK_INDEX, "bad-superblock", reason);
  };
  const magic = readUint(block, L.magic);
  if (magic !== DM_SUPERBLOCK_MAGIC) bad(`magic is ${magic}, not dm-thin's ${DM_SUPERBLOCK_MAGIC}`);
  const version = readUint(block, L.version);
  if (!DM_SUPERBLOCK_VERSIONS.includes(version)) bad(`version ${version} is not one this reader knows (1 or 2)`);
  const incompat = readUint(block, L.incompatFlags);
  if (incompat !== 0) bad(`incompatible feature flags 0x${incompat.toString(16)} are set; none is known`);
  const metadataBlockSectors = readUint(block, L.metadataBlockSectors);
  if (metadataBlockSectors !== DM_METADATA_BLOCK_SECTORS) {
    bad(`metadata block size is ${metadataBlockSectors} sectors, not ${DM_METADATA_BLOCK_SECTORS}`);
  }
  const count = (field: Field, what: string): number => {
    const value = readU64(block, field.offset);
    return Number.isNaN(value) ? bad(`${what} is beyond 2^53`) : value;
  };
  const dataRoot = L.dataSpaceMapRoot.offset;
  const metadataRoot = L.metadataSpaceMapRoot.offset;
  const fields: DmSuperblockFields = {
    uuid: decodeUuid(block.subarray(L.uuid.offset, L.uuid.offset + L.uuid.bytes)),
    version,
    time: readUint(block, L.time),
    transactionId: count(L.transactionId, "the transaction id"),
    heldRoot: count(L.heldRoot, "the held root"),
    mappingRoot: count(L.mappingRoot, "the mapping tree's root"),
    detailsRoot: count(L.detailsRoot, "the device-details tree's root"),
    dataBlockSectors: readUint(block, L.dataBlockSectors),
    dataBlockCount: count({ offset: dataRoot + DM_SPACE_MAP_ROOT_LAYOUT.blockCount.offset, bytes: 8 }, "the data block count"),
    metadataBlockCount: count({ offset: metadataRoot + DM_SPACE_MAP_ROOT_LAYOUT.blockCount.offset, bytes: 8 }, "the metadata block count"),
  };
  if (fields.dataBlockSectors === 0) bad("the data block size is 0 sectors");
  for (const [what, root] of [
    ["mapping tree", fields.mappingRoot],
    ["device-details tree", fields.detailsRoot],
  ] as const) {
    if (root === DM_SUPERBLOCK_INDEX || root >= fields.metadataBlockCount) {
      throw new CorruptBlockError(
        DM_SUPERBLOCK_INDEX,
        "pointer-out-of-range",
        `the ${what}'s root ${root} is not a node of the ${fields.metadataBlockCount}-block metadata device`,
      );
    }
  }
  return fields;
}

/** The kernel never sets the uuid; thin_restore stores the XML's text there, NUL-padded. */
function decodeUuid(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  const text = bytes.subarray(0, end < 0 ? bytes.length : end);
  if (text.every((byte) => byte >= 0x20 && byte < 0x7f)) return text.toString("latin1");
  return bytes.toString("hex");
}

/** A verified B-tree node, read in place from its block. */
export class DmNode {
  private constructor(
    readonly blockIndex: number,
    private readonly block: Buffer,
    readonly isLeaf: boolean,
    readonly entryCount: number,
    private readonly maxEntries: number,
    private readonly valueBytes: number,
  ) {}

  /**
   * node_check(), then what the walk needs: a leaf's values of the tree's size, an internal
   * node's of 8 bytes, keys strictly increasing. Emptiness and key ranges are the walk's.
   */
  static decode(block: Buffer, blockIndex: number, leafValueBytes: number, path: string): DmNode {
    const H = DM_NODE_HEADER;
    verifyDmBlock(block, "B-tree node", blockIndex, path);
    const bad = (reason: string): never => {
      throw new CorruptBlockError(blockIndex, "bad-node", reason, path);
    };
    const flags = readUint(block, H.flags);
    const isInternal = (flags & INTERNAL_NODE_FLAG) !== 0;
    const isLeaf = (flags & LEAF_NODE_FLAG) !== 0;
    if (isInternal === isLeaf) bad(`node flags 0x${flags.toString(16)} say neither internal nor leaf, or both`);
    const entryCount = readUint(block, H.entryCount);
    const maxEntries = readUint(block, H.maxEntries);
    const valueBytes = readUint(block, H.valueBytes);
    const expectedValueBytes = isLeaf ? leafValueBytes : DM_BLOCK_POINTER_BYTES;
    if (valueBytes !== expectedValueBytes) {
      bad(`${isLeaf ? "leaf" : "internal node"} has ${valueBytes}-byte values; this tree's are ${expectedValueBytes} bytes`);
    }
    if (maxEntries === 0 || DM_NODE_HEADER_BYTES + (DM_KEY_BYTES + valueBytes) * maxEntries > DM_METADATA_BLOCK_BYTES) {
      bad(`max entries ${maxEntries} of ${valueBytes}-byte values do not fit a block`);
    }
    if (entryCount > maxEntries) bad(`${entryCount} entries exceed the node's max of ${maxEntries}`);
    const node = new DmNode(blockIndex, block, isLeaf, entryCount, maxEntries, valueBytes);
    let previous = -1;
    for (let i = 0; i < entryCount; i++) {
      const key = node.key(i);
      if (!(key > previous)) bad(`key ${i} (${key}) does not follow key ${i - 1} (${previous})`);
      previous = key;
    }
    return node;
  }

  /** Keys past 2^53 read as NaN, which every comparison the walk makes rejects. */
  key(entryIndex: number): number {
    return readU64(this.block, DM_NODE_HEADER_BYTES + DM_KEY_BYTES * entryIndex);
  }

  /** The bytes of value `entryIndex`, without copying. */
  value(entryIndex: number): Buffer {
    const start = DM_NODE_HEADER_BYTES + DM_KEY_BYTES * this.maxEntries + this.valueBytes * entryIndex;
    return this.block.subarray(start, start + this.valueBytes);
  }

  /** A child pointer or a subtree root: a le64 block index. */
  pointer(entryIndex: number): number {
    return readU64(this.value(entryIndex), 0);
  }
}

export interface DmBlockTime {
  dataBlock: number;
  time: number;
}

/** unpack_block_time(): the data block in the high 40 bits, the time in the low 24. */
export function decodeBlockTime(value: Buffer): DmBlockTime {
  const low = value.readUInt32LE(0);
  const high = value.readUInt32LE(4);
  const lowBlockBits = 32 - DM_BLOCK_TIME_TIME_BITS;
  return {
    dataBlock: high * 2 ** lowBlockBits + (low >>> DM_BLOCK_TIME_TIME_BITS),
    time: low & (2 ** DM_BLOCK_TIME_TIME_BITS - 1),
  };
}

export interface DmDeviceDetails {
  mappedBlocks: number;
  transactionId: number;
  creationTime: number;
  snapshottedTime: number;
}

export function decodeDeviceDetails(value: Buffer, devId: number, leafIndex: number): DmDeviceDetails {
  const D = DM_DEVICE_DETAILS_LAYOUT;
  const count = (field: Field, what: string): number => {
    const decoded = readU64(value, field.offset);
    if (Number.isNaN(decoded)) throw new CorruptBlockError(leafIndex, "bad-record", `device ${devId}'s ${what} is beyond 2^53`);
    return decoded;
  };
  return {
    mappedBlocks: count(D.mappedBlocks, "mapped block count"),
    transactionId: count(D.transactionId, "transaction id"),
    creationTime: readUint(value, D.creationTime),
    snapshottedTime: readUint(value, D.snapshottedTime),
  };
}

/** dm-thin's device ids are 24 bits (MAX_DEV_ID); a larger key cannot be one. */
export function isDmDevId(key: number): boolean {
  return Number.isSafeInteger(key) && key >= 0 && key <= DM_THIN_DEV_ID_MAX;
}
