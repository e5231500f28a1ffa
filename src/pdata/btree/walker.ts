// The one walk of a B-tree, for every reader of one: the engine's range reads, deleting a
// tree, loading the volume table, `thinp check` and `thinp repair`. As in thin-provisioning-
// tools' btree_walker.rs, the walker does the descent (in key order, each child given the key
// range its parent allows it), bounds the depth, remembers the nodes it has walked and the
// ones that failed; a visitor says what a node means and what a failure costs. The engine's
// visitors throw on the first bad block, check's list it and go on, repair's salvage around
// it: one walk, three policies.
//
// A walker that remembers (check, repair) meets a node again either through sharing (a
// snapshot's subtree: `visitAgain`) or through a loop (the node is on its own path: a typed
// corruption error, kind "loop"). One that does not remember (the engine, which walks only
// what a request needs) catches a loop by depth alone.

import { CorruptBlockError } from "../../errors.js";
import { assert } from "../../io/assert.js";
import { TREE_DEPTH_MAX } from "../limits.js";
import { NodeView } from "./node.js";

export { TREE_DEPTH_MAX };
/** Exclusive upper bound of every key: keys are exact integers. */
export const KEY_END = Number.MAX_SAFE_INTEGER + 1;

/** Keys [first, end): what a node's parent allows below it. */
export interface KeyRange {
  first: number;
  end: number;
}

/** How the walk goes on after a visit: into the node's children (the default), past them, or not at all. */
export type WalkStep = void | "skip" | "stop";

export interface NodeVisitor {
  /**
   * A node read and verified, the first time this walker meets it, with the key range its
   * parent gives it and its depth (the root's is 0). For a leaf the visitor reads the entries.
   */
  visit(node: NodeView, first: number, end: number, depth: number): WalkStep | Promise<WalkStep>;
  /**
   * Called for each child of the node just visited, in order, before any of them is read:
   * false leaves that child's subtree unwalked (the visitor counts, refuses or frees it).
   */
  acceptChild?(parent: NodeView, index: number, child: number, key: number, depth: number): boolean;
  /** After a visited node's subtree is done (or skipped): for summaries built bottom-up. */
  leave?(node: NodeView, depth: number): void | Promise<void>;
  /** A node a remembering walker has walked before, met again through sharing: not walked again. */
  visitAgain?(blockIndex: number, first: number, end: number, depth: number): void | Promise<void>;
  /**
   * A subtree that cannot be walked: its root failed to read or verify, or loops (`keys` is
   * its range), or one entry of a node could not be decoded (`keys` is null and the error
   * names the node). Without this the walk throws the error: the engine's policy.
   */
  failed?(error: CorruptBlockError, keys: KeyRange | null, depth: number): void;
  /** The walk is over, having visited all it was asked to. */
  endWalk?(): void | Promise<void>;
}

/** Reads a block for a node and verifies it (type, self index, checksum); throws CorruptBlockError. */
export type NodeBlockReader = (blockIndex: number) => Promise<Buffer>;

/** A node's block if memory holds it (verified when it was read), else undefined; never reads. */
export type CachedNodeBlock = (blockIndex: number) => Buffer | undefined;

export class TreeWalker {
  /** Nodes walked (or being walked), by a walker that remembers. */
  private readonly seen: Set<number> | null;
  /** Nodes on the path being walked now: meeting one again is a loop. */
  private readonly onPath: Set<number> | null;
  readonly remembers: boolean;
  /** Nodes that could not be walked and why, by a walker that remembers; met again, they fail again without a read. */
  readonly failed = new Map<number, CorruptBlockError>();

  /**
   * `remember`: keep the nodes seen, across every walk of this walker, so a node met again
   * goes to `visitAgain` (check walks each shared subtree once; repair uses one walker per
   * tree, so a node met twice in one tree is refused). The engine's walkers do not remember:
   * they keep no state between walks and may walk concurrently.
   */
  constructor(
    private readonly readBlock: NodeBlockReader,
    remember = false,
  ) {
    this.remembers = remember;
    this.seen = remember ? new Set() : null;
    this.onPath = remember ? new Set() : null;
  }

  /**
   * Walks the tree at `root`, whose leaves hold `valueBytes`-byte values, visiting only the
   * nodes whose key range meets [from, to). Returns false when the visitor stopped it.
   */
  async walk(root: number, valueBytes: number, visitor: NodeVisitor, from = 0, to = KEY_END): Promise<boolean> {
    const walk = new Walk(this, visitor, valueBytes, from, to);
    if (!(await walk.node(root, 0, KEY_END, 0))) return false;
    if (visitor.endWalk) await visitor.endWalk();
    return true;
  }

