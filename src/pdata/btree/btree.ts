// A copy-on-write B+tree of u64 keys to fixed-size values, in the manner of dm-thin's
// persistent-data btree: every change shadows the path from the root, so the tree the
// last commit reaches is never touched, and a tree whose root is shared (a snapshot) is
// copied lazily, one node at a time, as either side changes it.

import { CorruptBlockError } from "../../errors.js";
import { assert } from "../../io/assert.js";
import { writeU64 } from "../../io/integers.js";
import { BlockType, blockTypeName } from "../block-format.js";
import type { TransactionManager } from "../transaction-manager.js";
import { CHILD_VALUE_BYTES, NodeKind, NodeView } from "./node.js";
import type { ValueType } from "./value-type.js";
import { TREE_DEPTH_MAX, TreeWalker, type NodeVisitor, type WalkStep } from "./walker.js";

export interface LookupResult {
  value: Buffer;
  /** Some node on the path is referenced more than once: another tree sees this value too. */
  sharedPath: boolean;
}

export interface Change {
  root: number;
  /** The value that was replaced or removed, copied out of the node. */
  previous: Buffer | null;
}

/** Merging starts when a node falls below this fraction of its capacity. */
const MERGE_BELOW_FRACTION = 0.25;
/** Depth comes from pointers on disk: a loop among blocks that verify is corruption, not a bug here. */
function checkDepth(root: number, depth: number): void {
  if (depth >= TREE_DEPTH_MAX)
    throw new CorruptBlockError(root, "loop", `the tree is deeper than ${TREE_DEPTH_MAX} levels: its nodes point in a loop`);
}

/** Called for each entry of a range walk; false ends the walk. */
export type RangeVisit = (key: number, value: Buffer, sharedPath: boolean, leafIndex: number) => boolean | void;

export class BTree {
  /** Remembers nothing between walks: reads may walk concurrently, and each fails on its first bad block. */
  private readonly walker: TreeWalker;

  constructor(
    private readonly tm: TransactionManager,
    readonly valueType: ValueType,
  ) {
    this.walker = new TreeWalker((blockIndex) => tm.read(blockIndex, BlockType.BTreeNode));
  }

  createEmpty(): number {
    const { blockIndex, block } = this.tm.newBlock(BlockType.BTreeNode);
    NodeView.format(block, blockIndex, NodeKind.Leaf, this.valueType.valueBytes);
    return blockIndex;
  }

  async readNode(blockIndex: number): Promise<NodeView> {
    return NodeView.open(await this.tm.read(blockIndex, BlockType.BTreeNode), blockIndex, this.valueType.valueBytes);
  }

  async lookup(root: number, key: number): Promise<LookupResult | null> {
    let node = await this.readNode(root);
    let sharedPath = this.tm.refCount(root) > 1;
    for (let depth = 0; !node.isLeaf; depth++) {
      checkDepth(root, depth);
      if (node.count === 0) return null;
      const child = node.childAt(node.childIndexFor(key));
      sharedPath ||= this.tm.refCount(child) > 1;
      node = await this.readNode(child);
    }
    const index = node.lowerBound(key);
    if (index >= node.count || node.keyAt(index) !== key) return null;
    return { value: Buffer.from(node.valueAt(index)), sharedPath };
  }

  async insert(root: number, key: number, value: Uint8Array): Promise<Change> {
    let node = await this.shadowNode(root);
    const newRoot = node.blockIndex;
    if (node.isFull) this.growRoot(node, key);
    for (let depth = 0; ; depth++) {
      checkDepth(root, depth);
      if (node.isLeaf) {
        const index = node.lowerBound(key);
        if (index < node.count && node.keyAt(index) === key) {
          const previous = Buffer.from(node.valueAt(index));
          node.setValue(index, value);
          return { root: newRoot, previous };
        }
        node.insertAt(index, key, value);
        return { root: newRoot, previous: null };
      }
      const index = node.childIndexFor(key);
      if (key < node.keyAt(index)) node.setKey(index, key); // only ever the first key
      let child = await this.shadowChild(node, index);
      if (child.isFull) {
        const sibling = this.splitInto(child, key);
        node.insertAt(index + 1, sibling.keyAt(0), childValue(sibling.blockIndex));
        if (key >= sibling.keyAt(0)) child = sibling;
      }
      node = child;
    }
  }

