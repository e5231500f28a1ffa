import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { BlockType, METADATA_BLOCK_BYTES, verifyBlock } from "../src/pdata/block-format.js";
import { RefcountTable } from "../src/pdata/refcount-table.js";
import { BITMAP_ENTRIES, INDEX_ENTRIES } from "../src/pdata/space-map-format.js";
import {
  SpaceMapLayout,
  loadSpaceMap,
  persistDataSpaceMap,
  persistMetadataSpaceMap,
  type SpaceMapRoot,
} from "../src/pdata/space-map-store.js";
import { TransactionManager } from "../src/pdata/transaction-manager.js";
import { SeededRandom, testSeeds } from "./support/random.js";

describe("RefcountTable", () => {
  it("never hands out a block freed in the same transaction", () => {
    const table = new RefcountTable(3, BITMAP_ENTRIES);
    const a = table.allocate()!;
    const b = table.allocate()!;
    const c = table.allocate()!;
    expect([a, b, c].sort()).toEqual([0, 1, 2]);
    table.dec(b);
    expect(table.allocate()).toBeNull();
    table.releasePendingFrees();
    expect(table.allocate()).toBe(b);
  });

  it("refuses to count below zero or to increment a free block", () => {
    const table = new RefcountTable(4, BITMAP_ENTRIES);
    expect(() => table.dec(1)).toThrow(/below zero/);
    expect(() => table.inc(1)).toThrow(/free block/);
  });

  it("keeps counts of 255 and more exactly", () => {
    const table = new RefcountTable(10, BITMAP_ENTRIES);
    const block = table.allocate()!;
    table.inc(block, 1000);
    expect(table.get(block)).toBe(1001);
    for (let i = 0; i < 800; i++) table.dec(block);
    expect(table.get(block)).toBe(201);
  });
});

async function roundTrip(blockCount: number, fill: (table: RefcountTable) => void) {
  const file = new MemoryStorageFile();
  const metadataRefs = new RefcountTable(256, BITMAP_ENTRIES);
  metadataRefs.allocateAt(0);
  const tm = new TransactionManager(file, metadataRefs);
  const data = new RefcountTable(blockCount, BITMAP_ENTRIES);
  data.markAllDirty();
  fill(data);
  const dataLayout = new SpaceMapLayout();
  const dataRoot = { ...persistDataSpaceMap(tm, data, dataLayout) };
  const metadataRoot = { ...persistMetadataSpaceMap(tm, new SpaceMapLayout()) };
  await tm.writeDirtyBlocks();
  const read = async (index: number, type: BlockType) => {
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await file.read(block, index * METADATA_BLOCK_BYTES);
    verifyBlock(block, type, index);
    return block;
  };
  return {
    data,
    metadataRefs,
    loadedData: (await loadSpaceMap(dataRoot, read)).table,
    loadedMetadata: (await loadSpaceMap(metadataRoot, read)).table,
  };
}

describe("space map persistence", () => {
  it("loads back every count, overflowed ones included, across several bitmaps", async () => {
    const { data, loadedData } = await roundTrip(3 * BITMAP_ENTRIES + 17, (table) => {
      for (let i = 0; i < 5000; i++) table.allocate();
      table.inc(10, 300);
      table.inc(4100, 2);
    });
    for (const block of [0, 10, 4099, 4100, 4999, 5000, 3 * BITMAP_ENTRIES + 16]) expect(loadedData.get(block)).toBe(data.get(block));
    expect(loadedData.used).toBe(5000);
    expect(loadedData.get(10)).toBe(301);
  });

  it("the metadata space map counts the blocks it is written to", async () => {
    const { metadataRefs, loadedMetadata } = await roundTrip(100, () => {});
    expect(loadedMetadata.used).toBe(metadataRefs.used);
    for (let block = 0; block < 256; block++) expect(loadedMetadata.get(block)).toBe(metadataRefs.get(block));
  });
});

describe("RefcountTable allocation covers every block", () => {
  for (const blockCount of [1, 31, 32, 33, 64, 256, 4095, 4096, 4097]) {
    it(`a table of ${blockCount} blocks hands out all ${blockCount}, and all of a grown one`, () => {
      const table = new RefcountTable(blockCount, BITMAP_ENTRIES);
      let allocated = 0;
      while (table.allocate() !== null) allocated++;
      expect(allocated).toBe(blockCount);
      expect(table.allocatableCount).toBe(0);
      table.grow(blockCount + 64);
      while (table.allocate() !== null) allocated++;
      expect(allocated).toBe(blockCount + 64);
    });
  }
});