  /**
   * The same walk for a visitor that fails on its first bad block and visits synchronously,
   * done without awaiting when every node it needs is in memory: `cached` answers each read.
   * Returns null, having stopped at once, when one is not: the visits made so far must then
   * be discarded, and the caller walks again with `walk`. Otherwise as `walk`.
   */
  walkCached(root: number, valueBytes: number, visitor: NodeVisitor, cached: CachedNodeBlock, from = 0, to = KEY_END): boolean | null {
    assert(
      !this.remembers &&
        visitor.failed === undefined &&
        visitor.acceptChild === undefined &&
        visitor.leave === undefined &&
        visitor.endWalk === undefined,
      "a cached walk is fail-fast and visits on the way down only",
    );
    const walk = new CachedWalk(visitor, cached, valueBytes, from, to);
    const finished = walk.node(root, 0, KEY_END, 0);
    return walk.missed ? null : finished;
  }

  /** @internal Walk's view of the walker's memory. */
  remembered(blockIndex: number): "failed" | "loop" | "seen" | null {
    if (this.failed.has(blockIndex)) return "failed";
    if (!this.seen!.has(blockIndex)) return null;
    return this.onPath!.has(blockIndex) ? "loop" : "seen";
  }

  /** @internal */
  async read(blockIndex: number, valueBytes: number): Promise<NodeView> {
    return NodeView.open(await this.readBlock(blockIndex), blockIndex, valueBytes);
  }

  /** @internal */
  enter(blockIndex: number): void {
    this.seen!.add(blockIndex);
    this.onPath!.add(blockIndex);
  }

  /** @internal */
  exit(blockIndex: number): void {
    this.onPath!.delete(blockIndex);
  }
}

/** One walk: what stays the same from node to node, so the descent passes only what changes. */
class Walk {
  constructor(
    private readonly walker: TreeWalker,
    private readonly visitor: NodeVisitor,
    private readonly valueBytes: number,
    private readonly from: number,
    private readonly to: number,
  ) {}

  /**
   * Walks one subtree; false when the visitor stopped the walk. A walk that throws (an I/O
   * error, a visitor's own error) ends there, and a remembering walker is not used again.
   */
  async node(blockIndex: number, first: number, end: number, depth: number): Promise<boolean> {
    const walker = this.walker;
    if (walker.remembers) {
      const memory = walker.remembered(blockIndex);
      if (memory === "failed") {
        const error = walker.failed.get(blockIndex);
        assert(error !== undefined, "a node remembered as failed has its error");
        return this.fail(error, first, end, depth, false);
      }
      // The node itself read well: the pointer to it is what is wrong, so it is not remembered as failed.
      if (memory === "loop")
        return this.fail(new CorruptBlockError(blockIndex, "loop", "the node is reached twice in one tree"), first, end, depth, false);
      if (memory === "seen") {
        if (this.visitor.visitAgain) await this.visitor.visitAgain(blockIndex, first, end, depth);
        return true;
      }
    }
    // Depth comes from pointers on disk: a loop among blocks that verify is corruption, not a bug here.
    if (depth >= TREE_DEPTH_MAX) {
      const error = new CorruptBlockError(
        blockIndex,
        "loop",
        `the tree is deeper than ${TREE_DEPTH_MAX} levels: its nodes point in a loop`,
      );
      return this.fail(error, first, end, depth, false);
    }
    let node: NodeView;
    try {
      node = await walker.read(blockIndex, this.valueBytes);
    } catch (error) {
      if (!(error instanceof CorruptBlockError)) throw error;
      return this.fail(error, first, end, depth);
    }
    if (walker.remembers) walker.enter(blockIndex);
    let step = this.visitor.visit(node, first, end, depth);
    if (step instanceof Promise) step = await step;
    if (step === "stop") return false;
    if (step !== "skip" && !node.isLeaf) {
      const finished = this.choosesChildren
        ? await this.chosenChildren(node, first, end, depth)
        : await this.childrenInRange(node, first, end, depth);
      if (!finished) return false;
    }
    if (walker.remembers) walker.exit(blockIndex);
    if (this.visitor.leave) await this.visitor.leave(node, depth);
    return true;
  }

  /** A visitor that takes failures or refuses children needs each node's children chosen before any is walked. */
  private get choosesChildren(): boolean {
    return this.visitor.acceptChild !== undefined || this.visitor.failed !== undefined;
  }

  /** The first child whose range meets [from, to). */
  private firstChildInRange(node: NodeView, first: number): number {
    return this.from > first && node.count > 0 ? node.childIndexFor(this.from) : 0;
  }