  async remove(root: number, key: number): Promise<Change> {
    if ((await this.lookup(root, key)) === null) return { root, previous: null };
    let node = await this.shadowNode(root);
    let newRoot = node.blockIndex;
    const path: { parent: NodeView; index: number }[] = [];
    while (!node.isLeaf) {
      checkDepth(root, path.length);
      const index = node.childIndexFor(key);
      const child = await this.shadowChild(node, index);
      path.push({ parent: node, index });
      node = child;
    }
    const index = node.lowerBound(key);
    assert(index < node.count && node.keyAt(index) === key, `key ${key} vanished between lookup and remove`);
    const previous = Buffer.from(node.valueAt(index));
    node.removeAt(index);

    let child = node;
    // Back up the path from the leaf to the root.
    for (let step = path.pop(); step !== undefined; step = path.pop()) {
      const { parent, index: childIndex } = step;
      if (child.count === 0) {
        parent.removeAt(childIndex);
        this.tm.decRef(child.blockIndex);
      } else if (child.count < child.maxEntries * MERGE_BELOW_FRACTION) {
        await this.mergeWithSibling(parent, childIndex, child);
      }
      child = parent;
    }
    newRoot = await this.collapseRoot(newRoot);
    return { root: newRoot, previous };
  }

  /**
   * Calls `visit` for every entry with from <= key < to, in key order, saying whether the
   * path to it is shared with another tree and which leaf holds it. A visit that returns
   * false ends the walk; so does the method's result, false, tell a caller it was stopped.
   */
  async forEachInRange(root: number, from: number, to: number, visit: RangeVisit): Promise<boolean> {
    return this.walker.walk(root, this.valueType.valueBytes, new RangeVisitor(this.tm, from, to, visit), from, to);
  }

  /**
   * forEachInRange without awaiting, when every node the walk needs is in the cache; null
   * when one is not, and then the visits already made are to be discarded (the caller walks
   * again with forEachInRange, which reads what is missing).
   */
  forEachInRangeCached(root: number, from: number, to: number, visit: RangeVisit): boolean | null {
    return this.walker.walkCached(root, this.valueType.valueBytes, new RangeVisitor(this.tm, from, to, visit), this.cachedNode, from, to);
  }

  /** A node's block from the cache, with the type check a read from the cache makes. */
  private readonly cachedNode = (blockIndex: number): Buffer | undefined => {
    const cached = this.tm.cache.get(blockIndex);
    if (cached === undefined) return undefined;
    if (cached.type !== BlockType.BTreeNode) {
      throw new CorruptBlockError(
        blockIndex,
        "wrong-type",
        `expected a ${blockTypeName(BlockType.BTreeNode)} block, found type ${blockTypeName(cached.type)}`,
      );
    }
    return cached.block;
  };

  /** The tree loses one referrer; nodes (and their values) no longer referenced are freed. */
  async deleteTree(root: number): Promise<void> {
    const deletion = new DeleteVisitor(this.tm, this.valueType);
    if (deletion.keeps(root)) return;
    await this.walker.walk(root, this.valueType.valueBytes, deletion);
  }

  private async shadowNode(blockIndex: number): Promise<NodeView> {
    const shadow = await this.tm.shadow(blockIndex, BlockType.BTreeNode);
    const node = NodeView.open(shadow.block, shadow.blockIndex, this.valueType.valueBytes);
    if (shadow.incrementChildren) {
      for (let i = 0; i < node.count; i++) {
        if (node.isLeaf) this.valueType.increment(node.valueAt(i));
        else this.tm.incRef(node.childAt(i));
      }
    }
    return node;
  }

  private async shadowChild(parent: NodeView, index: number): Promise<NodeView> {
    const original = parent.childAt(index);
    const child = await this.shadowNode(original);
    if (child.blockIndex !== original) parent.setChild(index, child.blockIndex);
    return child;
  }

  /** Splits a full node; returns the new right sibling. */
  private splitInto(node: NodeView, key: number): NodeView {
    const { blockIndex, block } = this.tm.newBlock(BlockType.BTreeNode);
    const sibling = NodeView.format(block, blockIndex, node.kind, node.valueBytes);
    node.moveTailTo(splitPoint(node, key), sibling);
    return sibling;
  }

  /** A full root keeps its block and gains a level: its entries move into two new children. */
  private growRoot(root: NodeView, key: number): void {
    const { blockIndex, block } = this.tm.newBlock(BlockType.BTreeNode);
    const left = NodeView.format(block, blockIndex, root.kind, root.valueBytes);
    left.appendAll(root);
    const right = this.splitInto(left, key);
    NodeView.format(root.block, root.blockIndex, NodeKind.Internal, CHILD_VALUE_BYTES);
    root.insertAt(0, left.keyAt(0), childValue(left.blockIndex));
    root.insertAt(1, right.keyAt(0), childValue(right.blockIndex));
  }

