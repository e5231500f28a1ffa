// thinp repair: a damaged pool's metadata salvaged into a new, consistent file, on memory
// files, on real files, and through the built CLI.

import { copyFile, mkdir, readFile, rename, writeFile, open as openFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CorruptBlockError, FileExistsError, NotAPoolError, PoolLockedError } from "../src/errors.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import type { StorageFile } from "../src/io/storage-file.js";
import { BlockType, METADATA_BLOCK_BYTES, sealBlock, verifyBlock } from "../src/pdata/block-format.js";
import { NodeView } from "../src/pdata/btree/node.js";
import { loadSpaceMap, type SpaceMapRoot } from "../src/pdata/space-map-store.js";
import { checkMetadataFile, checkPool } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { MAPPING_VALUE_BYTES } from "../src/thin/mapping-value.js";
import { Pool } from "../src/thin/pool.js";
import { repairMetadataFile, repairPool, type RepairReport } from "../src/thin/repair.js";
import { decodeSuperblock } from "../src/thin/superblock.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";
import { holdPool } from "./support/cli-pool-holder.js";
import { SeededRandom } from "./support/random.js";

const MiB = 1 << 20;
/** Past one leaf's 254 mappings, so base's mapping tree has two levels. */
const BASE_MAPPED_BLOCKS = 300;

interface VolumeImage {
  name: string;
  sizeBytes: number;
  bytes: Buffer;
}

/** What a volume holds, read whole through the engine. */
async function readImages(pool: Pool): Promise<Map<string, VolumeImage>> {
  const images = new Map<string, VolumeImage>();
  for (const info of await pool.listVolumes()) {
    const bytes = await (await pool.volume(info.name)).read(0, info.sizeBytes);
    images.set(info.name, { name: info.name, sizeBytes: info.sizeBytes, bytes });
  }
  return images;
}

async function writeBlocks(pool: Pool, name: string, blocks: Iterable<number>, random: SeededRandom): Promise<void> {
  const volume = await pool.volume(name);
  for (const block of blocks) await volume.write(block * DATA_BLOCK_BYTES, random.bytes(DATA_BLOCK_BYTES));
}

