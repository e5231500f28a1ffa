import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { BITMAP_ENTRIES } from "../src/pdata/space-map-format.js";
import { BTree } from "../src/pdata/btree/btree.js";
import { plainValues } from "../src/pdata/btree/value-type.js";
import { RefcountTable } from "../src/pdata/refcount-table.js";
import { TransactionManager } from "../src/pdata/transaction-manager.js";
import { SeededRandom, testSeeds } from "./support/random.js";

function newTree(cacheBlocks?: number) {
  const refs = new RefcountTable(64, BITMAP_ENTRIES);
  refs.allocateAt(0);
  refs.allocateAt(1);
  const tm = new TransactionManager(new MemoryStorageFile(), refs, cacheBlocks);
  const tree = new BTree(tm, plainValues(8));
  return { tm, tree, refs };
}

function value(n: number): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeUInt32LE(n % 2 ** 32, 0);
  return buffer;
}

async function entries(tree: BTree, root: number): Promise<[number, number][]> {
  const found: [number, number][] = [];
  await tree.forEachInRange(root, 0, Number.MAX_SAFE_INTEGER, (key, v) => void found.push([key, v.readUInt32LE(0)]));
  return found;
}

describe("copy-on-write B-tree", () => {
  for (const seed of testSeeds(3)) {
    it(`matches a Map under random inserts and removes (seed ${seed})`, async () => {
      const random = new SeededRandom(seed);
      const { tree } = newTree(64);
      const model = new Map<number, number>();
      let root = tree.createEmpty();
      for (let step = 0; step < 6000; step++) {
        const key = random.below(3000) * 7;
        if (random.next() < 0.65) {
          const change = await tree.insert(root, key, value(step));
          expect(change.previous?.readUInt32LE(0) ?? null, `seed ${seed} step ${step}`).toBe(model.get(key) ?? null);
          model.set(key, step);
          root = change.root;
        } else {
          const change = await tree.remove(root, key);
          expect(change.previous?.readUInt32LE(0) ?? null, `seed ${seed} step ${step}`).toBe(model.get(key) ?? null);
          model.delete(key);
          root = change.root;
        }
      }
      const sorted = [...model].sort((a, b) => a[0] - b[0]);
      expect(await entries(tree, root)).toEqual(sorted);
      for (const [key, v] of sorted.slice(0, 200)) expect((await tree.lookup(root, key))?.value.readUInt32LE(0)).toBe(v);
      expect(await tree.lookup(root, 1)).toBeNull();
    });
  }

  it("packs sequential inserts into nearly full leaves", async () => {
    const { tree, refs } = newTree();
    let root = tree.createEmpty();
    const before = refs.used;
    for (let key = 0; key < 25400; key++) root = (await tree.insert(root, key, value(key))).root;
    // 254 entries a leaf: 100 leaves plus one internal level.
    expect(refs.used - before).toBeLessThanOrEqual(104);
  });

  it("a shared tree is copied lazily and each side keeps its own entries", async () => {
    const { tm, tree, refs } = newTree();
    let origin = tree.createEmpty();
    for (let key = 0; key < 2000; key++) origin = (await tree.insert(origin, key, value(key))).root;
    tm.endTransaction();
    tm.incRef(origin); // a snapshot
    let snapshot = origin;
    const usedBeforeWrites = refs.used;
    origin = (await tree.insert(origin, 5, value(99999))).root;
    // Only the path to key 5 was copied: the root and one leaf.
    expect(refs.used - usedBeforeWrites).toBe(2);
    snapshot = (await tree.remove(snapshot, 1500)).root;
    expect((await tree.lookup(origin, 5))!.value.readUInt32LE(0)).toBe(99999);
    expect((await tree.lookup(snapshot, 5))!.value.readUInt32LE(0)).toBe(5);
    expect(await tree.lookup(snapshot, 1500)).toBeNull();
    expect((await tree.lookup(origin, 1500))!.value.readUInt32LE(0)).toBe(1500);
    // Leaf 0 was copied for the origin's write, so neither side shares it any more;
    // the leaf holding key 600 was never written and both still see it.
    expect((await tree.lookup(snapshot, 7))!.sharedPath).toBe(false);
    expect((await tree.lookup(origin, 5))!.sharedPath).toBe(false);
    expect((await tree.lookup(snapshot, 600))!.sharedPath).toBe(true);
    expect((await tree.lookup(origin, 600))!.sharedPath).toBe(true);
  });

  it("deleting every sharer of a tree frees every node", async () => {
    const { tm, tree, refs } = newTree();
    const baseline = refs.used;
    let origin = tree.createEmpty();
    for (let key = 0; key < 3000; key += 3) origin = (await tree.insert(origin, key, value(key))).root;
    tm.incRef(origin);
    let snapshot = origin;
    for (let key = 0; key < 3000; key += 300) snapshot = (await tree.insert(snapshot, key, value(1))).root;
    await tree.deleteTree(origin);
    expect((await entries(tree, snapshot)).length).toBe(1000);
    await tree.deleteTree(snapshot);
    expect(refs.used).toBe(baseline);
  });

  it("removing every key leaves an empty leaf root", async () => {
    const { tree, refs } = newTree();
    const baseline = refs.used;
    let root = tree.createEmpty();
    for (let key = 0; key < 5000; key++) root = (await tree.insert(root, key, value(key))).root;
    for (let key = 0; key < 5000; key++) root = (await tree.remove(root, key)).root;
    expect(await entries(tree, root)).toEqual([]);
    expect(refs.used).toBe(baseline + 1);
  });
});
