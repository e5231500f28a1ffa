// Persists a RefcountTable into metadata blocks and loads it back.
// The data space map is written incrementally: only bitmaps that changed get a new block.
// The metadata space map describes the blocks it is itself written to, so it is written
// whole, into blocks allocated before it is serialized (see formats/metadata.md).

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
  table.takeDirtyChunks();
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

/** Writes the chunks of the data space map that changed, then its index and overflow lists. */
export function persistIncrementally(tm: TransactionManager, table: RefcountTable, layout: SpaceMapLayout): SpaceMapRoot {
  const dirty = table.takeDirtyChunks();
  if (dirty.length === 0 && layout.root.blockCount === table.blockCount && layout.indexBlocks.length > 0) return layout.root;
  for (const chunk of dirty) {
    const { blockIndex, block } = tm.newBlock(BlockType.SpaceMapBitmap);
    encodeBitmap(block, chunk, table.chunkBytes(chunk));
    const previous = layout.bitmapLocations[chunk];
    if (previous !== undefined) tm.decRef(previous);
    layout.bitmapLocations[chunk] = blockIndex;
  }
  assert(layout.bitmapLocations.length === Math.ceil(table.blockCount / BITMAP_ENTRIES), "every bitmap chunk has a location");
  for (const blockIndex of [...layout.indexBlocks, ...layout.overflowBlocks]) tm.decRef(blockIndex);
  const overflow = table.overflowEntries();
  const indexBlocks = allocateChain(tm, Math.ceil(layout.bitmapLocations.length / INDEX_ENTRIES), BlockType.SpaceMapIndex, false);
  const overflowBlocks = allocateChain(tm, Math.ceil(overflow.length / OVERFLOW_ENTRIES), BlockType.SpaceMapOverflow, false);
  return finishLayout(layout, table, indexBlocks, overflowBlocks, overflow);
}

/** Writes the metadata space map whole, into blocks it counts itself. */
export function persistWhole(tm: TransactionManager, layout: SpaceMapLayout): SpaceMapRoot {
  const table = tm.metadataRefs;
  for (const blockIndex of layout.allBlocks()) tm.decRef(blockIndex);
  // Growing the file changes how many bitmaps are needed, so settle the size first.
  for (let round = 0; ; round++) {
    assert(round < SPACE_MAP_SIZE_ROUNDS_MAX, "metadata space map size did not settle");
    const bitmapCount = Math.ceil(table.blockCount / BITMAP_ENTRIES);
    // New blocks get a count of 1, so the overflow list cannot grow while we allocate.
    const need = bitmapCount + Math.ceil(bitmapCount / INDEX_ENTRIES) + Math.ceil(table.overflowEntries().length / OVERFLOW_ENTRIES);
    if (table.allocatableCount >= need) break;
    tm.ensureAllocatable(need);
  }
  const bitmapCount = Math.ceil(table.blockCount / BITMAP_ENTRIES);
  layout.bitmapLocations = [];
  const bitmapBlocks: Buffer[] = [];
  for (let chunk = 0; chunk < bitmapCount; chunk++) {
    const { blockIndex, block } = tm.newBlock(BlockType.SpaceMapBitmap, true);
    layout.bitmapLocations.push(blockIndex);
    bitmapBlocks.push(block);
  }
  const overflow = table.overflowEntries();
  const indexBlocks = allocateChain(tm, Math.ceil(bitmapCount / INDEX_ENTRIES), BlockType.SpaceMapIndex, true);
  const overflowBlocks = allocateChain(tm, Math.ceil(overflow.length / OVERFLOW_ENTRIES), BlockType.SpaceMapOverflow, true);
  // Every allocation is done: the counts are final and can be serialized.
  bitmapBlocks.forEach((block, chunk) => encodeBitmap(block, chunk, table.chunkBytes(chunk)));
  table.takeDirtyChunks();
  return finishLayout(layout, table, indexBlocks, overflowBlocks, overflow);
}

function allocateChain(
  tm: TransactionManager,
  length: number,
  type: BlockType,
  fromReserve: boolean,
): { blockIndex: number; block: Buffer }[] {
  const chain = [];
  for (let i = 0; i < length; i++) chain.push(tm.newBlock(type, fromReserve));
  return chain;
}

function finishLayout(
  layout: SpaceMapLayout,
  table: RefcountTable,
  indexBlocks: { blockIndex: number; block: Buffer }[],
  overflowBlocks: { blockIndex: number; block: Buffer }[],
  overflow: [number, number][],
): SpaceMapRoot {
  indexBlocks.forEach(({ block }, i) => {
    const entries = layout.bitmapLocations.slice(i * INDEX_ENTRIES, (i + 1) * INDEX_ENTRIES);
    encodeChainHeader(block, indexBlocks[i + 1]?.blockIndex ?? 0, entries.length);
    entries.forEach((location, slot) => writeIndexEntry(block, slot, location));
  });
  overflowBlocks.forEach(({ block }, i) => {
    const entries = overflow.slice(i * OVERFLOW_ENTRIES, (i + 1) * OVERFLOW_ENTRIES);
    encodeChainHeader(block, overflowBlocks[i + 1]?.blockIndex ?? 0, entries.length);
    entries.forEach(([counted, count], slot) => writeOverflowEntry(block, slot, counted, count));
  });
  layout.indexBlocks = indexBlocks.map((link) => link.blockIndex);
  layout.overflowBlocks = overflowBlocks.map((link) => link.blockIndex);
  layout.root = {
    blockCount: table.blockCount,
    indexHead: layout.indexBlocks[0] ?? 0,
    overflowHead: layout.overflowBlocks[0] ?? 0,
    overflowCount: overflow.length,
  };
  return layout.root;
}
