// The one tree walker (src/pdata/btree/walker.ts): the descent every reader of a B-tree shares.
// Damage it must turn into a typed corruption error naming the block: a pointer that loops,
// a pointer past the file, a tree deeper than TREE_DEPTH_MAX. Sharing it must turn into
// visitAgain, once per shared node. Range walks must agree with a plain Map.

import { describe, expect, it } from "vitest";
import { CorruptBlockError } from "../src/errors.js";
import { writeU64 } from "../src/io/integers.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { BlockType } from "../src/pdata/block-format.js";
import { BTree } from "../src/pdata/btree/btree.js";
import { CHILD_VALUE_BYTES, NodeKind, NodeView } from "../src/pdata/btree/node.js";
import { plainValues } from "../src/pdata/btree/value-type.js";
import { KEY_END, TREE_DEPTH_MAX, TreeWalker, type KeyRange, type NodeVisitor } from "../src/pdata/btree/walker.js";
import { RefcountTable } from "../src/pdata/refcount-table.js";
import { BITMAP_ENTRIES } from "../src/pdata/space-map-format.js";
import { TransactionManager } from "../src/pdata/transaction-manager.js";
import { SeededRandom, testSeeds } from "./support/random.js";

const VALUE_BYTES = 8;

function newTree() {
  const refs = new RefcountTable(64, BITMAP_ENTRIES);
  refs.allocateAt(0);
  refs.allocateAt(1);
  const tm = new TransactionManager(new MemoryStorageFile(), refs);
  const tree = new BTree(tm, plainValues(VALUE_BYTES));
  const walker = (remember: boolean) => new TreeWalker((blockIndex) => tm.read(blockIndex, BlockType.BTreeNode), remember);
  return { tm, tree, walker };
}

function value(n: number): Buffer {
  const buffer = Buffer.alloc(VALUE_BYTES);
  buffer.writeUInt32LE(n, 0);
  return buffer;
}

async function treeOf(tree: BTree, keys: number): Promise<number> {
  let root = tree.createEmpty();
  for (let key = 0; key < keys; key++) root = (await tree.insert(root, key, value(key))).root;
  return root;
}

/** Rewrites child `index` of a node held in the cache (this transaction's, so not yet on disk). */
async function repoint(tm: TransactionManager, node: number, index: number, target: number): Promise<void> {
  const view = new NodeView(await tm.read(node, BlockType.BTreeNode), node);
  expect(view.isLeaf).toBe(false);
  view.setChild(index < 0 ? view.count + index : index, target);
}

/** Records everything a walk tells its visitor; takes failures, so the walk goes on past them. */
class RecordingVisitor implements NodeVisitor {
  readonly visited: number[] = [];
  readonly again: number[] = [];
  readonly entries: number[] = [];
  readonly failures: { error: CorruptBlockError; keys: KeyRange | null }[] = [];
  ended = false;

  visit(node: NodeView): void {
    this.visited.push(node.blockIndex);
    if (node.isLeaf) for (let i = 0; i < node.count; i++) this.entries.push(node.keyAt(i));
  }
  visitAgain(blockIndex: number): void {
    this.again.push(blockIndex);
  }
  failed(error: CorruptBlockError, keys: KeyRange | null): void {
    this.failures.push({ error, keys });
  }
  endWalk(): void {
    this.ended = true;
  }
}

/** A visitor with the engine's policy: it takes no failures, so the first one is thrown. */
const failFast: NodeVisitor = { visit: () => undefined };