/** Compared with Buffer.equals: a failing toEqual on megabytes makes the test runner's diff run out of memory. */
function expectSameImages(actual: Map<string, VolumeImage>, expected: Map<string, VolumeImage>): void {
  expect([...actual.keys()]).toEqual([...expected.keys()]);
  for (const [name, image] of expected) {
    const got = actual.get(name)!;
    expect(got.sizeBytes, `size of ${name}`).toBe(image.sizeBytes);
    expect(got.bytes.equals(image.bytes), `${name} holds what it held`).toBe(true);
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/**
 * base (two-level mapping tree), a snapshot of it that base then diverged from, another
 * volume with a read-only snapshot that shares all but one block: data blocks shared by
 * snapshots, tree nodes shared and unshared.
 */
async function populate(pool: Pool): Promise<void> {
  const random = new SeededRandom(0x7e9a1);
  await pool.createVolume("base", 20 * MiB);
  await writeBlocks(pool, "base", range(0, BASE_MAPPED_BLOCKS), random);
  await pool.commit();
  await pool.snapshot("base", "snap");
  await writeBlocks(pool, "base", range(0, 10), random);
  await pool.createVolume("other", 4 * MiB);
  await writeBlocks(pool, "other", range(20, 40), random);
  await pool.snapshot("other", "other-ro", { readOnly: true });
  await writeBlocks(pool, "other", [25], random);
  await pool.commit();
}

async function memoryPool() {
  const meta = new MemoryStorageFile("meta");
  const data = new MemoryStorageFile("data");
  const pool = await Pool.formatFiles(meta, data, { sizeBytes: 32 * MiB });
  await populate(pool);
  const images = await readImages(pool);
  const listing = await pool.listVolumes();
  await pool.close();
  return { meta, data, images, listing };
}

async function readBlock(file: StorageFile, blockIndex: number): Promise<Buffer> {
  const block = Buffer.alloc(METADATA_BLOCK_BYTES);
  await file.read(block, blockIndex * METADATA_BLOCK_BYTES);
  return block;
}

async function flipByte(file: StorageFile, blockIndex: number, offsetInBlock = 100): Promise<void> {
  const byte = Buffer.alloc(1);
  const position = blockIndex * METADATA_BLOCK_BYTES + offsetInBlock;
  await file.read(byte, position);
  byte[0] = byte[0]! ^ 0xff;
  await file.write(byte, position);
}

async function newestSuperblock(file: StorageFile) {
  const copies = [];
  for (const slot of [0, 1]) copies.push(decodeSuperblock(await readBlock(file, slot), slot, "meta"));
  return copies.sort((a, b) => b.transactionId - a.transactionId)[0]!;
}

/** Sets one count in a space map's bitmap and re-seals the block, as a bug in the engine might. */
async function setCount(file: StorageFile, root: SpaceMapRoot, countedBlock: number, count: number): Promise<void> {
  const reader = async (blockIndex: number, type: BlockType) => {
    const block = await readBlock(file, blockIndex);
    verifyBlock(block, type, blockIndex);
    return block;
  };
  const { layout } = await loadSpaceMap(root, reader);
  const location = layout.bitmapLocations[0]!;
  expect(countedBlock, "the test edits the first bitmap only").toBeLessThan(4064);
  const bitmap = await readBlock(file, location);
  bitmap[32 + countedBlock] = count;
  sealBlock(bitmap, BlockType.SpaceMapBitmap, location);
  await file.write(bitmap, location * METADATA_BLOCK_BYTES);
}

/** A mapping tree's root and, when it has two levels, its second leaf and the keys that leaf covers. */
async function secondLeafOf(meta: StorageFile, data: StorageFile, volumeName: string) {
  const pool = await Pool.openFiles(meta, data);
  const state = (await pool.transactions.read((metadata) => metadata.findVolume(volumeName)))!;
  await pool.close();
  const root = state.record.mappingRoot;
  const node = NodeView.open(await readBlock(meta, root), root, MAPPING_VALUE_BYTES);
  expect(node.isLeaf, `${volumeName}'s mapping tree has two levels`).toBe(false);
  return { root, leaf: node.childAt(1), first: node.keyAt(1), end: node.count > 2 ? node.keyAt(2) : Infinity };
}

async function expectRepairedPool(meta: StorageFile, data: StorageFile): Promise<Pool> {
  const check = await checkMetadataFile(meta, "repaired");
  expect(check.problems).toEqual([]);
  expect(check.clean).toBe(true);
  return Pool.openFiles(meta, data);
}

function volumeReport(report: RepairReport, name: string) {
  const volume = report.volumes.find((entry) => entry.name === name);
  expect(volume, `report names volume ${name}`).toBeDefined();
  return volume!;
}

describe("repair on memory files", () => {
  it("reclaims a leaked block and corrects a wrong count, reports both, and keeps every byte", async () => {
    const { meta, data, images, listing } = await memoryPool();
    const superblock = await newestSuperblock(meta);
    const before = await Pool.openFiles(meta.durableCopy("probe"), data);
    const dataRefs = before.transactions.inspect((metadata) => metadata.dataRefs);
    const leaked = range(0, dataRefs.blockCount).find((block) => dataRefs.get(block) === 0)!;
    const miscounted = range(0, dataRefs.blockCount).find((block) => dataRefs.get(block) === 1)!;
    const metadataRefs = before.transactions.inspect((metadata) => metadata.tm.metadataRefs);
    const leakedMetadata = range(2, metadataRefs.blockCount).find((block) => metadataRefs.get(block) === 0)!;
    await before.close();
    await setCount(meta, superblock.dataSpaceMap, leaked, 1);
    await setCount(meta, superblock.dataSpaceMap, miscounted, 3);
    await setCount(meta, superblock.metadataSpaceMap, leakedMetadata, 1);
    const damaged = await checkMetadataFile(meta, "meta");
    expect(damaged.clean).toBe(false);

    const output = new MemoryStorageFile("repaired");
    const report = await repairMetadataFile(meta, "meta", output, "repaired", data);

    expect(report.dataSpaceMap).toMatchObject({ compared: true, reclaimed: 1, reclaimedBlocks: [leaked], corrected: 1 });
    expect(report.dataSpaceMap.correctedBlocks).toEqual([{ blockIndex: miscounted, was: 3, now: 1 }]);
    expect(report.metadataSpaceMap).toMatchObject({ compared: true, reclaimed: 1, reclaimedBlocks: [leakedMetadata], corrected: 0 });
    expect(report.lostData).toBe(false);
    expect(report.volumesLost).toEqual([]);
    for (const volume of report.volumes) expect(volume).toMatchObject({ mappingsLost: 0, lostSubtrees: [], fixes: [] });
    const repaired = await expectRepairedPool(output, data);
    expect(await repaired.listVolumes()).toEqual(listing);
    expectSameImages(await readImages(repaired), images);
    // Snapshot sharing survives: one reference per volume mapping a block.
    expect(repaired.status().dataBlocksUsed).toBe(report.dataSpaceMap.blocksUsedBefore! - 1);
    expect((await repaired.usage("snap")).sharedBlocks).toBe(BASE_MAPPED_BLOCKS - 10);
    await repaired.close();
  });

  it("a corrupt mapping leaf costs only the mappings in it: every other one is kept, and the block and virtual blocks are named", async () => {
    const { meta, data, images, listing } = await memoryPool();
    // base's second leaf is still shared with snap (base diverged only in its first leaf).
    const { leaf, first, end } = await secondLeafOf(meta, data, "base");
    await flipByte(meta, leaf);

    const output = new MemoryStorageFile("repaired");
    const report = await repairMetadataFile(meta, "meta", output, "repaired", data);

    const lostBlocks = range(first, Math.min(end, BASE_MAPPED_BLOCKS));
    for (const name of ["base", "snap"]) {
      const volume = volumeReport(report, name);
      expect(volume.lostSubtrees).toEqual([
        { blockIndex: leaf, reason: expect.stringMatching(/checksum mismatch/), virtualBlocks: { first, end: 320 } },
      ]);
      expect(volume).toMatchObject({
        mappingsRecorded: BASE_MAPPED_BLOCKS,
        mappingsKept: BASE_MAPPED_BLOCKS - lostBlocks.length,
        mappingsLost: lostBlocks.length,
      });
    }
    for (const name of ["other", "other-ro"]) expect(volumeReport(report, name)).toMatchObject({ mappingsLost: 0, lostSubtrees: [] });
    expect(report.lostData).toBe(true);
    expect(report.dataSpaceMap.compared).toBe(false);
    // Blocks only the lost leaf mapped are free now; base's own copies of blocks 0..9 are not among them.
    expect(report.dataSpaceMap.freedWithLostMappings).toBe(lostBlocks.length);

    const repaired = await expectRepairedPool(output, data);
    const repairedListing = await repaired.listVolumes();
    expect(repairedListing.map(({ mappedBlocks: _mapped, ...rest }) => rest)).toEqual(
      listing.map(({ mappedBlocks: _mapped, ...rest }) => rest),
    );
    const after = await readImages(repaired);
    for (const [name, image] of images) {
      const expected = Buffer.from(image.bytes);
      if (name === "base" || name === "snap") expected.fill(0, first * DATA_BLOCK_BYTES, (first + lostBlocks.length) * DATA_BLOCK_BYTES);
      expect(after.get(name)!.bytes.equals(expected), `${name} holds what it held, zeros where mappings were lost`).toBe(true);
    }
    await repaired.close();
  });

  it("an unreadable volume table loses every volume, says so, and still writes a consistent empty pool", async () => {
    const { meta, data } = await memoryPool();
    const superblock = await newestSuperblock(meta);
    await flipByte(meta, superblock.volumeTableRoot);
    const output = new MemoryStorageFile("repaired");
    const report = await repairMetadataFile(meta, "meta", output, "repaired", data);
    expect(report.volumes).toEqual([]);
    expect(report.volumesLost).toEqual([
      {
        blockIndex: superblock.volumeTableRoot,
        reason: expect.stringMatching(/checksum/),
        volumeIds: { first: 0, end: Number.MAX_SAFE_INTEGER + 1 },
      },
    ]);
    expect(report.lostData).toBe(true);
    const repaired = await expectRepairedPool(output, data);
    expect(await repaired.listVolumes()).toEqual([]);
    expect(repaired.status().dataBlocksUsed).toBe(0);
    // Ids of the lost volumes are never handed out again.
    expect((await repaired.createVolume("fresh", MiB)).id).toBeGreaterThan(4);
    await repaired.close();
  });

  it("an unreadable name index or data space map costs nothing: both are rebuilt", async () => {
    const { meta, data, images } = await memoryPool();
    const superblock = await newestSuperblock(meta);
    await flipByte(meta, superblock.nameIndexRoot);
    await flipByte(meta, superblock.dataSpaceMap.indexHead);
    const output = new MemoryStorageFile("repaired");
    const report = await repairMetadataFile(meta, "meta", output, "repaired", data);
    expect(report.lostData).toBe(false);
    expect(report.notes).toEqual([
      expect.stringMatching(new RegExp(`name index is damaged at metadata block ${superblock.nameIndexRoot}\\b.*nothing is lost`)),
    ]);
    expect(report.dataSpaceMap).toMatchObject({
      compared: false,
      notComparedBecause: expect.stringMatching(/data space map is unreadable/),
      freedWithLostMappings: null,
    });
    const repaired = await expectRepairedPool(output, data);
    expectSameImages(await readImages(repaired), images);
    await repaired.close();
  });

  it("uses the older superblock copy when the newer is torn, and fails typed when both are unreadable", async () => {
    const { meta, data } = await memoryPool();
    const newest = await newestSuperblock(meta);
    const newestSlot = newest.transactionId % 2;
    await flipByte(meta, newestSlot);
    const report = await repairMetadataFile(meta, "meta", new MemoryStorageFile("repaired"), "repaired", data);
    expect(report.source).toMatchObject({ transactionId: newest.transactionId - 1, superblockSlot: 1 - newestSlot });
    expect(report.notes).toEqual([expect.stringMatching(new RegExp(`superblock copy ${newestSlot} is unreadable`))]);

    await flipByte(meta, 1 - newestSlot);
    await expect(repairMetadataFile(meta, "meta", new MemoryStorageFile("repaired"), "repaired", data)).rejects.toThrow(CorruptBlockError);
    await expect(repairMetadataFile(meta, "meta", new MemoryStorageFile("repaired"), "repaired", data)).rejects.toThrow(
      /both superblock copies are unreadable/,
    );
    const garbage = new MemoryStorageFile("garbage");
    await garbage.write(new SeededRandom(3).bytes(8 * METADATA_BLOCK_BYTES), 0);
    await expect(repairMetadataFile(garbage, "garbage", new MemoryStorageFile("repaired"), "repaired", data)).rejects.toThrow(
      NotAPoolError,
    );
  });
});

describe("repair on files", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  async function filePool() {
    const metaPath = path.join(dir, "meta.img");
    const pool = await Pool.create(path.join(dir, "data.img"), metaPath, { sizeBytes: 32 * MiB });
    await populate(pool);
    const images = await readImages(pool);
    await pool.close();
    return { metaPath, images };
  }

  /** As the repair report says: keep the original aside, move the copy over it. */
  async function putInPlace(copyPath: string, metaPath: string): Promise<void> {
    await rename(metaPath, `${metaPath}.old`);
    await rename(copyPath, metaPath);
  }

  async function expectPoolHolds(metaPath: string, images: Map<string, VolumeImage>): Promise<void> {
    expect((await checkPool(metaPath)).clean).toBe(true);
    const pool = await Pool.open(metaPath, { readOnly: true });
    try {
      expectSameImages(await readImages(pool), images);
    } finally {
      await pool.close();
    }
  }

  it("never changes the original without --in-place, writes <meta>.repaired, and refuses to overwrite it", async () => {
    const { metaPath, images } = await filePool();
    const original = await readFile(metaPath);
    const result = await repairPool(metaPath);
    expect(result).toMatchObject({ outputPath: `${metaPath}.repaired`, backupPath: null });
    expect((await readFile(metaPath)).equals(original)).toBe(true);
    await expect(Pool.open(`${metaPath}.repaired`, { readOnly: true })).rejects.toThrow(/not yet in place/);
    await putInPlace(`${metaPath}.repaired`, metaPath);
    await expectPoolHolds(metaPath, images);
    await rename(metaPath, `${metaPath}.repaired`);
    await rename(`${metaPath}.old`, metaPath);
    await expect(repairPool(metaPath)).rejects.toThrow(FileExistsError);
    expect((await readFile(metaPath)).equals(original)).toBe(true);
  });

  it("--output elsewhere names the data file absolutely until the copy is in place, then relative to it", async () => {
    const { metaPath, images } = await filePool();
    await mkdir(path.join(dir, "elsewhere"));
    const outputPath = path.join(dir, "elsewhere", "meta.img");
    await repairPool(metaPath, { outputPath });
    expect((await newestSuperblock(await fileAsStorage(outputPath))).dataPath).toBe(path.join(dir, "data.img"));
    await putInPlace(outputPath, metaPath);
    const placed = await Pool.open(metaPath);
    await placed.commit();
    await placed.close();
    const superblock = await newestSuperblock(await fileAsStorage(metaPath));
    expect(superblock).toMatchObject({ dataPath: "data.img", repairedCopy: false });
    await expectPoolHolds(metaPath, images);
  });

  it("--in-place replaces the metadata file and keeps the original, byte for byte, as <meta>.before-repair", async () => {
    const { metaPath, images } = await filePool();
    const original = await readFile(metaPath);
    const result = await repairPool(metaPath, { inPlace: true });
    expect(result).toMatchObject({ outputPath: metaPath, backupPath: `${metaPath}.before-repair` });
    expect((await readFile(`${metaPath}.before-repair`)).equals(original)).toBe(true);
    expect((await readFile(metaPath)).equals(original)).toBe(false);
    await expectPoolHolds(metaPath, images);
    // A second in-place repair would overwrite the backup: refused.
    await expect(repairPool(metaPath, { inPlace: true })).rejects.toThrow(FileExistsError);
  });

  it("refuses a pool another process holds, and leaves no output behind", async () => {
    const { metaPath } = await filePool();
    const holder = await holdPool(metaPath);
    try {
      await expect(repairPool(metaPath)).rejects.toThrow(PoolLockedError);
    } finally {
      await holder.release();
    }
    await expect(readFile(`${metaPath}.repaired`)).rejects.toThrow(/ENOENT/);
  });

  /** A real file as a StorageFile, read-only, for poking at its blocks. */
  async function fileAsStorage(filePath: string): Promise<StorageFile> {
    const bytes = await readFile(filePath);
    const file = new MemoryStorageFile(filePath);
    await file.write(bytes, 0);
    return file;
  }
});

describe("thinp repair through the CLI", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });

  beforeAll(() => {
    assertCliBuilt();
  });
  beforeEach(async () => {
    dir = await makeTempDir();
    const random = new SeededRandom(0xc11);
    await writeFile(path.join(dir, "base.bin"), random.bytes(2 * MiB));
    await writeFile(path.join(dir, "other.bin"), random.bytes(MiB));
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "16M"], cwd());
    await runCliOk(["create", "base", "--size", "4M"], cwd());
    await runCliOk(["import", "base", "base.bin"], cwd());
    await runCliOk(["create", "other", "--size", "4M"], cwd());
    await runCliOk(["import", "other", "other.bin"], cwd());
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  /** Flips a byte in the leaf holding `name`'s mappings (its tree is one leaf). */
  async function corruptMappingsOf(name: string): Promise<number> {
    const pool = await Pool.open(path.join(dir, "meta.img"), { readOnly: true });
    const root = (await pool.transactions.read((metadata) => metadata.findVolume(name)))!.record.mappingRoot;
    await pool.close();
    const handle = await openFile(path.join(dir, "meta.img"), "r+");
    try {
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, root * METADATA_BLOCK_BYTES + 100);
      await handle.write(Buffer.of(byte[0]! ^ 0xff), 0, 1, root * METADATA_BLOCK_BYTES + 100);
    } finally {
      await handle.close();
    }
    return root;
  }

  it("reports what it lost, exits 0, and the repaired file checks clean and exports the salvaged data", async () => {
    const leaf = await corruptMappingsOf("base");
    expect((await runCli(["check"], cwd())).exitCode).toBe(6);

    const result = await runCli(["repair"], cwd());
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain(`volume 'base' (id 1): kept 0 of 32 mappings, LOST 32`);
    expect(result.stdout).toMatch(
      new RegExp(
        `metadata block ${leaf} is unreadable \\(checksum mismatch .*\\): virtual blocks 0-63 lost their mappings and read as zeros`,
      ),
    );
    expect(result.stdout).toContain("volume 'other' (id 2): kept all 16 mappings");
    expect(result.stdout).toMatch(/^DATA WAS LOST: 32 mappings of 1 volume/m);
    expect(result.stdout).toMatch(/^result: 2 volumes, 16 mappings, .*checks clean$/m);

    expect(await runCliOk(["check", "--pool", "meta.img.repaired"], cwd())).toMatch(/^clean$/m);
    // The repaired copy is used once it is in place, as the report says.
    expect((await runCli(["export", "other", "other.raw", "--pool", "meta.img.repaired"], cwd())).exitCode).toBe(6);
    await rename(path.join(dir, "meta.img"), path.join(dir, "meta.img.old"));
    await copyFile(path.join(dir, "meta.img.repaired"), path.join(dir, "meta.img"));
    await runCliOk(["export", "other", "other.raw"], cwd());
    const exported = await readFile(path.join(dir, "other.raw"));
    expect(exported.subarray(0, MiB).equals(await readFile(path.join(dir, "other.bin")))).toBe(true);
    await runCliOk(["export", "base", "base.raw"], cwd());
    expect((await readFile(path.join(dir, "base.raw"))).equals(Buffer.alloc(4 * MiB))).toBe(true);

    const again = await runCli(["repair"], cwd());
    expect(again.exitCode).toBe(4);
    expect(again.stderr).toMatch(/meta\.img\.repaired already exists/);
  });

  it("--json gives the whole report; --in-place swaps the files and keeps a backup", async () => {
    const leaf = await corruptMappingsOf("other");
    const original = await readFile(path.join(dir, "meta.img"));
    const result = await runCli(["repair", "--in-place", "--json"], cwd());
    expect(result.exitCode).toBe(0);
    const parsed = JSON.parse(result.stdout);
    expect(parsed.backupPath).toBe(path.join(dir, "meta.img.before-repair"));
    expect(parsed.report.lostData).toBe(true);
    expect(parsed.report.volumes[1]).toMatchObject({
      name: "other",
      mappingsKept: 0,
      mappingsLost: 16,
      lostSubtrees: [{ blockIndex: leaf }],
    });
    expect((await readFile(path.join(dir, "meta.img.before-repair"))).equals(original)).toBe(true);
    expect(await runCliOk(["check"], cwd())).toMatch(/^clean$/m);
    expect(JSON.parse(await runCliOk(["list", "--json"], cwd())).volumes.map((v: { name: string }) => v.name)).toEqual(["base", "other"]);
  });

  it("refuses, exit 7, while another process holds the pool; exit 6 when there is no superblock to repair from", async () => {
    const holder = await holdPool(path.join(dir, "meta.img"));
    try {
      const locked = await runCli(["repair"], cwd());
      expect(locked.exitCode).toBe(7);
      expect(locked.stderr).toMatch(/^thinp: [^\n]*\n$/);
      expect(locked.stderr).toContain(`pool ${path.join(dir, "meta.img")} is in use by process ${holder.pid} `);
    } finally {
      await holder.release();
    }
    const handle = await openFile(path.join(dir, "meta.img"), "r+");
    await handle.write(Buffer.alloc(2 * METADATA_BLOCK_BYTES, 0x5a), 0, 2 * METADATA_BLOCK_BYTES, 0);
    await handle.close();
    const hopeless = await runCli(["repair"], cwd());
    expect(hopeless.exitCode).toBe(6);
    expect(hopeless.stderr).toMatch(/^thinp: .*meta\.img is not a thinp metadata file/);
    await expect(readFile(path.join(dir, "meta.img.repaired"))).rejects.toThrow(/ENOENT/);
    const conflicting = await runCli(["repair", "--in-place", "--output", "x.img"], cwd());
    expect(conflicting.exitCode).toBe(2);
  });
});
