// In-memory reference counts for one space map (data blocks or metadata blocks).
// Counts up to 254 live in a byte per block; 255 means "see the overflow map". A bitset
// marks blocks that may be allocated: free now and free at the last commit, so a block
// freed in this transaction is not reused until the transaction commits (the committed
// metadata may still point at it).

import { BitSet } from "bitset";
import { assert } from "../io/assert.js";

export const COUNT_OVERFLOW = 255;

export class RefcountTable {
  private counts: Uint8Array;
  private readonly overflow = new Map<number, number>();
  private readonly allocatable: BitSet;
  private pendingFree: number[] = [];
  private readonly dirtyChunks = new Set<number>();
  /** An overflow entry was added, changed or dropped since the last `takeChanges`. */
  private overflowChanged = false;
  /**
   * Allocated for a write still in flight and not yet referenced by any tree. A commit
   * persists them as free, so a crash before the write's mapping commits leaks nothing.
   */
  private readonly provisional = new Set<number>();
  private usedBlocks = 0;
  private searchCursor = 0;

  constructor(
    private blockCountValue: number,
    /** Entries per persisted bitmap block: a change marks that chunk dirty. */
    private readonly chunkEntries: number,
  ) {
    this.counts = new Uint8Array(blockCountValue);
    this.allocatable = new BitSet();
    if (blockCountValue > 0) markAllocatable(this.allocatable, 0, blockCountValue - 1);
  }

  get blockCount(): number {
    return this.blockCountValue;
  }

  get used(): number {
    return this.usedBlocks;
  }

  get free(): number {
    return this.blockCountValue - this.usedBlocks;
  }

  /** Blocks a transaction could allocate now (free, and not freed in this transaction). */
  get allocatableCount(): number {
    return this.free - this.pendingFree.length;
  }

  get(block: number): number {
    // counts holds exactly blockCount entries, so a block out of range (or not an integer) reads undefined.
    const count = this.counts[block];
    assert(count !== undefined, `refcount of block ${block} of ${this.blockCountValue}`);
    if (count !== COUNT_OVERFLOW) return count;
    const overflowed = this.overflow.get(block);
    assert(overflowed !== undefined, "a count stored as overflowed has its entry in the overflow map");
    return overflowed;
  }

  /** Sets a count while loading a persisted map; no transaction bookkeeping. */
  load(block: number, count: number): void {
    assert(this.counts[block] === 0, `block ${block} loaded twice`);
    if (count === 0) return;
    this.store(block, count);
    this.usedBlocks++;
    this.allocatable.set(block, 0);
  }

  inc(block: number, by = 1): number {
    const before = this.get(block);
    assert(before > 0, `increment of free block ${block}: it must be allocated first`);
    assert(!this.provisional.has(block), `increment of block ${block} before its first mapping was confirmed`);
    this.store(block, before + by);
    return before + by;
  }

  dec(block: number): number {
    const before = this.get(block);
    assert(before > 0, `refcount of block ${block} would go below zero`);
    this.store(block, before - 1);
    if (before === 1) {
      this.usedBlocks--;
      this.pendingFree.push(block);
      this.provisional.delete(block);
    }
    return before - 1;
  }

  /** Takes a free block (count becomes 1), or returns null when none is allocatable. */
  allocate(): number | null {
    const block = this.findAllocatable(this.searchCursor) ?? this.findAllocatable(0);
    if (block === null) return null;
    this.allocatable.set(block, 0);
    assert(this.counts[block] === 0, `allocatable block ${block} has a count`);
    this.store(block, 1);
    this.usedBlocks++;
    this.searchCursor = block + 1;
    return block;
  }

  /** Like allocate, but the block counts as free in what a commit persists until `confirm`. */
  allocateProvisional(): number | null {
    const block = this.allocate();
    if (block !== null) this.provisional.add(block);
    return block;
  }

  /** The provisional block is now referenced: persist its count from the next commit on. */
  confirm(block: number): void {
    if (this.provisional.delete(block)) this.dirtyChunks.add(Math.floor(block / this.chunkEntries));
  }

  /** Takes a specific free block, used when formatting a fresh pool. */
  allocateAt(block: number): void {
    assert(this.allocatable.get(block) === 1 && this.counts[block] === 0, `block ${block} is not free`);
    this.allocatable.set(block, 0);
    this.store(block, 1);
    this.usedBlocks++;
  }

  /** The blocks freed in this transaction that are still free: what a commit may give back to the file system. */
  pendingFreeBlocks(): number[] {
    return this.pendingFree.filter((block) => this.counts[block] === 0);
  }

