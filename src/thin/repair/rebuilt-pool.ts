// The new metadata file repair writes, built by the engine itself: a freshly formatted pool
// over the same data file, the salvaged volumes restored under their old ids, and each
// salvaged mapping inserted as the engine inserts any mapping. The space maps it commits
// therefore count exactly what the new trees reference, which is what fixes leaks and
// wrong counts. Tree nodes are not shared between snapshots any more; data blocks are,
// with a count of one per mapping that references them.

import { assert } from "../../io/assert.js";
import type { StorageFile } from "../../io/storage-file.js";
import { PoolMetadata, type PoolLineage, type VolumeState } from "../pool-metadata.js";
import type { VolumeRecord } from "../volume-record.js";

export class RebuiltPool {
  private constructor(
    private readonly metadata: PoolMetadata,
    private readonly dataFile: StorageFile,
  ) {}

  static async format(
    target: StorageFile,
    dataFile: StorageFile,
    dataBlockCount: number,
    dataPath: string,
    lineage: PoolLineage,
  ): Promise<RebuiltPool> {
    return new RebuiltPool(await PoolMetadata.format(target, dataBlockCount, dataPath, dataFile, undefined, lineage), dataFile);
  }

  get dataBlockCount(): number {
    return this.metadata.dataRefs.blockCount;
  }

  /** References to a data block from the mappings added so far. */
  dataReferences(dataBlock: number): number {
    return this.metadata.dataRefs.get(dataBlock);
  }

  get dataBlocksUsed(): number {
    return this.metadata.dataRefs.used;
  }

  get metadataBlocksUsed(): number {
    return this.metadata.tm.metadataRefs.used;
  }

  get transactionId(): number {
    return this.metadata.transactionId;
  }

  async hasName(name: string): Promise<boolean> {
    return (await this.metadata.findVolume(name)) !== null;
  }

  restoreVolume(id: number, record: Omit<VolumeRecord, "mappingRoot" | "mappedBlocks">): Promise<VolumeState> {
    this.metadata.reserveVolumeIds(id + 1);
    return this.metadata.restoreVolume(id, record);
  }

  /** A restored volume's size, once its mappings have said how large it must be. */
  setSize(volume: VolumeState, sizeBytes: number): void {
    volume.record.sizeBytes = sizeBytes;
    this.metadata.markDirty(volume);
  }

  /**
   * Maps `virtualBlock` of a restored volume to `dataBlock`, which gains one reference; at the
   * pool's snapshot time unless `time` keeps an older one.
   */
  async addMapping(volume: VolumeState, virtualBlock: number, dataBlock: number, time?: number): Promise<void> {
    const dataRefs = this.metadata.dataRefs;
    // A fresh pool: every data block is free until a salvaged mapping claims it.
    if (dataRefs.get(dataBlock) === 0) dataRefs.allocateAt(dataBlock);
    else dataRefs.inc(dataBlock);
    const before = volume.record.mappedBlocks;
    await this.metadata.mapBlock(volume, virtualBlock, dataBlock, time);
    assert(volume.record.mappedBlocks === before + 1, `virtual block ${virtualBlock} of volume ${volume.id} mapped twice`);
    // Bounds memory on big pools: blocks of this uncommitted transaction go to disk early.
    await this.metadata.tm.trimDirty();
  }

  commit(): Promise<void> {
    return this.metadata.commit(this.dataFile);
  }
}