  /**
   * The children of an internal node whose ranges meet [from, to), each with the range its
   * neighbours' keys give it. They are chosen before any is walked, so what the visitor
   * counts or refuses of one node is decided in one place, and a bad entry costs only itself.
   */
  private async chosenChildren(node: NodeView, first: number, end: number, depth: number): Promise<boolean> {
    const count = node.count;
    let start: number;
    try {
      start = this.firstChildInRange(node, first);
    } catch (error) {
      if (!(error instanceof CorruptBlockError)) throw error;
      return this.fail(error, null, null, depth);
    }
    const chosen: number[] = []; // child, key, child, key, ...
    for (let i = start; i < count; i++) {
      let key: number;
      let child: number;
      try {
        key = node.keyAt(i);
        child = node.childAt(i);
      } catch (error) {
        if (!(error instanceof CorruptBlockError)) throw error;
        this.fail(error, null, null, depth);
        continue;
      }
      if (i > start && key >= this.to) break;
      if (this.visitor.acceptChild && !this.visitor.acceptChild(node, i, child, key, depth)) continue;
      chosen.push(child, key);
    }
    for (let j = 0; j < chosen.length; j += 2) {
      // The first child also holds keys below its own key (formats/metadata.md).
      const child = chosen[j];
      const key = chosen[j + 1];
      assert(child !== undefined && key !== undefined, "chosen holds child, key pairs");
      const childFirst = j === 0 ? first : key;
      // The next child's key ends this child's range; the last child ends where its parent does.
      const childEnd = chosen[j + 3] ?? end;
      if (!(await this.node(child, childFirst, childEnd, depth + 1))) return false;
    }
    return true;
  }

  /**
   * The same children for a visitor that fails on the first bad block (the engine's reads):
   * each is walked as it is found, with no list, since this is on the path of every read.
   */
  private async childrenInRange(node: NodeView, first: number, end: number, depth: number): Promise<boolean> {
    const count = node.count;
    const start = this.firstChildInRange(node, first);
    // The first child also holds keys below its own key (formats/metadata.md).
    let childFirst = first;
    for (let i = start; i < count; i++) {
      const child = node.childAt(i);
      const childEnd = i + 1 < count ? node.keyAt(i + 1) : end;
      if (!(await this.node(child, childFirst, childEnd, depth + 1))) return false;
      if (childEnd >= this.to) break;
      childFirst = childEnd;
    }
    return true;
  }

  /** Hands a failure to the visitor, remembering a failed node; throws when the visitor takes none. */
  private fail(error: CorruptBlockError, first: number | null, end: number | null, depth: number, remember = true): true {
    if (!this.visitor.failed) throw error;
    const keys = first === null || end === null ? null : { first, end };
    if (keys !== null && remember && this.walker.remembers) this.walker.failed.set(error.blockIndex, error);
    this.visitor.failed(error, keys, depth);
    return true;
  }
}

/**
 * Walk's fail-fast descent (`node` then `childrenInRange`, for a walker that does not
 * remember), synchronous, over blocks already in memory. Kept beside Walk so the two stay
 * the same walk: every check there that applies to a fail-fast visitor is made here too.
 */
class CachedWalk {
  /** A node the walk needed was not in memory: the walk stopped there. */
  missed = false;

  constructor(
    private readonly visitor: NodeVisitor,
    private readonly cached: CachedNodeBlock,
    private readonly valueBytes: number,
    private readonly from: number,
    private readonly to: number,
  ) {}

  node(blockIndex: number, first: number, end: number, depth: number): boolean {
    if (depth >= TREE_DEPTH_MAX) {
      throw new CorruptBlockError(blockIndex, "loop", `the tree is deeper than ${TREE_DEPTH_MAX} levels: its nodes point in a loop`);
    }
    const block = this.cached(blockIndex);
    if (block === undefined) {
      this.missed = true;
      return false;
    }
    const node = NodeView.open(block, blockIndex, this.valueBytes);
    const step = this.visitor.visit(node, first, end, depth);
    assert(!(step instanceof Promise), "a cached walk's visitor visits synchronously");
    if (step === "stop") return false;
    if (step !== "skip" && !node.isLeaf) {
      const count = node.count;
      const start = this.from > first && count > 0 ? node.childIndexFor(this.from) : 0;
      let childFirst = first;
      for (let i = start; i < count; i++) {
        const childEnd = i + 1 < count ? node.keyAt(i + 1) : end;
        if (!this.node(node.childAt(i), childFirst, childEnd, depth + 1)) return false;
        if (childEnd >= this.to) break;
        childFirst = childEnd;
      }
    }
    return true;
  }
}
