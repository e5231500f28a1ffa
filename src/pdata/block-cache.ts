// A bounded cache of metadata blocks. Clean blocks are evicted, oldest first, as soon as
// the cache is over its limit. Dirty blocks (written in this transaction, not yet on disk)
// stay until the transaction manager writes them out, which it does only between
// operations, so no operation ever holds a buffer that has left the cache.

import { assert } from "../io/assert.js";
import type { BlockType } from "./block-format.js";
import { CACHE_BLOCKS_MAX } from "./limits.js";

export { CACHE_BLOCKS_MAX };

export interface CachedBlock {
  block: Buffer;
  type: BlockType;
  dirty: boolean;
}

export class BlockCache {
  // A Map iterates in insertion order: re-inserting on use makes it an LRU list.
  private readonly entries = new Map<number, CachedBlock>();
  private dirtyCount = 0;

  constructor(private readonly capacityBlocks = CACHE_BLOCKS_MAX) {
    assert(capacityBlocks > 0, "cache capacity");
  }

  get size(): number {
    return this.entries.size;
  }

  get dirtyBlocks(): number {
    return this.dirtyCount;
  }

  get(blockIndex: number): CachedBlock | undefined {
    const entry = this.entries.get(blockIndex);
    if (entry) {
      this.entries.delete(blockIndex);
      this.entries.set(blockIndex, entry);
    }
    return entry;
  }

  put(blockIndex: number, entry: CachedBlock): void {
    const previous = this.entries.get(blockIndex);
    if (previous?.dirty) this.dirtyCount--;
    this.entries.delete(blockIndex);
    this.entries.set(blockIndex, entry);
    if (entry.dirty) this.dirtyCount++;
    this.evictClean();
  }

  markDirty(entry: CachedBlock): void {
    if (!entry.dirty) {
      entry.dirty = true;
      this.dirtyCount++;
    }
  }

  markClean(entry: CachedBlock): void {
    if (entry.dirty) {
      entry.dirty = false;
      this.dirtyCount--;
    }
  }

  drop(blockIndex: number): void {
    const entry = this.entries.get(blockIndex);
    if (entry?.dirty) this.dirtyCount--;
    this.entries.delete(blockIndex);
  }

  *dirtyEntries(): IterableIterator<[number, CachedBlock]> {
    for (const item of this.entries) if (item[1].dirty) yield item;
  }

  clear(): void {
    this.entries.clear();
    this.dirtyCount = 0;
  }

  private evictClean(): void {
    if (this.entries.size <= this.capacityBlocks) return;
    for (const [blockIndex, entry] of this.entries) {
      if (this.entries.size <= this.capacityBlocks) break;
      if (!entry.dirty) this.entries.delete(blockIndex);
    }
  }
}
