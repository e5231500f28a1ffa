// A pool whose metadata space map spans several bitmaps (more than 4064 × 4 metadata
// blocks), built quickly through the metadata layer: thousands of small volumes, each with
// its own mapping-tree root, plus one volume with mappings and a snapshot sharing them.
// Tests that a commit writes only what changed, and the crash states of such a commit, start
// from its durable images.

import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import { SparsePages } from "../../src/io/sparse-pages.js";
import { BITMAP_ENTRIES } from "../../src/pdata/space-map-format.js";
import { DATA_BLOCK_BYTES } from "../../src/thin/limits.js";
import { PoolMetadata } from "../../src/thin/pool-metadata.js";

/** Each small volume costs about one metadata block (its root, its share of the tables). */
export const SMALL_VOLUMES = 14_000;
export const SMALL_VOLUMES_PER_COMMIT = 2000;
export const MAPPED_VOLUME = "mapped";
export const MAPPED_BLOCKS = 3000;
export const SNAPSHOT_VOLUME = "mapped-snap";
export const POOL_DATA_BLOCKS = 65_536;
/** The metadata space map must need at least this many bitmaps for the tests to mean anything. */
export const METADATA_BITMAPS_MIN = 4;

export interface ManyBitmapsPool {
  /** The durable images after the last commit: clone them before use. */
  metaImage: SparsePages;
  dataImage: SparsePages;
  metadataBlocks: number;
}

export function smallVolumeName(index: number): string {
  return `small-${index}`;
}

export async function buildManyBitmapsPool(): Promise<ManyBitmapsPool> {
  const metaImage = SparsePages.empty();
  const dataImage = SparsePages.empty();
  const metaFile = new MemoryStorageFile("meta", metaImage);
  const dataFile = new MemoryStorageFile("data", dataImage);
  await dataFile.truncate(POOL_DATA_BLOCKS * DATA_BLOCK_BYTES);
  const metadata = await PoolMetadata.format(metaFile, POOL_DATA_BLOCKS, "data", dataFile);
  const mapped = await metadata.createVolume(MAPPED_VOLUME, 2 * MAPPED_BLOCKS * DATA_BLOCK_BYTES, 0);
  for (let block = 0; block < MAPPED_BLOCKS; block++) await metadata.mapBlock(mapped, block, metadata.allocateDataBlock()!);
  await metadata.snapshot(mapped, SNAPSHOT_VOLUME, false, 0);
  await metadata.commit(dataFile);
  for (let index = 0; index < SMALL_VOLUMES; index++) {
    await metadata.createVolume(smallVolumeName(index), 1 << 30, 0);
    await metadata.tm.trimDirty();
    if ((index + 1) % SMALL_VOLUMES_PER_COMMIT === 0) await metadata.commit(dataFile);
  }
  await metadata.commit(dataFile);
  const metadataBlocks = metadata.tm.metadataBlockCount;
  if (Math.ceil(metadataBlocks / BITMAP_ENTRIES) < METADATA_BITMAPS_MIN) {
    throw new Error(`the pool's metadata file has ${metadataBlocks} blocks: too few bitmaps`);
  }
  return { metaImage: metaImage.clone(), dataImage: dataImage.clone(), metadataBlocks };
}
