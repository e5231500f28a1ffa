// Walks one B-tree of a damaged metadata file and hands over every entry that can still be
// trusted, in key order. A node that fails verification costs the keys below it and
// nothing else; an entry whose key breaks the tree's order (out of its parent's range, or
// not above the last key handed over) is refused, so a key reached twice through a damaged
// tree is handed over once, and the walk never loops: a node met twice in one tree, or
// deeper than any real tree, is refused too.

import { CorruptBlockError } from "../../errors.js";
import { KEY_END, TreeWalker, type KeyRange as WalkedKeyRange, type NodeVisitor } from "../../pdata/btree/walker.js";
import type { NodeView } from "../../pdata/btree/node.js";
import type { DamagedMetadata } from "./damaged-metadata.js";

export { KEY_END };

/** Keys [first, end) that a refused subtree covered, by its parent's keys; null when the parent's keys were bad too. */
export type KeyRange = WalkedKeyRange | null;

export interface LostSubtree {
  blockIndex: number;
  reason: string;
  keys: KeyRange;
}

export interface RefusedEntry {
  key: number | null;
  /** The node that held it. */
  blockIndex: number;
  reason: string;
}

export interface TreeDamage {
  lostSubtrees: LostSubtree[];
  refusedEntries: RefusedEntry[];
}

/** `firstVisit` is false for a leaf already walked through another tree (a snapshot's shared leaf). */
export type EntryVisitor = (key: number, value: Buffer, leafIndex: number, firstVisit: boolean) => void | Promise<void>;

/**
 * Walks the tree at `root` (whose reference the caller has counted), calling `visit` for each
 * trusted entry in increasing key order; returns what was refused and why.
 */
export async function salvageTree(metadata: DamagedMetadata, root: number, valueBytes: number, visit: EntryVisitor): Promise<TreeDamage> {
  // One walker a tree: a node met twice in one tree is refused, while a subtree that a
  // snapshot shares is walked again for each volume, since each gets its own mappings.
  const walker = new TreeWalker((blockIndex) => metadata.readNode(blockIndex), true);
  const salvage = new Salvage(metadata, visit);
  await walker.walk(root, valueBytes, salvage);
  return salvage.damage;
}

/** Repair's policy: a failure costs the subtree below it, reported with the keys it covered. */
class Salvage implements NodeVisitor {
  readonly damage: TreeDamage = { lostSubtrees: [], refusedEntries: [] };
  private lastKey = -1;
  /** Of the node just visited, for its children: met for the first time in any tree, its range, its last child key. */
  private firstVisit = false;
  private low = 0;
  private high = KEY_END;
  private previousChildKey = -1;

  constructor(
    private readonly metadata: DamagedMetadata,
    private readonly visitEntry: EntryVisitor,
  ) {}

  async visit(node: NodeView, first: number, end: number): Promise<void> {
    this.firstVisit = this.metadata.markVisited(node.blockIndex);
    if (node.isLeaf) return this.leaf(node, first, end);
    this.low = first;
    this.high = end;
    this.previousChildKey = -1;
  }

  acceptChild(parent: NodeView, index: number, child: number, key: number): boolean {
    // Counted as `thinp check` counts: every child pointer of a node, once per node.
    if (this.firstVisit && !this.metadata.countReference(child)) {
      this.lose(child, `child ${index} of node ${parent.blockIndex} points outside the metadata file`, null);
      return false;
    }
    if (key <= this.previousChildKey || key < this.low || key >= this.high) {
      this.lose(
        child,
        `its key ${key} in node ${parent.blockIndex} is out of order or outside the node's range [${this.low}, ${this.high})`,
        null,
      );
      return false;
    }
    this.previousChildKey = key;
    return true;
  }

  visitAgain(blockIndex: number, first: number, end: number): void {
    this.lose(blockIndex, "the node is reached twice in one tree", { first, end });
  }

  failed(error: CorruptBlockError, keys: KeyRange): void {
    this.lose(error.blockIndex, error.reason, keys);
  }

  private async leaf(node: NodeView, low: number, high: number): Promise<void> {
    for (let i = 0; i < node.count; i++) {
      const key = this.keyOf(node, i);
      if (key === null) continue;
      const refusal = this.orderRefusal(key, low, high);
      if (refusal !== null) {
        this.damage.refusedEntries.push({ key, blockIndex: node.blockIndex, reason: refusal });
        continue;
      }
      this.lastKey = key;
      await this.visitEntry(key, node.valueAt(i), node.blockIndex, this.firstVisit);
    }
  }

  private keyOf(node: NodeView, index: number): number | null {
    try {
      return node.keyAt(index);
    } catch (error) {
      if (!(error instanceof CorruptBlockError)) throw error;
      this.damage.refusedEntries.push({ key: null, blockIndex: node.blockIndex, reason: `entry ${index}: ${error.reason}` });
      return null;
    }
  }

  private orderRefusal(key: number, low: number, high: number): string | null {
    if (key < low || key >= high) return `key outside its node's range [${low}, ${high})`;
    if (key <= this.lastKey) return `key not above the previous key ${this.lastKey} (a duplicate, or out of order)`;
    return null;
  }

  private lose(blockIndex: number, reason: string, keys: KeyRange): void {
    this.damage.lostSubtrees.push({ blockIndex, reason, keys });
  }
}
