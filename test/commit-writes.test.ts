// A commit writes what changed, not what the pool holds: after one change in a pool whose
// metadata space map spans several bitmaps, the commit writes only the bitmaps whose counts
// changed, and every bitmap it leaves alone still holds the counts the new commit means.

import { beforeAll, describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { IoLog, RecordingStorageFile } from "../src/io/recording-storage-file.js";
import { BlockType, METADATA_BLOCK_BYTES, verifyBlock } from "../src/pdata/block-format.js";
import { loadSpaceMap, type SpaceMapRoot } from "../src/pdata/space-map-store.js";
import { BITMAP_ENTRIES } from "../src/pdata/space-map-format.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { Pool } from "../src/thin/pool.js";
import { SUPERBLOCK_SLOTS, decodeSuperblock, type Superblock } from "../src/thin/superblock.js";
import {
  MAPPED_VOLUME,
  METADATA_BITMAPS_MIN,
  SMALL_VOLUMES,
  buildManyBitmapsPool,
  smallVolumeName,
  type ManyBitmapsPool,
} from "./support/many-bitmaps-pool.js";

/** A mapping-tree leaf, the volume table's path, the two space maps' changed pieces, the superblock. */
const BLOCKS_WRITTEN_AFTER_ONE_CHANGE_MAX = 12;
/**
 * The chunks of the blocks the change frees, of those it allocates, and of the bitmaps it
 * replaces. The first commit after the build also replaces bitmaps the build left in one
 * chunk of their own; from the next commit on they sit among the blocks being allocated.
 */
const METADATA_BITMAPS_WRITTEN_FIRST_MAX = 3;
const METADATA_BITMAPS_WRITTEN_STEADY_MAX = 2;

let built: ManyBitmapsPool;
beforeAll(async () => {
  built = await buildManyBitmapsPool();
}, 60_000);

async function readBlock(file: MemoryStorageFile, blockIndex: number, type: BlockType): Promise<Buffer> {
  const block = Buffer.alloc(METADATA_BLOCK_BYTES);
  await file.read(block, blockIndex * METADATA_BLOCK_BYTES);
  verifyBlock(block, type, blockIndex);
  return block;
}

async function newestSuperblock(file: MemoryStorageFile): Promise<Superblock> {
  const copies = [];
  for (const slot of SUPERBLOCK_SLOTS) copies.push(decodeSuperblock(await readBlock(file, slot, BlockType.Superblock), slot, "meta"));
  return copies.sort((a, b) => b.transactionId - a.transactionId)[0]!;
}

async function loadMetadataMap(file: MemoryStorageFile, root: SpaceMapRoot) {
  return loadSpaceMap(root, (blockIndex, type) => readBlock(file, blockIndex, type));
}

interface CommitWrites {
  metaFile: MemoryStorageFile;
  /** The metadata file as this commit left it. */
  metaImage: MemoryStorageFile;
  before: Superblock;
  after: Superblock;
  /** Metadata blocks the commit wrote. */
  written: Set<number>;
}

/** Opens the built pool over recorded memory files and, for each change, makes it and commits. */
async function commitChanges(...changes: ((pool: Pool) => Promise<void>)[]): Promise<CommitWrites[]> {
  const metaFile = new MemoryStorageFile("meta", built.metaImage.clone());
  const dataFile = new MemoryStorageFile("data", built.dataImage.clone());
  const log = new IoLog();
  const pool = await Pool.openFiles(new RecordingStorageFile(metaFile, log, 0), new RecordingStorageFile(dataFile, log, 1));
  const commits: CommitWrites[] = [];
  try {
    for (const change of changes) {
      const before = await newestSuperblock(metaFile);
      await change(pool);
      log.operations.splice(0);
      await pool.commit();
      const written = log.operations.flatMap((op) => (op.kind === "write" && op.fileId === 0 ? [op.position / METADATA_BLOCK_BYTES] : []));
      commits.push({
        metaFile,
        metaImage: new MemoryStorageFile("meta", metaFile.pages.clone()),
        before,
        after: await newestSuperblock(metaFile),
        written: new Set(written),
      });
    }
  } finally {
    await pool.close();
  }
  return commits;
}

/** Chunks of the metadata space map the commit gave a new bitmap; asserts every other chunk kept its block and counts. */
async function rewrittenChunks({ metaImage: metaFile, before, after, written }: CommitWrites): Promise<number[]> {
  expect(after.transactionId).toBe(before.transactionId + 1);
  const old = await loadMetadataMap(metaFile, before.metadataSpaceMap);
  const now = await loadMetadataMap(metaFile, after.metadataSpaceMap);
  const rewritten = now.layout.bitmapLocations.flatMap((location, chunk) => (written.has(location) ? [chunk] : []));
  for (let chunk = 0; chunk < now.layout.bitmapLocations.length; chunk++) {
    if (rewritten.includes(chunk)) continue;
    expect(now.layout.bitmapLocations[chunk]).toBe(old.layout.bitmapLocations[chunk]);
    for (let block = chunk * BITMAP_ENTRIES; block < Math.min((chunk + 1) * BITMAP_ENTRIES, old.table.blockCount); block++) {
      if (now.table.get(block) !== old.table.get(block)) expect.fail(`block ${block}'s count changed in chunk ${chunk}, left alone`);
    }
  }
  return rewritten;
}

const writeTo = (name: string, offset: number) => async (pool: Pool) => {
  const volume = await pool.volume(name);
  await volume.write(offset, Buffer.alloc(4096, 7));
};

describe("a commit after one change in a pool of many metadata bitmaps", () => {
  it("writes only the metadata bitmaps whose counts changed, and a bounded number of blocks", async () => {
    const [first, second] = await commitChanges(
      writeTo(smallVolumeName(SMALL_VOLUMES - 1), 0),
      writeTo(smallVolumeName(SMALL_VOLUMES - 2), 65536),
    );
    const bitmapCount = Math.ceil(first!.after.metadataSpaceMap.blockCount / BITMAP_ENTRIES);
    expect(bitmapCount).toBeGreaterThanOrEqual(METADATA_BITMAPS_MIN);
    expect((await rewrittenChunks(first!)).length).toBeLessThanOrEqual(METADATA_BITMAPS_WRITTEN_FIRST_MAX);
    expect((await rewrittenChunks(second!)).length).toBeLessThanOrEqual(METADATA_BITMAPS_WRITTEN_STEADY_MAX);
    for (const commit of [first!, second!]) {
      expect(commit.written.size).toBeLessThanOrEqual(BLOCKS_WRITTEN_AFTER_ONE_CHANGE_MAX);
      expect((await checkMetadataFile(commit.metaImage, "meta")).problems).toEqual([]);
    }
  });

  it("a write to a volume with mappings and a snapshot commits in few blocks and checks clean", async () => {
    const [commit] = await commitChanges(writeTo(MAPPED_VOLUME, 5 * 65536));
    await rewrittenChunks(commit!);
    expect(commit!.written.size).toBeLessThanOrEqual(BLOCKS_WRITTEN_AFTER_ONE_CHANGE_MAX);
    expect((await checkMetadataFile(commit!.metaImage, "meta")).problems).toEqual([]);
  });
});