/** Two space maps over a memory file, committed as PoolMetadata.commit does, less the trees and superblock. */
class SpaceMapPair {
  readonly file = new MemoryStorageFile();
  tm: TransactionManager;
  dataLayout = new SpaceMapLayout();
  metadataLayout = new SpaceMapLayout();
  /** Metadata blocks written by the last commit. */
  written = new Set<number>();

  constructor(
    metadataBlocks: number,
    public data: RefcountTable,
  ) {
    const metadataRefs = new RefcountTable(metadataBlocks, BITMAP_ENTRIES);
    for (const slot of [0, 1]) metadataRefs.allocateAt(slot);
    this.tm = new TransactionManager(this.file, metadataRefs);
    data.markAllDirty();
  }

  /** Loads both maps from the file, as opening a pool does: allocation starts again from block 0. */
  async reopen(roots: { dataRoot: SpaceMapRoot; metadataRoot: SpaceMapRoot }): Promise<void> {
    const metadata = await this.load(roots.metadataRoot);
    const data = await this.load(roots.dataRoot);
    this.tm = new TransactionManager(this.file, metadata.table);
    this.metadataLayout = metadata.layout;
    this.data = data.table;
    this.dataLayout = data.layout;
  }

  get metadataRefs(): RefcountTable {
    return this.tm.metadataRefs;
  }

  /** Persists both maps and writes their blocks; the caller ends the transaction with `endCommit`. */
  async commit(): Promise<{ dataRoot: SpaceMapRoot; metadataRoot: SpaceMapRoot }> {
    const dataRoot = { ...persistDataSpaceMap(this.tm, this.data, this.dataLayout) };
    const metadataRoot = { ...persistMetadataSpaceMap(this.tm, this.metadataLayout) };
    this.written = new Set([...this.tm.cache.dirtyEntries()].map(([blockIndex]) => blockIndex));
    await this.tm.writeDirtyBlocks();
    return { dataRoot, metadataRoot };
  }

  endCommit(): void {
    this.tm.endTransaction();
    this.data.releasePendingFrees();
  }

  load(root: SpaceMapRoot) {
    return loadSpaceMap(root, async (index: number, type: BlockType) => {
      const block = Buffer.alloc(METADATA_BLOCK_BYTES);
      await this.file.read(block, index * METADATA_BLOCK_BYTES);
      verifyBlock(block, type, index);
      return block;
    });
  }
}

function expectSameCounts(loaded: RefcountTable, expected: RefcountTable | Uint32Array, what: string): void {
  const blockCount = expected instanceof RefcountTable ? expected.blockCount : expected.length;
  expect(loaded.blockCount, what).toBe(blockCount);
  for (let block = 0; block < blockCount; block++) {
    const want = expected instanceof RefcountTable ? expected.get(block) : expected[block]!;
    if (loaded.get(block) !== want) expect.fail(`${what}: block ${block} loads as ${loaded.get(block)}, expected ${want}`);
  }
}

function countsOf(table: RefcountTable): Uint32Array {
  return Uint32Array.from({ length: table.blockCount }, (_, block) => table.get(block));
}

