// Persists a RefcountTable into metadata blocks and loads it back. Both space maps are
// written incrementally: a commit writes the bitmaps whose counts changed and the index
// blocks that lead to them. The metadata space map counts the blocks it is itself written
// to; its changes are settled to a fixed point before they are serialized (see
// formats/metadata.md, "Space maps").

import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { BlockType } from "./block-format.js";
import { BITMAP_READ_BATCH_BLOCKS, SPACE_MAP_CHAIN_BLOCKS_MAX, SPACE_MAP_SIZE_ROUNDS_MAX } from "./limits.js";
import { COUNT_OVERFLOW, RefcountTable } from "./refcount-table.js";
import {
  BITMAP_ENTRIES,
  INDEX_ENTRIES,
  OVERFLOW_ENTRIES,
  decodeBitmap,
  decodeChainHeader,
  encodeBitmap,
  encodeChainHeader,
  readIndexEntry,
  readOverflowEntry,
  writeIndexEntry,
  writeOverflowEntry,
} from "./space-map-format.js";
import type { TransactionManager } from "./transaction-manager.js";

/** What the superblock records about one space map. */
export interface SpaceMapRoot {
  blockCount: number;
  indexHead: number;
  overflowHead: number;
  overflowCount: number;
}

/** Where a space map's pieces live on disk now. */
export class SpaceMapLayout {
  bitmapLocations: number[] = [];
  indexBlocks: number[] = [];
  overflowBlocks: number[] = [];
  root: SpaceMapRoot = { blockCount: 0, indexHead: 0, overflowHead: 0, overflowCount: 0 };

  allBlocks(): number[] {
    return [...this.bitmapLocations, ...this.indexBlocks, ...this.overflowBlocks];
  }
}

export type BlockReader = (blockIndex: number, type: BlockType) => Promise<Buffer>;

export async function loadSpaceMap(root: SpaceMapRoot, read: BlockReader): Promise<{ table: RefcountTable; layout: SpaceMapLayout }> {
  const layout = new SpaceMapLayout();
  layout.root = { ...root };
  const table = new RefcountTable(root.blockCount, BITMAP_ENTRIES);
  const expectedBitmaps = Math.ceil(root.blockCount / BITMAP_ENTRIES);

  const overflow = new Map<number, number>();
  for (const { block, blockIndex, entryCount } of await readChain(
    root.overflowHead,
    BlockType.SpaceMapOverflow,
    OVERFLOW_ENTRIES,
    read,
    layout.overflowBlocks,
  )) {
    for (let slot = 0; slot < entryCount; slot++) {
      const [counted, count] = readOverflowEntry(block, slot);
      if (!(counted < root.blockCount) || count < COUNT_OVERFLOW) {
        throw new CorruptBlockError(blockIndex, "bad-space-map", `overflow entry ${slot} (block ${counted}, count ${count}) is invalid`);
      }
      overflow.set(counted, count);
    }
  }
  if (overflow.size !== root.overflowCount) {
    throw new CorruptBlockError(
      root.overflowHead,
      "bad-space-map",
      `overflow list holds ${overflow.size} entries, superblock says ${root.overflowCount}`,
    );
  }

  for (const { block, blockIndex, entryCount } of await readChain(
    root.indexHead,
    BlockType.SpaceMapIndex,
    INDEX_ENTRIES,
    read,
    layout.indexBlocks,
  )) {
    for (let slot = 0; slot < entryCount; slot++) {
      const location = readIndexEntry(block, slot);
      if (!Number.isSafeInteger(location) || location === 0)
        throw new CorruptBlockError(blockIndex, "bad-space-map", `index entry ${slot} is invalid`);
      layout.bitmapLocations.push(location);
    }
  }
  if (layout.bitmapLocations.length !== expectedBitmaps) {
    throw new CorruptBlockError(
      root.indexHead,
      "bad-space-map",
      `space map index lists ${layout.bitmapLocations.length} bitmaps, ${expectedBitmaps} expected`,
    );
  }

  for (let first = 0; first < expectedBitmaps; first += BITMAP_READ_BATCH_BLOCKS) {
    const locations = layout.bitmapLocations.slice(first, first + BITMAP_READ_BATCH_BLOCKS);
    const blocks = await Promise.all(locations.map((location) => read(location, BlockType.SpaceMapBitmap)));
    locations.forEach((location, i) => {
      const chunk = first + i;
      const block = blocks[i];
      assert(block !== undefined, "one block read for each location");
      const counts = decodeBitmap(block, location, chunk);
      const expectedEntries = Math.min(BITMAP_ENTRIES, root.blockCount - chunk * BITMAP_ENTRIES);
      if (counts.length !== expectedEntries)
        throw new CorruptBlockError(location, "bad-space-map", `bitmap holds ${counts.length} entries, ${expectedEntries} expected`);
      const base = chunk * BITMAP_ENTRIES;
      let counted = base - 1;
      for (const byte of counts) {
        counted++;
        if (byte === 0) continue;
        if (byte === COUNT_OVERFLOW) {
          const count = overflow.get(counted);
          if (count === undefined)
            throw new CorruptBlockError(location, "bad-space-map", `block ${counted} marked overflowed but has no overflow entry`);
          table.load(counted, count);
        } else {
          table.load(counted, byte);
        }
      }
    });
  }
  table.takeChanges();
  return { table, layout };
}

