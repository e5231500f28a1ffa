// Walks one B-tree of a damaged metadata file and hands over every entry that can still be
// trusted, in key order. A node that fails verification costs the keys below it and
// nothing else; an entry whose key breaks the tree's order (out of its parent's range, or
// not above the last key handed over) is refused, so a key reached twice through a damaged
// tree is handed over once, and the walk never loops: a node met twice in one tree, or
// deeper than any real tree, is refused too.

import { CorruptBlockError } from "../../errors.js";
import { NodeView } from "../../pdata/btree/node.js";
import type { DamagedMetadata } from "./damaged-metadata.js";

/** Deeper than any tree the engine builds (its own bound): a loop in a damaged tree. */
const DEPTH_MAX = 16;
/** Exclusive upper bound of every key: keys are exact integers. */
export const KEY_END = Number.MAX_SAFE_INTEGER + 1;

/** Keys [first, end) that a refused subtree covered, by its parent's keys; null when the parent's keys were bad too. */
export type KeyRange = { first: number; end: number } | null;

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
  const walk = new TreeWalk(metadata, valueBytes, visit);
  await walk.node(root, 0, KEY_END, 0);
  return walk.damage;
}

class TreeWalk {
  readonly damage: TreeDamage = { lostSubtrees: [], refusedEntries: [] };
  private readonly inThisTree = new Set<number>();
  private lastKey = -1;

  constructor(
    private readonly metadata: DamagedMetadata,
    private readonly valueBytes: number,
    private readonly visit: EntryVisitor,
  ) {}

  async node(blockIndex: number, low: number, high: number, depth: number): Promise<void> {
    const keys = { first: low, end: high };
    if (depth > DEPTH_MAX) return this.lose(blockIndex, `the tree is deeper than ${DEPTH_MAX} levels here`, keys);
    if (this.inThisTree.has(blockIndex)) return this.lose(blockIndex, "the node is reached twice in one tree", keys);
    this.inThisTree.add(blockIndex);
    let node: NodeView;
    try {
      node = NodeView.open(await this.metadata.readNode(blockIndex), blockIndex, this.valueBytes);
    } catch (error) {
      if (!(error instanceof CorruptBlockError)) throw error;
      return this.lose(blockIndex, error.reason, keys);
    }
    const firstVisit = this.metadata.markVisited(blockIndex);
    if (node.isLeaf) await this.leaf(node, low, high, firstVisit);
    else await this.internal(node, low, high, depth, firstVisit);
  }

  private async leaf(node: NodeView, low: number, high: number, firstVisit: boolean): Promise<void> {
    for (let i = 0; i < node.count; i++) {
      const key = this.keyOf(node, i);
      if (key === null) continue;
      const refusal = this.orderRefusal(key, low, high);
      if (refusal !== null) {
        this.damage.refusedEntries.push({ key, blockIndex: node.blockIndex, reason: refusal });
        continue;
      }
      this.lastKey = key;
      await this.visit(key, node.valueAt(i), node.blockIndex, firstVisit);
    }
  }

  private async internal(node: NodeView, low: number, high: number, depth: number, firstVisit: boolean): Promise<void> {
    const children: { child: number; key: number }[] = [];
    let previousKey = -1;
    for (let i = 0; i < node.count; i++) {
      let child: number;
      let key: number;
      try {
        child = node.childAt(i);
        key = node.keyAt(i);
      } catch (error) {
        if (!(error instanceof CorruptBlockError)) throw error;
        this.lose(node.blockIndex, `entry ${i}: ${error.reason}`, null);
        continue;
      }
      // Counted as `thinp check` counts: every child pointer of a node, once per node.
      if (firstVisit && !this.metadata.countReference(child)) {
        this.lose(child, `child ${i} of node ${node.blockIndex} points outside the metadata file`, null);
        continue;
      }
      if (key <= previousKey || key < low || key >= high) {
        this.lose(child, `its key ${key} in node ${node.blockIndex} is out of order or outside the node's range [${low}, ${high})`, null);
        continue;
      }
      previousKey = key;
      children.push({ child, key });
    }
    for (let i = 0; i < children.length; i++) {
      // The first child also holds keys below its own key (see formats/metadata.md).
      const childLow = i === 0 ? low : children[i]!.key;
      const childHigh = i + 1 < children.length ? children[i + 1]!.key : high;
      await this.node(children[i]!.child, childLow, childHigh, depth + 1);
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
