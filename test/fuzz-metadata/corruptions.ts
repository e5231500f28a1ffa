// Seeded damage to a metadata file. Two families:
//
// - detectable: what a disk or a stray writer does (bit flips, zeroed, swapped, duplicated
//   and garbage blocks, truncation). Every block identifies itself and is checksummed, so
//   a reader may fail on these but must never return anything but the original bytes.
// - undetectable: blocks that verify yet say the wrong thing (an edited block re-sealed
//   with a valid checksum, as a bug in the engine would write it; an older version of a
//   block, as a lost write leaves it). No checksum can tell, so a reader may be misled,
//   but it must still fail only with typed errors, never an assertion, and never hang.

import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import { BLOCK_HEADER, BlockType, METADATA_BLOCK_BYTES, sealBlock } from "../../src/pdata/block-format.js";
import { NODE_HEADER, NodeKind, nodeValuesOffset } from "../../src/pdata/btree/node.js";
import { INDEX_ENTRIES, INDEX_LAYOUT } from "../../src/pdata/space-map-format.js";
import { SPACE_MAP_ROOT_LAYOUT, SUPERBLOCK_LAYOUT } from "../../src/thin/superblock.js";
import type { SeededRandom } from "../support/random.js";
import type { FuzzPool } from "./fuzz-pools.js";

export type CorruptionFamily = "detectable" | "undetectable";

export interface AppliedCorruption {
  family: CorruptionFamily;
  /** Says exactly what was done, so a failure can be understood without replaying it. */
  description: string;
}

type Corruption = (file: MemoryStorageFile, pool: FuzzPool, random: SeededRandom) => Promise<string>;

const BLOCK = METADATA_BLOCK_BYTES;

async function readBlock(file: MemoryStorageFile, blockIndex: number): Promise<Buffer> {
  const block = Buffer.alloc(BLOCK);
  await file.read(block, blockIndex * BLOCK);
  return block;
}

async function writeBlock(file: MemoryStorageFile, blockIndex: number, block: Buffer): Promise<void> {
  await file.write(block, blockIndex * BLOCK);
}

/** Mostly blocks in use (where damage matters), sometimes any block of the file. */
function pickBlock(pool: FuzzPool, random: SeededRandom, blockCount: number): number {
  return random.below(8) === 0 ? random.below(blockCount) : random.pick(pool.usedBlocks);
}

async function blockCountOf(file: MemoryStorageFile): Promise<number> {
  return Math.ceil((await file.byteLength()) / BLOCK);
}

const bitFlips: Corruption = async (file, pool, random) => {
  const blockIndex = pickBlock(pool, random, await blockCountOf(file));
  const block = await readBlock(file, blockIndex);
  const flips: string[] = [];
  const flipCount = 1 + random.below(8);
  // Headers hold the fields every decoder trusts first: aim there often.
  const span = random.below(2) === 0 ? 64 : BLOCK;
  for (let i = 0; i < flipCount; i++) {
    const offset = random.below(span);
    const bit = random.below(8);
    block[offset] = block[offset]! ^ (1 << bit);
    flips.push(`${offset}.${bit}`);
  }
  await writeBlock(file, blockIndex, block);
  return `flipped bits ${flips.join(" ")} of block ${blockIndex}`;
};

const zeroBlock: Corruption = async (file, pool, random) => {
  const blockIndex = pickBlock(pool, random, await blockCountOf(file));
  await writeBlock(file, blockIndex, Buffer.alloc(BLOCK));
  return `zeroed block ${blockIndex}`;
};

const swapBlocks: Corruption = async (file, pool, random) => {
  const blockCount = await blockCountOf(file);
  const a = pickBlock(pool, random, blockCount);
  const b = pickBlock(pool, random, blockCount);
  const [blockA, blockB] = [await readBlock(file, a), await readBlock(file, b)];
  await writeBlock(file, a, blockB);
  await writeBlock(file, b, blockA);
  return `swapped blocks ${a} and ${b}`;
};

const duplicateBlock: Corruption = async (file, pool, random) => {
  const blockCount = await blockCountOf(file);
  const from = pickBlock(pool, random, blockCount);
  const to = pickBlock(pool, random, blockCount);
  await writeBlock(file, to, await readBlock(file, from));
  return `copied block ${from} over block ${to}`;
};

const garbageBlock: Corruption = async (file, pool, random) => {
  const blockIndex = pickBlock(pool, random, await blockCountOf(file));
  await writeBlock(file, blockIndex, random.bytes(BLOCK));
  return `filled block ${blockIndex} with random bytes`;
};

const truncate: Corruption = async (file, _pool, random) => {
  const byteLength = await file.byteLength();
  const to = random.below(2) === 0 ? random.below(byteLength) : random.below(Math.ceil(byteLength / BLOCK)) * BLOCK;
  await file.truncate(to);
  return `truncated to ${to} bytes (from ${byteLength})`;
};

