// Shadow paging over the metadata file. A block that the last commit can reach is never
// written in place: `shadow` copies it to a fresh block first. Blocks allocated in this
// transaction with a single reference are written in place. Only `commit` (in
// PoolMetadata.commit in src/thin/pool-metadata.ts) makes a transaction durable, by
// flipping the superblock.

import { CorruptBlockError, MetadataFullError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { StorageFile } from "../io/storage-file.js";
import { BlockCache, type CachedBlock } from "./block-cache.js";
import { BlockType, METADATA_BLOCK_BYTES, blockTypeName, sealBlock } from "./block-format.js";
import { readVerifiedBlock, requireBlockInFile } from "./block-reader.js";
import {
  DIRTY_BLOCKS_MAX,
  METADATA_BLOCKS_MAX,
  METADATA_GROWTH_BLOCKS_MIN,
  METADATA_GROWTH_FILE_DIVISOR,
  METADATA_RESERVE_BLOCKS,
  METADATA_WRITE_BATCH_BLOCKS,
} from "./limits.js";
import { RefcountTable } from "./refcount-table.js";

// Their home is limits.ts; these names stay for the modules that import them from here.
export { DIRTY_BLOCKS_MAX, METADATA_BLOCKS_MAX, METADATA_GROWTH_BLOCKS_MIN, METADATA_RESERVE_BLOCKS };

export interface ShadowResult {
  blockIndex: number;
  block: Buffer;
  /** The original was shared: its children gained a parent and need their counts raised. */
  incrementChildren: boolean;
}

export class TransactionManager {
  readonly cache: BlockCache;
  private readonly newInTransaction = new Set<number>();

  constructor(
    readonly file: StorageFile,
    readonly metadataRefs: RefcountTable,
    cacheBlocks?: number,
  ) {
    this.cache = new BlockCache(cacheBlocks);
  }

  get metadataBlockCount(): number {
    return this.metadataRefs.blockCount;
  }

  async read(blockIndex: number, type: BlockType): Promise<Buffer> {
    const cached = this.cache.get(blockIndex);
    if (cached) {
      // The pointer that led here came off the disk: landing on a cached block of another
      // type is the corruption verifyBlock reports for one read from the file.
      if (cached.type !== type) {
        throw new CorruptBlockError(
          blockIndex,
          "wrong-type",
          `expected a ${blockTypeName(type)} block, found type ${blockTypeName(cached.type)}`,
        );
      }
      return cached.block;
    }
    const block = await readVerifiedBlock(this.file, blockIndex, type, this.metadataRefs.blockCount);
    this.cache.put(blockIndex, { block, type, dirty: false });
    return block;
  }

  /** A fresh zeroed block with one reference, writable until commit. */
  newBlock(type: BlockType, fromReserve = false): { blockIndex: number; block: Buffer } {
    const blockIndex = fromReserve ? this.metadataRefs.allocate() : this.allocateMetadataBlock();
    assert(blockIndex !== null, "metadata reserve exhausted: ensureAllocatable was not called first");
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    this.newInTransaction.add(blockIndex);
    this.cache.put(blockIndex, { block, type, dirty: true });
    return { blockIndex, block };
  }

  async shadow(blockIndex: number, type: BlockType): Promise<ShadowResult> {
    this.requireInFile(blockIndex);
    const count = this.metadataRefs.get(blockIndex);
    assert(count > 0, `shadow of free block ${blockIndex}`);
    if (count === 1 && this.newInTransaction.has(blockIndex)) {
      const block = await this.read(blockIndex, type);
      // It is about to change, so it is dirty again if writeOut wrote it early. read() left it
      // in the cache, unless it was evicted at once (the cache over its limit with every other
      // block dirty): then it goes back in as dirty, which no eviction takes.
      const entry = this.cache.get(blockIndex);
      if (entry !== undefined) this.cache.markDirty(entry);
      else this.cache.put(blockIndex, { block, type, dirty: true });
      return { blockIndex, block, incrementChildren: false };
    }
    const original = await this.read(blockIndex, type);
    const copy = this.newBlock(type);
    original.copy(copy.block);
    this.decRef(blockIndex);
    return { blockIndex: copy.blockIndex, block: copy.block, incrementChildren: count > 1 };
  }

  incRef(blockIndex: number): void {
    this.metadataRefs.inc(blockIndex);
  }

  /** Returns the count left; at zero the block is free from the next transaction on. */
  decRef(blockIndex: number): number {
    const left = this.metadataRefs.dec(blockIndex);
    if (left === 0 && this.newInTransaction.has(blockIndex)) {
      // Never reachable from a commit, so its contents need never reach the disk.
      this.cache.drop(blockIndex);
    }
    return left;
  }

  refCount(blockIndex: number): number {
    this.requireInFile(blockIndex);
    return this.metadataRefs.get(blockIndex);
  }

  private requireInFile(blockIndex: number): void {
    requireBlockInFile(blockIndex, this.metadataRefs.blockCount);
  }

  isNewInTransaction(blockIndex: number): boolean {
    return this.newInTransaction.has(blockIndex);
  }

  /** Called between operations: bounds memory by writing out uncommitted blocks early. */
  async trimDirty(): Promise<void> {
    if (this.cache.dirtyBlocks > DIRTY_BLOCKS_MAX) await this.writeDirtyBlocks();
  }

  /** Writes every dirty block to its place; none is reachable from the committed superblock. */
  async writeDirtyBlocks(): Promise<void> {
    const pending: [number, CachedBlock][] = [...this.cache.dirtyEntries()];
    pending.sort((a, b) => a[0] - b[0]);
    for (const [blockIndex, entry] of pending) {
      assert(this.newInTransaction.has(blockIndex), `dirty block ${blockIndex} is live in the last commit`);
      sealBlock(entry.block, entry.type, blockIndex);
    }
    for (let start = 0; start < pending.length; start += METADATA_WRITE_BATCH_BLOCKS) {
      await Promise.all(
        pending
          .slice(start, start + METADATA_WRITE_BATCH_BLOCKS)
          .map(([blockIndex, entry]) => this.file.write(entry.block, blockIndex * METADATA_BLOCK_BYTES)),
      );
    }
    for (const [, entry] of pending) this.cache.markClean(entry);
  }

  /** After the superblock is durable: this transaction's blocks become shared history. */
  endTransaction(): void {
    this.newInTransaction.clear();
    this.metadataRefs.releasePendingFrees();
  }

  /** Ensures at least `blockCount` blocks can be allocated, growing the file if need be. */
  ensureAllocatable(blockCount: number): void {
    if (this.metadataRefs.allocatableCount >= blockCount) return;
    const current = this.metadataRefs.blockCount;
    const wanted = current + Math.max(METADATA_GROWTH_BLOCKS_MIN, Math.ceil(current / METADATA_GROWTH_FILE_DIVISOR), blockCount * 2);
    const target = Math.min(wanted, METADATA_BLOCKS_MAX);
    if (target - current + this.metadataRefs.allocatableCount < blockCount) {
      throw new MetadataFullError(METADATA_BLOCKS_MAX);
    }
    this.metadataRefs.grow(target);
  }

  private allocateMetadataBlock(): number {
    // The reserve keeps room for the space maps a commit must write.
    this.ensureAllocatable(METADATA_RESERVE_BLOCKS + 1);
    const blockIndex = this.metadataRefs.allocate();
    assert(blockIndex !== null, "metadata allocation after ensureAllocatable");
    return blockIndex;
  }
}
