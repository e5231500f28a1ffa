// Reading a metadata file that may be damaged, for repair. Every block is verified exactly
// as the engine verifies it (type, self index, checksum), so nothing read here is trusted
// more than the engine would trust it; what differs is that a failure costs only the part
// of the pool below the failed block instead of the whole operation.

import { CorruptBlockError, NotAPoolError } from "../../errors.js";
import { assert } from "../../io/assert.js";
import type { StorageFile } from "../../io/storage-file.js";
import { BlockType, METADATA_BLOCK_BYTES, verifyBlock } from "../../pdata/block-format.js";
import type { BlockReader } from "../../pdata/space-map-store.js";
import { SUPERBLOCK_SLOTS, decodeSuperblock, type Superblock } from "../superblock.js";

export interface ChosenSuperblock {
  superblock: Superblock;
  slot: number;
  /** What became of the other copy: its transaction id, or why it could not be read. */
  otherSlot: { slot: number; transactionId: number } | { slot: number; unreadable: string };
}

/**
 * The newest valid superblock, as opening the pool would choose it. The older copy is never
 * used even when the newer one's trees are damaged: blocks that only the older commit
 * reaches may have been reused since, and a reused block verifies as a valid block of the
 * wrong tree, so reading through it could return another volume's data.
 */
export async function chooseSuperblock(file: StorageFile, path: string): Promise<ChosenSuperblock> {
  const found: { slot: number; superblock?: Superblock; failure?: Error }[] = [];
  for (const slot of SUPERBLOCK_SLOTS) {
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await file.read(block, slot * METADATA_BLOCK_BYTES);
    try {
      found.push({ slot, superblock: decodeSuperblock(block, slot, path) });
    } catch (error) {
      if (!(error instanceof CorruptBlockError || error instanceof NotAPoolError)) throw error;
      found.push({ slot, failure: error });
    }
  }
  const valid = found.filter((entry) => entry.superblock !== undefined);
  if (valid.length === 0) {
    if (found.every((entry) => entry.failure instanceof NotAPoolError)) throw found[0]!.failure!;
    const reasons = found.map((entry) => `block ${entry.slot}: ${entry.failure!.message}`).join("; ");
    throw new CorruptBlockError(0, "bad-superblock", `both superblock copies are unreadable, so there is nothing to repair from (${reasons})`, path);
  }
  valid.sort((a, b) => b.superblock!.transactionId - a.superblock!.transactionId);
  const chosen = valid[0]!;
  const other = found.find((entry) => entry.slot !== chosen.slot)!;
  return {
    superblock: chosen.superblock!,
    slot: chosen.slot,
    otherSlot: other.superblock
      ? { slot: other.slot, transactionId: other.superblock.transactionId }
      : { slot: other.slot, unreadable: other.failure!.message },
  };
}

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
    for (const slot of SUPERBLOCK_SLOTS) this.references[slot]!++;
  }

  get blockCount(): number {
    return this.references.length;
  }

  readBlock: BlockReader = async (blockIndex, type) => {
    if (!this.isInside(blockIndex)) {
      throw new CorruptBlockError(blockIndex, "pointer-out-of-range", `reference outside the metadata file's ${this.blockCount} blocks`, this.path);
    }
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await this.file.read(block, blockIndex * METADATA_BLOCK_BYTES);
    verifyBlock(block, type, blockIndex);
    return block;
  };

  readNode(blockIndex: number): Promise<Buffer> {
    return this.readBlock(blockIndex, BlockType.BTreeNode);
  }

  /** Counts one reference; false (and nothing counted) for a pointer outside the file. */
  countReference(blockIndex: number): boolean {
    if (!this.isInside(blockIndex)) return false;
    this.references[blockIndex]!++;
    return true;
  }

  /** Counts one reference to a data block inside the pool from a leaf walked for the first time. */
  countDataReference(dataBlock: number): void {
    if (dataBlock < this.dataReferences.length) this.dataReferences[dataBlock]!++;
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