async function readChain(
  head: number,
  type: BlockType,
  capacity: number,
  read: BlockReader,
  visited: number[],
): Promise<{ block: Buffer; blockIndex: number; entryCount: number }[]> {
  const links = [];
  for (let blockIndex = head; blockIndex !== 0;) {
    if (visited.includes(blockIndex) || links.length > SPACE_MAP_CHAIN_BLOCKS_MAX)
      throw new CorruptBlockError(blockIndex, "loop", "space map chain loops");
    const block = await read(blockIndex, type);
    const { nextBlock, entryCount } = decodeChainHeader(block, blockIndex, capacity);
    visited.push(blockIndex);
    links.push({ block, blockIndex, entryCount });
    blockIndex = nextBlock;
  }
  return links;
}

/** A fresh block for one of a space map's own pieces, in the metadata file. */
type PieceAllocator = (type: BlockType) => { blockIndex: number; block: Buffer };

/**
 * Writes what changed in the data space map. Its pieces are metadata blocks, so this moves
 * counts of the metadata space map, which the commit writes after it.
 */
export function persistDataSpaceMap(tm: TransactionManager, table: RefcountTable, layout: SpaceMapLayout): SpaceMapRoot {
  assert(table !== tm.metadataRefs, "the metadata space map is written by persistMetadataSpaceMap");
  return persistChanges(tm, table, layout, (type) => tm.newBlock(type));
}

/**
 * Writes what changed in the metadata space map, into blocks it counts itself. Called last
 * in a commit: after it, no metadata count may change until the superblock is written.
 */
export function persistMetadataSpaceMap(tm: TransactionManager, layout: SpaceMapLayout): SpaceMapRoot {
  let growths = 0;
  // The reserve is kept for this; once it is spent the file grows, which adds chunks that
  // need bitmaps of their own, and so on until the growth covers them (one step does).
  return persistChanges(tm, tm.metadataRefs, layout, (type) => {
    if (tm.metadataRefs.allocatableCount === 0) {
      growths++;
      assert(growths <= SPACE_MAP_SIZE_ROUNDS_MAX, "metadata space map size did not settle");
      tm.ensureAllocatable(1);
    }
    return tm.newBlock(type, true);
  });
}

/**
 * Writes a space map incrementally: each chunk whose counts changed gets a new bitmap block
 * (the old one, which the last commit reaches, is released, never overwritten); the index
 * chain is rewritten from its head through the last index block that lists a new bitmap,
 * since each block before it must name its new successor, and the blocks after it are kept;
 * the overflow chain is rewritten only when the overflow list changed.
 *
 * For the metadata space map, every allocation and release here changes counts in the very
 * table being written: those chunks need new bitmaps too, whose allocations change more
 * counts. Each round gives a new block to every chunk and index position that changed and
 * has none yet in this commit; a round that renews nothing has reached the fixed point, and
 * only then are the counts serialized. Each round but the last renews at least one chunk,
 * index position or the overflow chain, each at most once per commit, so the rounds are
 * bounded by how many of those there are. In practice two or three: the blocks a round
 * allocates and releases lie in few chunks, mostly those already renewed.
 */