  private async mergeWithSibling(parent: NodeView, index: number, child: NodeView): Promise<void> {
    if (index > 0) {
      const left = await this.shadowChild(parent, index - 1);
      if (left.count + child.count <= left.maxEntries) {
        left.appendAll(child);
        parent.removeAt(index);
        this.tm.decRef(child.blockIndex);
      }
      return;
    }
    if (index + 1 < parent.count) {
      const right = await this.shadowChild(parent, index + 1);
      if (child.count + right.count <= child.maxEntries) {
        child.appendAll(right);
        parent.removeAt(index + 1);
        this.tm.decRef(right.blockIndex);
      }
    }
  }

  /** An internal root with one child hands the tree to that child; an empty one becomes a leaf. */
  private async collapseRoot(root: number): Promise<number> {
    for (let depth = 0; depth < TREE_DEPTH_MAX; depth++) {
      const node = await this.readNode(root);
      if (node.isLeaf) return root;
      if (node.count === 0) {
        NodeView.format(node.block, root, NodeKind.Leaf, this.valueType.valueBytes);
        return root;
      }
      if (node.count > 1) return root;
      // The child's one reference moves from this node to the tree's owner: no count changes.
      const child = node.childAt(0);
      this.tm.decRef(root);
      root = child;
    }
    return root;
  }
}

/**
 * The engine's range read: every entry from <= key < to, saying whether any node on its path
 * is referenced more than once. Sharing only spreads downwards, so the walk keeps the
 * shallowest shared depth on the current path instead of a flag per level.
 */
class RangeVisitor implements NodeVisitor {
  /** The depth of the shallowest shared node on the current path, or Infinity. */
  private sharedDepth = Infinity;

  constructor(
    private readonly tm: TransactionManager,
    private readonly from: number,
    private readonly to: number,
    private readonly visitEntry: RangeVisit,
  ) {}

  visit(node: NodeView, _first: number, _end: number, depth: number): WalkStep {
    // Set at this depth or below, the mark belongs to a subtree the walk has left.
    if (this.sharedDepth >= depth) this.sharedDepth = this.tm.refCount(node.blockIndex) > 1 ? depth : Infinity;
    if (!node.isLeaf) return;
    const sharedPath = this.sharedDepth <= depth;
    for (let i = node.lowerBound(this.from); i < node.count; i++) {
      const key = node.keyAt(i);
      if (key >= this.to) break;
      if (this.visitEntry(key, node.valueAt(i), sharedPath, node.blockIndex) === false) return "stop";
    }
  }
}

/**
 * Frees what only this tree references: a node referenced elsewhere (a snapshot's) loses one
 * reference and is not read; one referenced once is freed with its values, then its children
 * are walked. A live tree's nodes are referenced, so a node already freed is met again only
 * through a pointer that loops back up the tree.
 */
class DeleteVisitor implements NodeVisitor {
  constructor(
    private readonly tm: TransactionManager,
    private readonly valueType: ValueType,
  ) {}

  /** True when the node is shared and only lost a reference: nothing below it is walked. */
  keeps(blockIndex: number): boolean {
    const references = this.tm.refCount(blockIndex);
    if (references === 0) throw new CorruptBlockError(blockIndex, "loop", "is reached again after it was freed: the tree's pointers loop");
    if (references === 1) return false;
    this.tm.decRef(blockIndex);
    return true;
  }

  acceptChild(_parent: NodeView, _index: number, child: number): boolean {
    return !this.keeps(child);
  }

  async visit(node: NodeView): Promise<WalkStep> {
    // Copied out first: freeing a block made in this transaction drops it from the cache.
    const values: Buffer[] = [];
    if (node.isLeaf) for (let i = 0; i < node.count; i++) values.push(Buffer.from(node.valueAt(i)));
    this.tm.decRef(node.blockIndex);
    for (const value of values) await this.valueType.decrement(value);
  }
}

function childValue(blockIndex: number): Buffer {
  const value = Buffer.alloc(CHILD_VALUE_BYTES);
  writeU64(value, 0, blockIndex);
  return value;
}

/** Appending past the last key leaves the left node nearly full (sequential writes pack tightly). */
function splitPoint(node: NodeView, key: number): number {
  const count = node.count;
  if (key > node.keyAt(count - 1)) return count - 1;
  return count >>> 1;
}