describe("the tree walker on damaged trees", () => {
  it("a child pointing back at the root is a loop error, whoever walks the tree", async () => {
    const { tm, tree, walker } = newTree();
    const root = await treeOf(tree, 2000);
    await repoint(tm, root, -1, root);

    // Without memory the walk goes round until the depth bound, and names the node it met there.
    await expect(walker(false).walk(root, VALUE_BYTES, failFast)).rejects.toMatchObject({ kind: "loop" });
    // Through the looping pointer alone, that node is the root.
    await expect(tree.forEachInRange(root, 1999, KEY_END, () => undefined)).rejects.toMatchObject({ kind: "loop", blockIndex: root });
    // A remembering walker knows the root is on its own path.
    await expect(walker(true).walk(root, VALUE_BYTES, failFast)).rejects.toMatchObject({ kind: "loop", blockIndex: root });
    // Last: the failed delete has freed blocks (a rollback would restore them).
    await expect(tree.deleteTree(root)).rejects.toMatchObject({ kind: "loop", blockIndex: root });
  });

  it("a remembering walker reports the loop once, with the keys it cost, and walks the rest", async () => {
    const { tm, tree, walker } = newTree();
    const root = await treeOf(tree, 2000);
    const lastKey = new NodeView(await tm.read(root, BlockType.BTreeNode), root);
    const lostFrom = lastKey.keyAt(lastKey.count - 1);
    await repoint(tm, root, -1, root);

    const recording = new RecordingVisitor();
    await walker(true).walk(root, VALUE_BYTES, recording);
    expect(recording.failures).toHaveLength(1);
    expect(recording.failures[0]!.error).toMatchObject({ kind: "loop", blockIndex: root });
    expect(recording.failures[0]!.keys).toEqual({ first: lostFrom, end: KEY_END });
    expect(recording.entries).toEqual(Array.from({ length: lostFrom }, (_, key) => key));
    expect(recording.ended).toBe(true);
  });

  it("a pointer past the metadata file is an out-of-range error naming the block it points at", async () => {
    const { tm, tree, walker } = newTree();
    const root = await treeOf(tree, 2000);
    const beyond = 2 ** 30;
    await repoint(tm, root, 1, beyond);

    await expect(walker(false).walk(root, VALUE_BYTES, failFast)).rejects.toMatchObject({
      kind: "pointer-out-of-range",
      blockIndex: beyond,
    });
    await expect(tree.forEachInRange(root, 0, KEY_END, () => undefined)).rejects.toMatchObject({
      kind: "pointer-out-of-range",
      blockIndex: beyond,
    });
    // A read that does not pass through the bad pointer is not failed by it.
    await expect(tree.forEachInRange(root, 0, 1, () => undefined)).resolves.toBe(true);

    const remembering = walker(true);
    const recording = new RecordingVisitor();
    await remembering.walk(root, VALUE_BYTES, recording);
    expect(recording.failures.map(({ error }) => error.kind)).toEqual(["pointer-out-of-range"]);
    expect(recording.failures[0]!.keys).not.toBeNull();
    expect([...remembering.failed.keys()]).toEqual([beyond]);
  });

  it("a pointer to a cached block of another type is a wrong-type error, not an assertion", async () => {
    const { tm, tree } = newTree();
    const root = await treeOf(tree, 2000);
    const bitmap = tm.newBlock(BlockType.SpaceMapBitmap).blockIndex;
    await repoint(tm, root, 0, bitmap);
    await expect(tree.forEachInRange(root, 0, 1, () => undefined)).rejects.toMatchObject({ kind: "wrong-type", blockIndex: bitmap });
  });

  it("a tree deeper than TREE_DEPTH_MAX levels is a loop error, one exactly that deep is walked", async () => {
    const { tm } = newTree();
    /** A chain of `levels` nodes: internal nodes with one child each, then an empty leaf. */
    const chain = (levels: number): number[] => {
      const blocks: number[] = [];
      for (let level = 0; level < levels; level++) {
        const { blockIndex, block } = tm.newBlock(BlockType.BTreeNode);
        const isLeaf = level === levels - 1;
        NodeView.format(block, blockIndex, isLeaf ? NodeKind.Leaf : NodeKind.Internal, isLeaf ? VALUE_BYTES : CHILD_VALUE_BYTES);
        blocks.push(blockIndex);
      }
      for (let level = 0; level + 1 < levels; level++) {
        const pointer = Buffer.alloc(CHILD_VALUE_BYTES);
        writeU64(pointer, 0, blocks[level + 1]!);
        new NodeView(tm.cache.get(blocks[level]!)!.block, blocks[level]!).insertAt(0, 0, pointer);
      }
      return blocks;
    };
    const walker = new TreeWalker((blockIndex) => tm.read(blockIndex, BlockType.BTreeNode));

    const deepest = chain(TREE_DEPTH_MAX);
    const recording = new RecordingVisitor();
    await walker.walk(deepest[0]!, VALUE_BYTES, recording);
    expect(recording.visited).toEqual(deepest);

    const tooDeep = chain(TREE_DEPTH_MAX + 1);
    await expect(walker.walk(tooDeep[0]!, VALUE_BYTES, failFast)).rejects.toMatchObject({
      kind: "loop",
      blockIndex: tooDeep[TREE_DEPTH_MAX],
    });
  });
});