/** Edits a block and re-seals it with its own type and index, so it verifies. */
const resealedEdit: Corruption = async (file, pool, random) => {
  const blockIndex = random.pick(pool.usedBlocks);
  const block = await readBlock(file, blockIndex);
  const type = block.readUInt32LE(4);
  if (!Object.values(BlockType).includes(type)) return `left block ${blockIndex} alone (no known type to re-seal)`;
  const edits: string[] = [];
  const editCount = 1 + random.below(4);
  for (let i = 0; i < editCount; i++) {
    // Past the 16-byte header (re-sealing rewrites it), mostly in the fields after it.
    const offset = 16 + (random.below(2) === 0 ? random.below(48) : random.below(BLOCK - 16));
    const value = random.below(4) === 0 ? 0xff : random.below(256);
    block[offset] = value;
    edits.push(`${offset}=${value}`);
  }
  sealBlock(block, type as BlockType, blockIndex);
  await writeBlock(file, blockIndex, block);
  return `set bytes ${edits.join(" ")} of block ${blockIndex} (${BlockType[type]}) and re-sealed it`;
};

/** Where a block of each type keeps block pointers: the fields a cross-link corrupts. */
function pointerOffsets(block: Buffer): number[] {
  switch (block.readUInt32LE(BLOCK_HEADER.blockType.offset)) {
    case BlockType.Superblock: {
      // The volume table, the name index, the space maps' first index blocks.
      const { volumeTableRoot, nameIndexRoot, dataSpaceMap, metadataSpaceMap } = SUPERBLOCK_LAYOUT;
      const indexHead = SPACE_MAP_ROOT_LAYOUT.indexHead.offset;
      return [volumeTableRoot.offset, nameIndexRoot.offset, dataSpaceMap.offset + indexHead, metadataSpaceMap.offset + indexHead];
    }
    case BlockType.BTreeNode: {
      const kind = block.readUInt32LE(NODE_HEADER.kind.offset);
      const count = block.readUInt32LE(NODE_HEADER.count.offset);
      const maxEntries = block.readUInt32LE(NODE_HEADER.maxEntries.offset);
      const values = nodeValuesOffset(maxEntries);
      return kind === NodeKind.Internal ? Array.from({ length: Math.min(count, maxEntries) }, (_, i) => values + 8 * i) : [];
    }
    case BlockType.SpaceMapIndex: {
      const entryCount = block.readUInt32LE(INDEX_LAYOUT.entryCount.offset);
      return Array.from({ length: Math.min(entryCount, INDEX_ENTRIES) }, (_, i) => INDEX_LAYOUT.bitmapBlocks.offset + 8 * i);
    }
    default:
      return [];
  }
}

/** Points a pointer at another block in use and re-seals: cross-links, loops, wrong types. */
const redirectedPointer: Corruption = async (file, pool, random) => {
  for (let attempt = 0; attempt < 16; attempt++) {
    const blockIndex = random.pick(pool.usedBlocks);
    const block = await readBlock(file, blockIndex);
    const offsets = pointerOffsets(block);
    if (offsets.length === 0) continue;
    const offset = random.pick(offsets);
    const target = random.pick(pool.usedBlocks);
    block.writeUInt32LE(target, offset);
    block.writeUInt32LE(0, offset + 4);
    sealBlock(block, block.readUInt32LE(4) as BlockType, blockIndex);
    await writeBlock(file, blockIndex, block);
    return `pointed the pointer at byte ${offset} of block ${blockIndex} (${BlockType[block.readUInt32LE(4)]}) at block ${target} and re-sealed it`;
  }
  return "found no pointer to redirect";
};

/** Puts back the version of a block an earlier commit left, as a lost write would. */
const staleBlock: Corruption = async (file, pool, random) => {
  const older = new MemoryStorageFile("older", random.pick(pool.history).clone());
  const blockCount = await blockCountOf(file);
  for (let attempt = 0; attempt < 16; attempt++) {
    const blockIndex = random.below(blockCount);
    const [current, stale] = [await readBlock(file, blockIndex), await readBlock(older, blockIndex)];
    if (current.equals(stale) || stale.every((byte) => byte === 0)) continue;
    await writeBlock(file, blockIndex, stale);
    return `put back an older version of block ${blockIndex}`;
  }
  return "found no block with an older version to put back";
};

const DETECTABLE: Corruption[] = [bitFlips, bitFlips, zeroBlock, swapBlocks, duplicateBlock, garbageBlock, truncate];
const UNDETECTABLE: Corruption[] = [resealedEdit, redirectedPointer, redirectedPointer, staleBlock];

/** One to three corruptions of one family; undetectable ones in a quarter of the cases. */
export async function corrupt(file: MemoryStorageFile, pool: FuzzPool, random: SeededRandom): Promise<AppliedCorruption> {
  const family: CorruptionFamily = random.below(4) === 0 ? "undetectable" : "detectable";
  const kinds = family === "detectable" ? DETECTABLE : UNDETECTABLE;
  const descriptions: string[] = [];
  const count = 1 + random.below(random.below(3) === 0 ? 3 : 1);
  for (let i = 0; i < count; i++) descriptions.push(await random.pick(kinds)(file, pool, random));
  return { family, description: descriptions.join("; ") };
}
