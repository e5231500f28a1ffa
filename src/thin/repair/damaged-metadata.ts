// Reading a metadata file that may be damaged, for repair. Every block is read through the
// engine's own reader (pdata/block-reader.ts: range, type, self index, checksum), so nothing
// read here is trusted more than the engine would trust it; what differs is that a failure
// costs only the part of the pool below the failed block instead of the whole operation.

import { assert } from "../../io/assert.js";
import { countOne } from "../../io/checked-index.js";
import type { StorageFile } from "../../io/storage-file.js";
import { BlockType } from "../../pdata/block-format.js";
import { readVerifiedBlock, type VerifiedBlockReader } from "../../pdata/block-reader.js";
import { SUPERBLOCK_SLOTS, type Superblock } from "../superblock.js";

/**
 * Verified block reads from the damaged file, and the references to each metadata and data
 * block found while walking it, counted as `thinp check` counts them (a leaf shared by
 * snapshots counts its data blocks once), so the old space maps can be compared with what
 * the old trees actually use.
 */
export class DamagedMetadata {
  readonly references: Uint32Array;
  readonly dataReferences: Uint32Array;
  private readonly visited: Uint8Array;

  constructor(
    private readonly file: StorageFile,
    readonly path: string,
    readonly superblock: Superblock,
  ) {
    const blockCount = superblock.metadataSpaceMap.blockCount;
    this.references = new Uint32Array(blockCount);
    this.visited = new Uint8Array(blockCount);
    this.dataReferences = new Uint32Array(superblock.dataSpaceMap.blockCount);
    for (const slot of SUPERBLOCK_SLOTS)
      countOne(this.references, slot, "a superblock that decodes has its pointers above both slots, so the file holds them");
  }

  get blockCount(): number {
    return this.references.length;
  }

  readBlock: VerifiedBlockReader = (blockIndex, type) => readVerifiedBlock(this.file, blockIndex, type, this.blockCount, this.path);

  readNode(blockIndex: number): Promise<Buffer> {
    return this.readBlock(blockIndex, BlockType.BTreeNode);
  }

  /** Counts one reference; false (and nothing counted) for a pointer outside the file. */
  countReference(blockIndex: number): boolean {
    if (!this.isInside(blockIndex)) return false;
    countOne(this.references, blockIndex, "isInside checked the pointer");
    return true;
  }

  /** Counts one reference to a data block inside the pool from a leaf walked for the first time. */
  countDataReference(dataBlock: number): void {
    if (dataBlock < this.dataReferences.length) countOne(this.dataReferences, dataBlock, "checked against the pool's size");
  }

  /** True the first time a node is reached through any tree: only then are its children counted. */
  markVisited(blockIndex: number): boolean {
    assert(this.isInside(blockIndex), `visit of block ${blockIndex} outside the file`);
    const first = this.visited[blockIndex] === 0;
    this.visited[blockIndex] = 1;
    return first;
  }

  private isInside(blockIndex: number): boolean {
    return Number.isSafeInteger(blockIndex) && blockIndex >= SUPERBLOCK_SLOTS.length && blockIndex < this.blockCount;
  }
}
