// The entries in which two B-trees of one key space differ, found by walking both at once.
// Trees made by copy-on-write from one another (a volume and its snapshot) share every
// subtree neither changed, and a shared subtree is the same block in both: meeting one block
// at the head of both walks means everything below it is the same, and it is passed without
// being read. The cost is then the nodes on the paths to the changes, not the trees' size.
//
// Each side is a stack of what remains to be compared, in key order: whole subtrees not yet
// read (a block and the key range its parent gives it) and the rest of leaves read. At each step the
// heads of the two stacks are compared; a subtree is read (replaced by its children or
// entries) only when its keys may meet the other side's head. Of two unread subtrees the one
// spanning more keys is read first, so the walks descend level by level together and a
// subtree shared one level down meets itself at both heads. Two leaves at both heads are
// merged in one pass, comparing values in place.

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
  /** Stop after this many visits; `resumeAt` then says where to go on. */
  visitsMax?: number;
}

export interface TreeDiffCounts {
  nodesRead: number;
  /** Shared subtrees passed without a read. */
  subtreesSkipped: number;
  /** Set when `visitsMax` stopped the walk: the key after the last one visited. Null: the walk went to the end. */
  resumeAt: number | null;
}

interface Subtree {
  block: number;
  first: number;
  end: number;
  depth: number;
}
/** The entries [index, end) of a leaf read already, the head being `index`. */
interface LeafRun {
  node: NodeView;
  index: number;
  end: number;
}
type Pending = Subtree | LeafRun;

const isSubtree = (item: Pending): item is Subtree => "block" in item;