describe("incremental space map persistence", () => {
  it("rewrites only a changed bitmap and the index blocks from the head to the one listing it", async () => {
    // Three index blocks' worth of bitmaps.
    const pair = new SpaceMapPair(256, new RefcountTable((2 * INDEX_ENTRIES + 10) * BITMAP_ENTRIES, BITMAP_ENTRIES));
    for (let i = 0; i < 10; i++) pair.data.allocate();
    await pair.commit();
    pair.endCommit();
    const before = { bitmaps: [...pair.dataLayout.bitmapLocations], index: [...pair.dataLayout.indexBlocks] };
    expect(before.index).toHaveLength(3);

    const changedChunk = INDEX_ENTRIES + 3; // listed by the second index block
    pair.data.allocateAt(changedChunk * BITMAP_ENTRIES);
    const { dataRoot } = await pair.commit();
    const after = { bitmaps: pair.dataLayout.bitmapLocations, index: pair.dataLayout.indexBlocks };
    const writtenOfData = [...pair.written].filter((block) => after.bitmaps.includes(block) || after.index.includes(block));
    expect(after.bitmaps.filter((location, chunk) => location !== before.bitmaps[chunk])).toEqual([after.bitmaps[changedChunk]]);
    expect(after.index[0]).not.toBe(before.index[0]);
    expect(after.index[1]).not.toBe(before.index[1]);
    expect(after.index[2]).toBe(before.index[2]);
    expect(writtenOfData.sort((a, b) => a - b)).toEqual(
      [after.bitmaps[changedChunk]!, after.index[0]!, after.index[1]!].sort((a, b) => a - b),
    );
    expectSameCounts((await pair.load(dataRoot)).table, pair.data, "data space map");
  });

  it("keeps the overflow chain while no overflowed count changes, and rewrites it when one does", async () => {
    const pair = new SpaceMapPair(256, new RefcountTable(100, BITMAP_ENTRIES));
    const block = pair.data.allocate()!;
    pair.data.inc(block, 400);
    const first = await pair.commit();
    pair.endCommit();
    const chain = [...pair.dataLayout.overflowBlocks];
    expect(chain).toHaveLength(1);

    pair.data.allocate();
    const second = await pair.commit();
    pair.endCommit();
    expect(pair.dataLayout.overflowBlocks).toEqual(chain);
    expect(second.dataRoot.overflowHead).toBe(first.dataRoot.overflowHead);
    expect((await pair.load(second.dataRoot)).table.get(block)).toBe(401);

    pair.data.dec(block);
    const third = await pair.commit();
    expect(pair.dataLayout.overflowBlocks).not.toEqual(chain);
    expect((await pair.load(third.dataRoot)).table.get(block)).toBe(400);
    for (let i = 0; i < 200; i++) pair.data.dec(block);
    pair.endCommit();
    const fourth = await pair.commit();
    expect(fourth.dataRoot.overflowHead).toBe(0);
    expect((await pair.load(fourth.dataRoot)).table.get(block)).toBe(200);
  });

  it("settles the metadata map's own changes: the chunks its replaced and new bitmaps lie in are rewritten too", async () => {
    const pair = new SpaceMapPair(5 * BITMAP_ENTRIES, new RefcountTable(100, BITMAP_ENTRIES));
    // Chunks 0 and 1 in use, as tree nodes would be, so the maps' pieces go to chunk 2; and
    // one block of chunk 3 in use.
    const treeBlock = 3 * BITMAP_ENTRIES + 10;
    for (let block = 2; block < 2 * BITMAP_ENTRIES; block++) pair.metadataRefs.allocateAt(block);
    pair.metadataRefs.allocateAt(treeBlock);
    const first = await pair.commit();
    pair.endCommit();
    expectSameCounts((await pair.load(first.metadataRoot)).table, pair.metadataRefs, "metadata space map");
    // One block of chunk 0 freed, and free once this commits.
    const hole = 100;
    pair.tm.decRef(hole);
    const second = await pair.commit();
    pair.endCommit();
    const before = [...pair.metadataLayout.bitmapLocations];
    expect(before.map((location) => Math.floor(location / BITMAP_ENTRIES))).toEqual([2, 2, 2, 2, 2]);

    // Reopened, allocation starts at the front: the new bitmap for chunk 3 takes the hole in
    // chunk 0, and releases a block of chunk 2; those two chunks then need new bitmaps too.
    await pair.reopen(second);
    pair.metadataRefs.inc(treeBlock);
    const { metadataRoot } = await pair.commit();
    const rewritten = pair.metadataLayout.bitmapLocations.flatMap((location, chunk) => (location !== before[chunk] ? [chunk] : []));
    expect(pair.metadataLayout.bitmapLocations[3]).toBe(hole);
    expect(rewritten).toEqual([0, 2, 3]);
    expect(pair.metadataRefs.hasChanges).toBe(false);
    expectSameCounts((await pair.load(metadataRoot)).table, pair.metadataRefs, "metadata space map");
  });

  it("grows the metadata file when the reserve runs out, and counts the bitmaps of the chunks it grew into", async () => {
    const pair = new SpaceMapPair(256, new RefcountTable(100, BITMAP_ENTRIES));
    await pair.commit();
    pair.endCommit();
    while (pair.metadataRefs.allocatableCount > 0) pair.tm.newBlock(BlockType.BTreeNode, true);
    const { metadataRoot } = await pair.commit();
    expect(metadataRoot.blockCount).toBeGreaterThan(256);
    expectSameCounts((await pair.load(metadataRoot)).table, pair.metadataRefs, "metadata space map");
  });

  for (const seed of testSeeds(2)) {
    it(`every commit of random workload ${seed} loads back exactly, and leaves the previous commit's maps loadable`, async () => {
      const random = new SeededRandom(seed);
      // Several bitmaps of metadata, so the metadata map's own pieces move counts in other chunks.
      const pair = new SpaceMapPair(5 * BITMAP_ENTRIES, new RefcountTable(3 * BITMAP_ENTRIES + 100, BITMAP_ENTRIES));
      /** One entry per reference held to a metadata block, as tree nodes hold them. */
      const metadataRefsHeld: number[] = [];
      const dataBlocksUsed: number[] = [];
      // Most metadata blocks in use from the start, as tree nodes would be, so allocations and
      // frees land in every chunk, and so do the maps' own pieces.
      for (let block = 2; block < pair.metadataRefs.blockCount; block++) {
        if (random.next() < 0.9) {
          pair.metadataRefs.allocateAt(block);
          metadataRefsHeld.push(block);
        }
      }
      let previous: { roots: { dataRoot: SpaceMapRoot; metadataRoot: SpaceMapRoot }; data: Uint32Array; metadata: Uint32Array } | null =
        null;
      for (let commit = 0; commit < 40; commit++) {
        // Few changes a commit, so most chunks are left alone and the maps' own pieces matter.
        for (let step = random.below(8); step > 0; step--) {
          const roll = random.next();
          if (roll < 0.3) metadataRefsHeld.push(pair.tm.newBlock(BlockType.BTreeNode).blockIndex);
          else if (roll < 0.5 && metadataRefsHeld.length > 0) {
            const [block] = metadataRefsHeld.splice(random.below(metadataRefsHeld.length), 1);
            pair.tm.decRef(block!);
          } else if (roll < 0.52 && metadataRefsHeld.length > 0) {
            const block = random.pick(metadataRefsHeld);
            pair.metadataRefs.inc(block, 300);
            for (let i = 0; i < 300; i++) metadataRefsHeld.push(block);
          } else if (roll < 0.75) {
            const block = pair.data.allocate();
            if (block !== null) dataBlocksUsed.push(block);
          } else if (roll < 0.77 && dataBlocksUsed.length > 0) {
            const block = random.pick(dataBlocksUsed);
            pair.data.inc(block, 300);
            for (let i = 0; i < 300; i++) dataBlocksUsed.push(block);
          } else if (dataBlocksUsed.length > 0) {
            const [block] = dataBlocksUsed.splice(random.below(dataBlocksUsed.length), 1);
            pair.data.dec(block!);
          }
        }
        const roots = await pair.commit();
        // Nothing the previous commit reaches was overwritten: its maps load as they were.
        if (previous) {
          expectSameCounts((await pair.load(previous.roots.dataRoot)).table, previous.data, `seed ${seed}: previous data map`);
          expectSameCounts((await pair.load(previous.roots.metadataRoot)).table, previous.metadata, `seed ${seed}: previous metadata map`);
        }
        const loadedMetadata = await pair.load(roots.metadataRoot);
        expectSameCounts(loadedMetadata.table, pair.metadataRefs, `seed ${seed}: metadata map`);
        expectSameCounts((await pair.load(roots.dataRoot)).table, pair.data, `seed ${seed}: data map`);
        // Each piece of either map is referenced once, by its chain or index.
        const pairLayouts = [loadedMetadata.layout, (await pair.load(roots.dataRoot)).layout];
        for (const blockIndex of pairLayouts.flatMap((layout) => layout.allBlocks())) expect(pair.metadataRefs.get(blockIndex)).toBe(1);
        pair.endCommit();
        previous = { roots, data: countsOf(pair.data), metadata: countsOf(pair.metadataRefs) };
        // Reopening starts allocation again from block 0, far from where the maps' pieces lie.
        if (random.next() < 0.5) await pair.reopen(roots);
      }
    });
  }
});
