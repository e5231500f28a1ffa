import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { BlockType, METADATA_BLOCK_BYTES, verifyBlock } from "../src/pdata/block-format.js";
import { RefcountTable } from "../src/pdata/refcount-table.js";
import { BITMAP_ENTRIES } from "../src/pdata/space-map-format.js";
import { SpaceMapLayout, loadSpaceMap, persistIncrementally, persistWhole } from "../src/pdata/space-map-store.js";
import { TransactionManager } from "../src/pdata/transaction-manager.js";

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
  const dataRoot = { ...persistIncrementally(tm, data, dataLayout) };
  const metadataRoot = { ...persistWhole(tm, new SpaceMapLayout()) };
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