describe("the tree walker on shared trees", () => {
  it("a remembering walker visits a subtree shared by a snapshot once, then visitAgain for each sharer", async () => {
    const { tm, tree, walker } = newTree();
    const origin = await treeOf(tree, 3000);
    tm.incRef(origin);
    let snapshot = origin;
    for (const key of [5, 2500]) snapshot = (await tree.insert(snapshot, key, value(1))).root;

    const remembering = walker(true);
    const recording = new RecordingVisitor();
    await remembering.walk(origin, VALUE_BYTES, recording);
    const originNodes = recording.visited.length;
    await remembering.walk(snapshot, VALUE_BYTES, recording);

    expect(new Set(recording.visited).size).toBe(recording.visited.length);
    // The snapshot's own nodes are its copied path: the root, two leaves, and what is between.
    expect(recording.visited.length - originNodes).toBeLessThan(8);
    expect(recording.again.length).toBeGreaterThan(0);
    for (const blockIndex of recording.again) expect(recording.visited.slice(0, originNodes)).toContain(blockIndex);
    expect(recording.failures).toEqual([]);

    // A walker that does not remember walks the whole snapshot.
    const whole = new RecordingVisitor();
    await walker(false).walk(snapshot, VALUE_BYTES, whole);
    expect(whole.entries).toEqual(Array.from({ length: 3000 }, (_, key) => key));
  });

  it("range reads say which entries sit below a shared node", async () => {
    const { tm, tree } = newTree();
    const origin = await treeOf(tree, 3000);
    tm.incRef(origin);
    const snapshot = (await tree.insert(origin, 5, value(1))).root;
    const shared = new Map<number, boolean>();
    await tree.forEachInRange(snapshot, 0, KEY_END, (key, _value, sharedPath) => void shared.set(key, sharedPath));
    expect(shared.size).toBe(3000);
    expect(shared.get(5)).toBe(false);
    expect(shared.get(2999)).toBe(true);
  });
});

describe("range walks against a Map", () => {
  for (const seed of testSeeds(3)) {
    it(`visit exactly the entries in range, in order, and stop when asked (seed ${seed})`, async () => {
      const random = new SeededRandom(seed);
      const { tree } = newTree();
      const model = new Map<number, number>();
      let root = tree.createEmpty();
      const KEY_SPACE = 20_000;
      for (let step = 0; step < 6000; step++) {
        const key = random.below(KEY_SPACE);
        if (random.below(4) === 0) {
          root = (await tree.remove(root, key)).root;
          model.delete(key);
        } else {
          const n = random.below(2 ** 31);
          root = (await tree.insert(root, key, value(n))).root;
          model.set(key, n);
        }
      }
      const sorted = [...model.entries()].sort((a, b) => a[0] - b[0]);
      for (let query = 0; query < 100; query++) {
        const from = random.below(KEY_SPACE);
        const to = from + 1 + random.below(random.below(2) === 0 ? 64 : KEY_SPACE);
        const limit = random.below(3) === 0 ? 1 + random.below(20) : Infinity;
        const found: [number, number][] = [];
        const finished = await tree.forEachInRange(root, from, to, (key, v) => {
          found.push([key, v.readUInt32LE(0)]);
          return found.length < limit;
        });
        const expected = sorted.filter(([key]) => key >= from && key < to);
        expect(found, `seed ${seed}: [${from}, ${to}) limit ${limit}`).toEqual(expected.slice(0, Math.min(limit, expected.length)));
        expect(finished).toBe(expected.length < limit);
      }
    });
  }
});