  /** Blocks freed in the transaction become reusable once it has committed. */
  releasePendingFrees(): void {
    for (const block of this.pendingFree) {
      if (this.counts[block] === 0) this.allocatable.set(block, 1);
    }
    this.pendingFree = [];
  }

  grow(newBlockCount: number): void {
    assert(newBlockCount >= this.blockCountValue, `space map shrink ${this.blockCountValue} -> ${newBlockCount}`);
    if (newBlockCount === this.blockCountValue) return;
    const counts = new Uint8Array(newBlockCount);
    counts.set(this.counts);
    this.counts = counts;
    assert(this.counts.length === newBlockCount, "counts holds one entry per block: get relies on it");
    markAllocatable(this.allocatable, this.blockCountValue, newBlockCount - 1);
    for (let chunk = Math.floor(this.blockCountValue / this.chunkEntries); chunk * this.chunkEntries < newBlockCount; chunk++) {
      this.dirtyChunks.add(chunk);
    }
    this.blockCountValue = newBlockCount;
  }

  /**
   * What changed since the last call, for a commit that writes only that: the chunks whose
   * counts were stored (in order), and whether the overflow list changed. Clears both.
   */
  takeChanges(): { chunks: number[]; overflowChanged: boolean } {
    const chunks = [...this.dirtyChunks].sort((a, b) => a - b);
    const overflowChanged = this.overflowChanged;
    this.dirtyChunks.clear();
    this.overflowChanged = false;
    return { chunks, overflowChanged };
  }

  /** Every chunk and the overflow list will be written whole, as for a table never persisted. */
  markAllDirty(): void {
    for (let chunk = 0; chunk * this.chunkEntries < this.blockCountValue; chunk++) this.dirtyChunks.add(chunk);
    this.overflowChanged = true;
  }

  /** Something changed that `takeChanges` has not yet handed out. */
  get hasChanges(): boolean {
    return this.dirtyChunks.size > 0 || this.overflowChanged;
  }

  /** The byte-per-block counts of one chunk as a commit persists them: provisional blocks read 0. */
  chunkBytes(chunk: number): Uint8Array {
    const start = chunk * this.chunkEntries;
    const end = Math.min(start + this.chunkEntries, this.blockCountValue);
    const counts = this.counts.subarray(start, end);
    const inChunk = [...this.provisional].filter((block) => block >= start && block < end);
    if (inChunk.length === 0) return counts;
    const persisted = Uint8Array.from(counts);
    for (const block of inChunk) persisted[block - start] = 0;
    return persisted;
  }

  overflowEntries(): [number, number][] {
    return [...this.overflow].sort((a, b) => a[0] - b[0]);
  }

  get overflowCount(): number {
    return this.overflow.size;
  }

  private store(block: number, count: number): void {
    if (count >= COUNT_OVERFLOW) {
      this.counts[block] = COUNT_OVERFLOW;
      this.overflow.set(block, count);
      this.overflowChanged = true;
    } else {
      this.counts[block] = count;
      if (this.overflow.delete(block)) this.overflowChanged = true;
    }
    this.dirtyChunks.add(Math.floor(block / this.chunkEntries));
  }

  private findAllocatable(from: number): number | null {
    const words = this.allocatable.data;
    const limit = this.blockCountValue;
    for (let wordIndex = from >>> 5; wordIndex * 32 < limit; wordIndex++) {
      // Past the bitset's last word no block is allocatable: the bits it does not hold are clear.
      const stored = words[wordIndex];
      if (stored === undefined) return null;
      let word = stored >>> 0;
      if (wordIndex === from >>> 5) word &= (~0 << (from & 31)) >>> 0;
      if (word === 0) continue;
      const bit = 31 - Math.clz32(word & -word);
      const block = wordIndex * 32 + bit;
      return block < limit ? block : null;
    }
    return null;
  }
}

/**
 * Sets bits first..last inclusive. bitset 5.3's setRange leaves the last 32-bit word
 * clear when `last` is its final bit (1 << 32 is 1 in JavaScript), so that word is
 * patched bit by bit; the result is checked, since a lost bit is a lost block.
 */
function markAllocatable(bits: BitSet, first: number, last: number): void {
  bits.setRange(first, last, 1);
  for (let block = Math.max(first, last - 31); block <= last; block++) bits.set(block, 1);
  assert(bits.get(first) === 1 && bits.get(last) === 1, `allocatable range ${first}..${last} not set`);
}