function persistChanges(tm: TransactionManager, table: RefcountTable, layout: SpaceMapLayout, allocate: PieceAllocator): SpaceMapRoot {
  const newBitmaps = new Map<number, Buffer>();
  const newIndexBlocks = new Map<number, { blockIndex: number; block: Buffer }>();
  let newOverflowBlocks: { blockIndex: number; block: Buffer }[] | null = null;
  let overflow: [number, number][] = [];
  const release = (blockIndex: number) => {
    assert(!tm.isNewInTransaction(blockIndex), `space map block ${blockIndex} replaced twice in one commit`);
    tm.decRef(blockIndex);
  };
  for (let round = 0; ; round++) {
    assert(round <= piecesOf(table.blockCount) + 1, "space map persistence found no fixed point");
    /** Pieces given a new block this round: each moved counts the next round must look at. */
    let renewed = 0;
    const { chunks, overflowChanged } = table.takeChanges();
    const bitmapCount = Math.ceil(table.blockCount / BITMAP_ENTRIES);
    // Chunks never written (a new table, or one the file grew into) are changed ones too.
    const changed = new Set(chunks);
    for (let chunk = layout.bitmapLocations.length; chunk < bitmapCount; chunk++) changed.add(chunk);
    for (const chunk of [...changed].sort((a, b) => a - b)) {
      if (newBitmaps.has(chunk)) continue;
      assert(chunk <= layout.bitmapLocations.length, `bitmap of chunk ${chunk} placed before the chunks ahead of it`);
      const { blockIndex, block } = allocate(BlockType.SpaceMapBitmap);
      const previous = layout.bitmapLocations[chunk];
      layout.bitmapLocations[chunk] = blockIndex;
      if (previous !== undefined) release(previous);
      newBitmaps.set(chunk, block);
      renewed++;
    }

    const indexCount = Math.ceil(layout.bitmapLocations.length / INDEX_ENTRIES);
    let lastChanged = indexCount > layout.indexBlocks.length ? indexCount - 1 : -1;
    for (const chunk of newBitmaps.keys()) lastChanged = Math.max(lastChanged, Math.floor(chunk / INDEX_ENTRIES));
    for (let position = 0; position <= lastChanged; position++) {
      if (newIndexBlocks.has(position)) continue;
      newIndexBlocks.set(position, allocate(BlockType.SpaceMapIndex));
      const previous = layout.indexBlocks[position];
      if (previous !== undefined) release(previous);
      renewed++;
    }

    if (overflowChanged) {
      // Pieces of a space map have a count of 1, so writing one never moves an overflowed count.
      assert(newOverflowBlocks === null, "the overflow list changed while its space map was written");
      for (const blockIndex of layout.overflowBlocks) release(blockIndex);
      overflow = table.overflowEntries();
      newOverflowBlocks = [];
      for (let i = 0; i < Math.ceil(overflow.length / OVERFLOW_ENTRIES); i++) newOverflowBlocks.push(allocate(BlockType.SpaceMapOverflow));
      renewed++;
    }
    if (renewed === 0) break;
  }
  assert(!table.hasChanges, "space map counts changed after the fixed point");
  assert(layout.bitmapLocations.length === Math.ceil(table.blockCount / BITMAP_ENTRIES), "every bitmap chunk has a location");

  // Every allocation is done: the counts are final and can be serialized.
  for (const [chunk, block] of newBitmaps) encodeBitmap(block, chunk, table.chunkBytes(chunk));
  const indexCount = Math.ceil(layout.bitmapLocations.length / INDEX_ENTRIES);
  const indexBlocks: number[] = [];
  for (let position = 0; position < indexCount; position++) {
    const location = newIndexBlocks.get(position)?.blockIndex ?? layout.indexBlocks[position];
    assert(location !== undefined, `index block ${position} is kept or written anew`);
    indexBlocks.push(location);
  }
  for (const [position, { block }] of newIndexBlocks) {
    const entries = layout.bitmapLocations.slice(position * INDEX_ENTRIES, (position + 1) * INDEX_ENTRIES);
    encodeChainHeader(block, indexBlocks[position + 1] ?? 0, entries.length);
    entries.forEach((location, slot) => writeIndexEntry(block, slot, location));
  }
  layout.indexBlocks = indexBlocks;
  if (newOverflowBlocks !== null) {
    const links = newOverflowBlocks;
    links.forEach(({ block }, i) => {
      const entries = overflow.slice(i * OVERFLOW_ENTRIES, (i + 1) * OVERFLOW_ENTRIES);
      encodeChainHeader(block, links[i + 1]?.blockIndex ?? 0, entries.length);
      entries.forEach(([counted, count], slot) => writeOverflowEntry(block, slot, counted, count));
    });
    layout.overflowBlocks = links.map((link) => link.blockIndex);
    layout.root = { ...layout.root, overflowHead: layout.overflowBlocks[0] ?? 0, overflowCount: overflow.length };
  }
  assert(layout.root.overflowCount === table.overflowCount, "the overflow chain kept holds every overflowed count");
  layout.root = { ...layout.root, blockCount: table.blockCount, indexHead: indexBlocks[0] ?? 0 };
  return layout.root;
}

/** The pieces a commit can give new blocks: every bitmap, every index block, the overflow chain. */
function piecesOf(blockCount: number): number {
  const bitmapCount = Math.ceil(blockCount / BITMAP_ENTRIES);
  return bitmapCount + Math.ceil(bitmapCount / INDEX_ENTRIES) + 1;
}
