// The entries in which two B-trees of one key space differ, found by walking both at once.
// Trees made by copy-on-write from one another (a volume and its snapshot) share every
// subtree neither changed, and a shared subtree is the same block in both: meeting one block
// at the head of both walks means everything below it is the same, and it is passed without
// being read. The cost is then the nodes on the paths to the changes, not the trees' size.
//
// Each side is a stack of what remains to be compared, in key order: whole subtrees not yet
// read (a block and the key range its parent gives it) and leaf entries. At each step the
// heads of the two stacks are compared; a subtree is read (replaced by its children or
// entries) only when its keys may meet the other side's head. Of two unread subtrees the one
// spanning more keys is read first, so the walks descend level by level together and a
// subtree shared one level down meets itself at both heads.

import { CorruptBlockError } from "../../errors.js";
import { TREE_DEPTH_MAX } from "../limits.js";
import type { NodeView } from "./node.js";
import { KEY_END } from "./walker.js";

/** An entry in one tree or both whose subtree the two do not share; `left`/`right` is null where that tree lacks the key. */
export type DiffVisit = (key: number, left: Buffer | null, right: Buffer | null) => void;

export interface TreeDiffOptions {
  /** Keys [from, to) only. */
  from?: number;
  to?: number;
  /** Read shared subtrees too, so every entry of both trees is visited (for a listing of what is the same). */
  visitShared?: boolean;
}

export interface TreeDiffCounts {
  nodesRead: number;
  /** Shared subtrees passed without a read. */
  subtreesSkipped: number;
}

interface Subtree {
  block: number;
  first: number;
  end: number;
  depth: number;
}
interface Entry {
  key: number;
  value: Buffer;
}
type Pending = Subtree | Entry;

const isSubtree = (item: Pending): item is Subtree => "block" in item;

export async function diffTrees(
  readNode: (block: number) => Promise<NodeView>,
  leftRoot: number,
  rightRoot: number,
  visit: DiffVisit,
  options: TreeDiffOptions = {},
): Promise<TreeDiffCounts> {
  const from = options.from ?? 0;
  const to = options.to ?? KEY_END;
  const counts: TreeDiffCounts = { nodesRead: 0, subtreesSkipped: 0 };
  const left: Pending[] = [{ block: leftRoot, first: 0, end: KEY_END, depth: 0 }];
  const right: Pending[] = [{ block: rightRoot, first: 0, end: KEY_END, depth: 0 }];

  /** Replaces the subtree on top of `side` by what its node holds within [from, to), last first. */
  const expand = async (side: Pending[], subtree: Subtree): Promise<void> => {
    side.pop();
    if (subtree.depth >= TREE_DEPTH_MAX) {
      throw new CorruptBlockError(subtree.block, "loop", `the tree is deeper than ${TREE_DEPTH_MAX} levels: its nodes point in a loop`);
    }
    const node = await readNode(subtree.block);
    counts.nodesRead++;
    const count = node.count;
    if (node.isLeaf) {
      for (let i = count - 1; i >= 0; i--) {
        const key = node.keyAt(i);
        if (key >= from && key < to) side.push({ key, value: node.valueAt(i) });
      }
      return;
    }
    for (let i = count - 1; i >= 0; i--) {
      // The first child also holds keys below its own key (formats/metadata.md).
      const first = i === 0 ? subtree.first : node.keyAt(i);
      const end = i + 1 < count ? node.keyAt(i + 1) : subtree.end;
      if (end <= from || first >= to) continue;
      side.push({ block: node.childAt(i), first, end, depth: subtree.depth + 1 });
    }
  };

  /** Takes the entry on top of `side`. */
  const take = (side: Pending[]): void => void side.pop();

  for (;;) {
    const a = left[left.length - 1];
    const b = right[right.length - 1];
    if (a === undefined && b === undefined) return counts;
    if (a === undefined || b === undefined) {
      // One tree is done: what remains of the other is its own.
      const [side, head] = a === undefined ? [right, b!] : [left, a];
      if (isSubtree(head)) await expand(side, head);
      else {
        take(side);
        if (a === undefined) visit(head.key, null, head.value);
        else visit(head.key, head.value, null);
      }
      continue;
    }
    if (isSubtree(a) && isSubtree(b)) {
      if (a.block === b.block && !options.visitShared) {
        take(left);
        take(right);
        counts.subtreesSkipped++;
      } else if (a.end <= b.first) await expand(left, a);
      else if (b.end <= a.first) await expand(right, b);
      else if (b.end - b.first > a.end - a.first) await expand(right, b);
      else await expand(left, a);
      continue;
    }
    if (!isSubtree(a) && !isSubtree(b)) {
      if (a.key < b.key) {
        take(left);
        visit(a.key, a.value, null);
      } else if (b.key < a.key) {
        take(right);
        visit(b.key, null, b.value);
      } else {
        take(left);
        take(right);
        visit(a.key, a.value, b.value);
      }
      continue;
    }
    // An entry against a subtree. Every key left on a side is at least its head's first: an
    // entry below the other side's subtree is its own side's alone.
    if (isSubtree(b)) {
      const entry = a as Entry;
      if (entry.key < b.first) {
        take(left);
        visit(entry.key, entry.value, null);
      } else await expand(right, b);
    } else {
      const subtree = a as Subtree;
      if (b.key < subtree.first) {
        take(right);
        visit(b.key, null, b.value);
      } else await expand(left, subtree);
    }
  }
}
