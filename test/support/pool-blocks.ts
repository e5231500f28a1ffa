// Where a pool's structures live in its metadata file, read from the file alone, so a
// test can damage exactly the block it means: one of a space map's blocks, or one leaf of
// a volume's mapping tree with the virtual blocks it holds.

import { open } from "node:fs/promises";
import { BlockType, METADATA_BLOCK_BYTES, sealBlock, verifyBlock } from "../../src/pdata/block-format.js";
import { NodeView } from "../../src/pdata/btree/node.js";
import { loadSpaceMap, type SpaceMapLayout } from "../../src/pdata/space-map-store.js";
import { MAPPING_VALUE_BYTES } from "../../src/thin/mapping-value.js";
import { SUPERBLOCK_SLOTS, decodeSuperblock, type Superblock } from "../../src/thin/superblock.js";
import { VOLUME_RECORD_BYTES, decodeVolumeRecord } from "../../src/thin/volume-record.js";

/** A byte well past the block header, covered by the checksum. */
const FLIPPED_BYTE_IN_BLOCK = 100;

export async function readMetadataBlock(metaPath: string, blockIndex: number): Promise<Buffer> {
  const handle = await open(metaPath, "r");
  try {
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await handle.read(block, 0, METADATA_BLOCK_BYTES, blockIndex * METADATA_BLOCK_BYTES);
    return block;
  } finally {
    await handle.close();
  }
}

/** Flips one byte inside the block, so it fails its checksum. */
export async function corruptMetadataBlock(metaPath: string, blockIndex: number): Promise<void> {
  const handle = await open(metaPath, "r+");
  try {
    const byte = Buffer.alloc(1);
    const position = blockIndex * METADATA_BLOCK_BYTES + FLIPPED_BYTE_IN_BLOCK;
    await handle.read(byte, 0, 1, position);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, position);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function newestSuperblock(metaPath: string): Promise<Superblock> {
  const copies: Superblock[] = [];
  for (const slot of SUPERBLOCK_SLOTS) copies.push(decodeSuperblock(await readMetadataBlock(metaPath, slot), slot, metaPath));
  return copies.sort((a, b) => b.transactionId - a.transactionId)[0]!;
}

async function verifiedBlock(metaPath: string, blockIndex: number, type: BlockType): Promise<Buffer> {
  const block = await readMetadataBlock(metaPath, blockIndex);
  verifyBlock(block, type, blockIndex);
  return block;
}

/** Where the data or metadata space map of the last commit lies. */
export async function spaceMapLayout(metaPath: string, which: "data" | "metadata"): Promise<SpaceMapLayout> {
  const superblock = await newestSuperblock(metaPath);
  const root = which === "data" ? superblock.dataSpaceMap : superblock.metadataSpaceMap;
  const { layout } = await loadSpaceMap(root, (blockIndex, type) => verifiedBlock(metaPath, blockIndex, type));
  return layout;
}

export interface MappingLeaf {
  blockIndex: number;
  /** Virtual blocks of the first and last mapping the leaf holds. */
  firstKey: number;
  lastKey: number;
}

/** The leaves of a volume's mapping tree, in key order (the tree must be two levels deep). */
export async function mappingLeaves(metaPath: string, volumeName: string): Promise<MappingLeaf[]> {
  const superblock = await newestSuperblock(metaPath);
  const mappingRoot = await findMappingRoot(metaPath, superblock.volumeTableRoot, volumeName);
  const root = NodeView.open(await verifiedBlock(metaPath, mappingRoot, BlockType.BTreeNode), mappingRoot, MAPPING_VALUE_BYTES);
  if (root.isLeaf) throw new Error(`the mapping tree of '${volumeName}' is a single leaf: write more blocks`);
  const leaves: MappingLeaf[] = [];
  for (let i = 0; i < root.count; i++) {
    const child = root.childAt(i);
    const leaf = NodeView.open(await verifiedBlock(metaPath, child, BlockType.BTreeNode), child, MAPPING_VALUE_BYTES);
    if (!leaf.isLeaf) throw new Error(`the mapping tree of '${volumeName}' is deeper than two levels`);
    leaves.push({ blockIndex: child, firstKey: leaf.keyAt(0), lastKey: leaf.keyAt(leaf.count - 1) });
  }
  return leaves;
}

/** The volume table of a small pool is one leaf. */
async function findMappingRoot(metaPath: string, volumeTableRoot: number, volumeName: string): Promise<number> {
  const node = NodeView.open(await verifiedBlock(metaPath, volumeTableRoot, BlockType.BTreeNode), volumeTableRoot, VOLUME_RECORD_BYTES);
  if (!node.isLeaf) throw new Error("the volume table has more than one level");
  for (let i = 0; i < node.count; i++) {
    const record = decodeVolumeRecord(node.valueAt(i), volumeTableRoot);
    if (record.name === volumeName) return record.mappingRoot;
  }
  throw new Error(`no volume '${volumeName}' in the volume table`);
}

/** The root block of a volume's mapping tree in the last commit. */
export async function mappingRootOf(metaPath: string, volumeName: string): Promise<number> {
  return findMappingRoot(metaPath, (await newestSuperblock(metaPath)).volumeTableRoot, volumeName);
}

/** Rewrites a metadata block with `change` applied and its checksum made valid again. */
export async function rewriteMetadataBlock(
  metaPath: string,
  blockIndex: number,
  type: BlockType,
  change: (block: Buffer) => void,
): Promise<void> {
  const block = await readMetadataBlock(metaPath, blockIndex);
  change(block);
  sealBlock(block, type, blockIndex);
  const handle = await open(metaPath, "r+");
  try {
    await handle.write(block, 0, METADATA_BLOCK_BYTES, blockIndex * METADATA_BLOCK_BYTES);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