export async function diffTrees(
  readNode: (block: number) => Promise<NodeView>,
  leftRoot: number,
  rightRoot: number,
  visitEntry: DiffVisit,
  options: TreeDiffOptions = {},
): Promise<TreeDiffCounts> {
  const from = options.from ?? 0;
  const to = options.to ?? KEY_END;
  const visitShared = options.visitShared === true;
  const counts: TreeDiffCounts = { nodesRead: 0, subtreesSkipped: 0, resumeAt: null };
  const visitsMax = options.visitsMax ?? Infinity;
  let visits = 0;
  const visit: DiffVisit = (key, leftValue, rightValue) => {
    visitEntry(key, leftValue, rightValue);
    if (++visits >= visitsMax) counts.resumeAt = key + 1;
  };
  const left: Pending[] = [{ block: leftRoot, first: 0, end: KEY_END, depth: 0 }];
  const right: Pending[] = [{ block: rightRoot, first: 0, end: KEY_END, depth: 0 }];

  /** The node at a subtree's root, refused past the deepest a tree can be (a loop). */
  const readSubtree = async (subtree: Subtree): Promise<NodeView> => {
    if (subtree.depth >= TREE_DEPTH_MAX) {
      throw new CorruptBlockError(subtree.block, "loop", `the tree is deeper than ${TREE_DEPTH_MAX} levels: its nodes point in a loop`);
    }
    counts.nodesRead++;
    return readNode(subtree.block);
  };

  /** Replaces the subtree on top of `side` by what its node holds within [from, to), last first. */
  const expand = async (side: Pending[], subtree: Subtree, read?: NodeView): Promise<void> => {
    side.pop();
    const node = read ?? (await readSubtree(subtree));
    const count = node.count;
    if (node.isLeaf) {
      const index = from > 0 ? node.lowerBound(from) : 0;
      const end = to < KEY_END ? node.lowerBound(to) : count;
      if (index < end) side.push({ node, index, end });
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

  /**
   * Two internal nodes over the same key range, both at the heads: read both and pair their
   * children, passing over every child that is the same block over the same keys in both
   * without making anything of it; only the children that differ go on the stacks.
   */
  const expandBoth = async (a: Subtree, b: Subtree): Promise<void> => {
    const an = await readSubtree(a);
    const bn = await readSubtree(b);
    if (an.isLeaf || bn.isLeaf) {
      await expand(left, a, an);
      await expand(right, b, bn);
      return;
    }
    left.pop();
    right.pop();
    const l = new Children(an, a, from, to);
    const r = new Children(bn, b, from, to);
    const leftKept: Subtree[] = [];
    const rightKept: Subtree[] = [];
    let li = l.start;
    let ri = r.start;
    while (li < l.end && ri < r.end) {
      const lFirst = l.firstOf(li);
      const lEnd = l.endOf(li);
      const rFirst = r.firstOf(ri);
      const rEnd = r.endOf(ri);
      if (lFirst === rFirst && lEnd === rEnd && l.blockOf(li) === r.blockOf(ri)) {
        counts.subtreesSkipped++;
        li++;
        ri++;
      } else if (lEnd <= rFirst) leftKept.push(l.subtree(li++));
      else if (rEnd <= lFirst) rightKept.push(r.subtree(ri++));
      // Overlapping ranges that differ: both are compared, in key order.
      else if (lEnd <= rEnd) leftKept.push(l.subtree(li++));
      else rightKept.push(r.subtree(ri++));
    }
    while (li < l.end) leftKept.push(l.subtree(li++));
    while (ri < r.end) rightKept.push(r.subtree(ri++));
    for (let k = leftKept.length - 1; k >= 0; k--) left.push(leftKept[k]!);
    for (let k = rightKept.length - 1; k >= 0; k--) right.push(rightKept[k]!);
  };

  /** Visits the head entry of the leaf run on top of `side` as that side's alone, and moves past it. */
  const takeAlone = (side: Pending[], run: LeafRun, isLeft: boolean): void => {
    const key = run.node.keyAt(run.index);
    const value = run.node.valueAt(run.index);
    if (isLeft) visit(key, value, null);
    else visit(key, null, value);
    if (++run.index === run.end) side.pop();
  };

  /** Two leaves side by side: merged in one pass, entries that are the same bytes on both sides passed over. */
  const mergeLeaves = (a: LeafRun, b: LeafRun): void => {
    const an = a.node;
    const bn = b.node;
    while (a.index < a.end && b.index < b.end && counts.resumeAt === null) {
      const ak = an.keyAt(a.index);
      const bk = bn.keyAt(b.index);
      if (ak < bk) visit(ak, an.valueAt(a.index++), null);
      else if (bk < ak) visit(bk, null, bn.valueAt(b.index++));
      else {
        if (visitShared || !an.valueEquals(a.index, bn, b.index)) visit(ak, an.valueAt(a.index), bn.valueAt(b.index));
        a.index++;
        b.index++;
      }
    }
    if (a.index === a.end) left.pop();
    if (b.index === b.end) right.pop();
  };

  for (;;) {
    const a = left[left.length - 1];
    const b = right[right.length - 1];
    if ((a === undefined && b === undefined) || counts.resumeAt !== null) return counts;
    if (a === undefined || b === undefined) {
      // One tree is done: what remains of the other is its own.
      const [side, head] = a === undefined ? [right, b!] : [left, a];
      if (isSubtree(head)) await expand(side, head);
      else takeAlone(side, head, a !== undefined);
      continue;
    }
    if (isSubtree(a) && isSubtree(b)) {
      if (a.block === b.block && !visitShared) {
        left.pop();
        right.pop();
        counts.subtreesSkipped++;
      } else if (a.first === b.first && a.end === b.end && !visitShared) await expandBoth(a, b);
      else if (a.end <= b.first) await expand(left, a);
      else if (b.end <= a.first) await expand(right, b);
      else if (b.end - b.first > a.end - a.first) await expand(right, b);
      else await expand(left, a);
      continue;
    }
    if (!isSubtree(a) && !isSubtree(b)) {
      mergeLeaves(a, b);
      continue;
    }
    // An entry against a subtree. Every key left on a side is at least its head's first: an
    // entry below the other side's subtree is its own side's alone.
    if (isSubtree(b)) {
      const run = a as LeafRun;
      if (run.node.keyAt(run.index) < b.first) takeAlone(left, run, true);
      else await expand(right, b);
    } else {
      const subtree = a as Subtree;
      if (b.node.keyAt(b.index) < subtree.first) takeAlone(right, b, false);
      else await expand(left, subtree);
    }
  }
}

/**
 * The children of an internal node whose ranges meet [from, to), read by index, each with the
 * range its parent's keys give it: nothing is made of a child unless it is kept.
 */
class Children {
  readonly start: number;
  readonly end: number;
  private readonly count: number;

  constructor(
    private readonly node: NodeView,
    private readonly parent: Subtree,
    from: number,
    to: number,
  ) {
    this.count = node.count;
    this.start = from > parent.first && this.count > 0 ? node.childIndexFor(from) : 0;
    this.end = to < parent.end && this.count > 0 ? node.childIndexFor(to - 1) + 1 : this.count;
  }

  /** The first child also holds keys below its own key (formats/metadata.md). */
  firstOf(index: number): number {
    return index === 0 ? this.parent.first : this.node.keyAt(index);
  }

  endOf(index: number): number {
    return index + 1 < this.count ? this.node.keyAt(index + 1) : this.parent.end;
  }

  blockOf(index: number): number {
    return this.node.childAt(index);
  }

  subtree(index: number): Subtree {
    return { block: this.blockOf(index), first: this.firstOf(index), end: this.endOf(index), depth: this.parent.depth + 1 };
  }
}
