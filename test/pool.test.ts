import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CorruptBlockError,
  FileExistsError,
  FileMissingError,
  InvalidNameError,
  InvalidSizeError,
  NoSuchVolumeError,
  NotAPoolError,
  OutOfRangeError,
  PoolFullError,
  PoolLockedError,
  ReadOnlyError,
  ShrinkBelowMappedError,
  VolumeExistsError,
} from "../src/errors.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { checkMetadataFile, checkPool } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";

const MiB = 1 << 20;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "thinp-pool-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function pattern(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 17 + (i >> 9)) & 0xff;
  return bytes;
}

async function memoryPool(sizeBytes = 64 * MiB) {
  const meta = new MemoryStorageFile("meta");
  const data = new MemoryStorageFile("data");
  const pool = await Pool.formatFiles(meta, data, { sizeBytes });
  return { meta, data, pool };
}

describe("pool files", () => {
  it("creates a sparse data file and reopens from the metadata file alone", async () => {
    const pool = await Pool.create(join(dir, "data.img"), join(dir, "meta.img"), { sizeBytes: 1024 * MiB });
    await pool.createVolume("base", 256 * MiB);
    await (await pool.volume("base")).write(5 * MiB, pattern(70000, 1));
    await pool.commit();
    await pool.close();
    const data = await stat(join(dir, "data.img"));
    expect(data.size).toBe(1024 * MiB);
    expect(data.blocks * 512).toBeLessThan(4 * MiB);
    const reopened = await Pool.open(join(dir, "meta.img"));
    expect((await (await reopened.volume("base")).read(5 * MiB, 70000)).equals(pattern(70000, 1))).toBe(true);
    expect(reopened.status().dataBlocksUsed).toBe(2);
    await reopened.close();
    expect((await checkPool(join(dir, "meta.img"))).clean).toBe(true);
  });

  it("refuses to overwrite existing files", async () => {
    await writeFile(join(dir, "data.img"), "precious");
    await expect(Pool.create(join(dir, "data.img"), join(dir, "meta.img"), { sizeBytes: MiB })).rejects.toThrow(FileExistsError);
    expect(await readFile(join(dir, "data.img"), "utf8")).toBe("precious");
  });

  it("names a missing metadata file, and a file that is not a pool", async () => {
    await expect(Pool.open(join(dir, "none.img"))).rejects.toThrow(FileMissingError);
    await writeFile(join(dir, "junk.img"), Buffer.alloc(100000, 0x41));
    await expect(Pool.open(join(dir, "junk.img"))).rejects.toThrow(NotAPoolError);
  });

  it("is owned by one opener at a time, which is named", async () => {
    const pool = await Pool.create(join(dir, "data.img"), join(dir, "meta.img"), { sizeBytes: MiB });
    const error = await Pool.open(join(dir, "meta.img")).catch((e) => e);
    expect(error).toBeInstanceOf(PoolLockedError);
    expect(error.message).toContain(String(process.pid));
    await pool.close();
    await (await Pool.open(join(dir, "meta.img"))).close();
  });

  it("is not blocked by a lock file an older thinp left beside the metadata", async () => {
    const pool = await Pool.create(join(dir, "data.img"), join(dir, "meta.img"), { sizeBytes: MiB });
    await pool.commit();
    await pool.close();
    await writeFile(join(dir, "meta.img.lock"), `${process.pid}\n`);
    await (await Pool.open(join(dir, "meta.img"))).close();
  });
});

describe("volumes", () => {
  it("validates names, sizes and uniqueness without changing anything", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", MiB);
    await expect(pool.createVolume("base", MiB)).rejects.toThrow(VolumeExistsError);
    await expect(pool.createVolume("-bad", MiB)).rejects.toThrow(InvalidNameError);
    await expect(pool.createVolume("a/b", MiB)).rejects.toThrow(InvalidNameError);
    await expect(pool.createVolume("x".repeat(129), MiB)).rejects.toThrow(/longer than 128/);
    await expect(pool.createVolume("odd", 1000)).rejects.toThrow(InvalidSizeError);
    await expect(pool.createVolume("huge", 2 ** 53)).rejects.toThrow(InvalidSizeError);
    await expect(pool.snapshot("nope", "snap")).rejects.toThrow(NoSuchVolumeError);
    await expect(pool.deleteVolume("nope")).rejects.toThrow(NoSuchVolumeError);
    expect((await pool.listVolumes()).map((v) => v.name)).toEqual(["base"]);
  });

  it("reads unwritten space as zeros without allocating", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", 8 * MiB);
    const volume = await pool.volume("base");
    expect((await volume.read(0, 8 * MiB)).every((b) => b === 0)).toBe(true);
    expect(pool.status().dataBlocksUsed).toBe(0);
  });

  it("rejects I/O beyond the end of the volume", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", MiB);
    const volume = await pool.volume("base");
    await expect(volume.read(MiB - 10, 11)).rejects.toThrow(OutOfRangeError);
    await expect(volume.write(MiB, Buffer.alloc(1))).rejects.toThrow(OutOfRangeError);
  });

  it("a first partial write fills the rest of its block with zeros", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", MiB);
    const volume = await pool.volume("base");
    await volume.write(100, Buffer.from("abc"));
    const block = await volume.read(0, DATA_BLOCK_BYTES);
    expect(block.subarray(100, 103).toString()).toBe("abc");
    expect(block.subarray(0, 100).every((b) => b === 0) && block.subarray(103).every((b) => b === 0)).toBe(true);
  });

  it("snapshot keeps the origin's blocks after the origin is overwritten", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", 4 * MiB);
    const base = await pool.volume("base");
    await base.write(0, pattern(2 * MiB, 1));
    await pool.snapshot("base", "snap");
    await base.write(1000, pattern(100000, 2));
    await base.discard(MiB, MiB);
    const snap = await pool.volume("snap");
    expect((await snap.read(0, 2 * MiB)).equals(pattern(2 * MiB, 1))).toBe(true);
    const usage = await pool.usage("snap");
    expect(usage.mappedBlocks).toBe(32);
    expect(usage.sharedBlocks).toBe(32 - 16 - 2);
  });

  it("snapshots of snapshots are writable to any depth", async () => {
    const { pool, meta } = await memoryPool();
    await pool.createVolume("v0", MiB);
    await (await pool.volume("v0")).write(0, pattern(MiB, 0));
    for (let depth = 1; depth <= 12; depth++) {
      await pool.snapshot(`v${depth - 1}`, `v${depth}`);
      await (await pool.volume(`v${depth}`)).write(depth * 1000, Buffer.from([depth]));
    }
    for (let depth = 0; depth <= 12; depth++) {
      const bytes = await (await pool.volume(`v${depth}`)).read(0, MiB);
      for (let d = 1; d <= 12; d++) expect(bytes[d * 1000]).toBe(d <= depth ? d : pattern(MiB, 0)[d * 1000]);
    }
    await pool.commit();
    expect((await checkMetadataFile(meta, "meta")).problems).toEqual([]);
  });

  it("a snapshot costs the same metadata whatever the origin's size", async () => {
    const { pool } = await memoryPool(256 * MiB);
    await pool.createVolume("small", MiB);
    await pool.createVolume("large", 64 * MiB);
    await (await pool.volume("small")).write(0, pattern(64 * 1024, 1));
    await (await pool.volume("large")).write(0, Buffer.alloc(64 * MiB, 1));
    await pool.commit();
    const cost = async (origin: string, name: string) => {
      const before = pool.status();
      await pool.snapshot(origin, name);
      const after = pool.status();
      return [after.metadataBlocksUsed! - before.metadataBlocksUsed!, after.dataBlocksUsed! - before.dataBlocksUsed!];
    };
    expect(await cost("large", "large-snap")).toEqual(await cost("small", "small-snap"));
  });

  it("a read-only snapshot refuses writes", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", MiB);
    await pool.snapshot("base", "frozen", { readOnly: true });
    const frozen = await pool.volume("frozen");
    expect(frozen.readOnly).toBe(true);
    await expect(frozen.write(0, Buffer.alloc(1))).rejects.toThrow(ReadOnlyError);
  });

  it("shrinking below mapped data is refused and says how far data reaches", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", 4 * MiB);
    await (await pool.volume("base")).write(3 * MiB, Buffer.alloc(10, 1));
    const error = await pool.resizeVolume("base", MiB).catch((e) => e);
    expect(error).toBeInstanceOf(ShrinkBelowMappedError);
    expect(error.message).toContain(String(3 * MiB + DATA_BLOCK_BYTES));
    await pool.resizeVolume("base", 8 * MiB);
    expect((await pool.volume("base")).sizeBytes).toBe(8 * MiB);
  });

  it("bytes past an old end read as zeros after shrinking and growing again", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", MiB);
    await (await pool.volume("base")).write(0, Buffer.alloc(DATA_BLOCK_BYTES, 9));
    await pool.resizeVolume("base", 4096);
    await pool.resizeVolume("base", MiB);
    const block = await (await pool.volume("base")).read(0, DATA_BLOCK_BYTES);
    expect(block.subarray(0, 4096).every((b) => b === 9)).toBe(true);
    expect(block.subarray(4096).every((b) => b === 0)).toBe(true);
  });
});

describe("a full pool", () => {
  it("fails writes that need a block, says used and total, keeps owned blocks writable, and recovers", async () => {
    const { pool, meta } = await memoryPool(8 * DATA_BLOCK_BYTES);
    await pool.createVolume("a", MiB);
    await pool.createVolume("b", MiB);
    const a = await pool.volume("a");
    await a.write(0, Buffer.alloc(8 * DATA_BLOCK_BYTES, 1));
    const b = await pool.volume("b");
    const error = await b.write(0, Buffer.alloc(10)).catch((e) => e);
    expect(error).toBeInstanceOf(PoolFullError);
    expect(error.message).toContain("8 of 8 data blocks");
    await a.write(100, Buffer.alloc(10, 2)); // owned: written in place
    await a.discard(0, 2 * DATA_BLOCK_BYTES);
    await b.write(0, Buffer.alloc(10, 3)); // room again once the discard's frees commit
    expect((await b.read(0, 10)).every((x) => x === 3)).toBe(true);
    await pool.commit();
    expect((await checkMetadataFile(meta, "meta")).problems).toEqual([]);
  });

  it("grows with resize-pool", async () => {
    const { pool } = await memoryPool(2 * DATA_BLOCK_BYTES);
    await pool.createVolume("a", MiB);
    await expect((await pool.volume("a")).write(0, Buffer.alloc(3 * DATA_BLOCK_BYTES))).rejects.toThrow(PoolFullError);
    await pool.resize(4 * DATA_BLOCK_BYTES);
    await (await pool.volume("a")).write(0, Buffer.alloc(3 * DATA_BLOCK_BYTES, 1));
    await expect(pool.resize(DATA_BLOCK_BYTES)).rejects.toThrow(/cannot shrink/);
  });
});

describe("concurrency", () => {
  it("racing writes to one unmapped block map it once and lose no update", async () => {
    const { pool, meta } = await memoryPool();
    await pool.createVolume("base", MiB);
    const volume = await pool.volume("base");
    await Promise.all(Array.from({ length: 64 }, (_, i) => volume.write(i * 1024, Buffer.alloc(1024, i + 1))));
    const block = await volume.read(0, DATA_BLOCK_BYTES);
    for (let i = 0; i < 64; i++) expect(block[i * 1024]).toBe(i + 1);
    expect(pool.status().dataBlocksUsed).toBe(1);
    await pool.commit();
    expect((await checkMetadataFile(meta, "meta")).problems).toEqual([]);
  });

  it("a snapshot during writes holds every write acknowledged before it and none after", async () => {
    const { pool } = await memoryPool(256 * MiB);
    await pool.createVolume("base", 16 * MiB);
    const base = await pool.volume("base");
    const acknowledged: { index: number; at: number }[] = [];
    let clock = 0;
    let snapshotAt = -1;
    const writes = Array.from({ length: 200 }, (_, index) =>
      base.write(index * 8192, Buffer.alloc(8192, (index % 250) + 1)).then(() => acknowledged.push({ index, at: clock++ })),
    );
    const snapshot = new Promise((resolve) => setTimeout(resolve, 1)).then(() =>
      pool.snapshot("base", "snap").then(() => (snapshotAt = clock++)),
    );
    await Promise.all([...writes, snapshot]);
    const snap = await pool.volume("snap");
    for (const { index, at } of acknowledged) {
      const byte = (await snap.read(index * 8192, 1))[0];
      if (at < snapshotAt) expect(byte, `write ${index} acknowledged before the snapshot`).toBe((index % 250) + 1);
      else expect(byte, `write ${index} acknowledged after the snapshot`).toBe(0);
    }
  });
});

describe("corrupt metadata", () => {
  it("check names a flipped block and reads through it fail naming it, never returning wrong data", async () => {
    const metaPath = join(dir, "meta.img");
    let pool = await Pool.create(join(dir, "data.img"), metaPath, { sizeBytes: 64 * MiB });
    await pool.createVolume("base", 32 * MiB);
    await (await pool.volume("base")).write(0, pattern(20 * MiB, 3));
    await pool.commit();
    await pool.close();
    // The mapping tree's root is named by the volume record; find a leaf via the checker's walk.
    const clean = await checkPool(metaPath);
    expect(clean.clean).toBe(true);
    pool = await Pool.open(metaPath);
    const leaf = await firstMappingLeaf(pool);
    await pool.close();
    const handle = await open(metaPath, "r+");
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, leaf * 4096 + 600);
    byte[0]! ^= 0x01;
    await handle.write(byte, 0, 1, leaf * 4096 + 600);
    await handle.close();

    const report = await checkPool(metaPath);
    expect(report.clean).toBe(false);
    expect(report.problems.some((p) => p.blockIndex === leaf && p.message.includes(`block ${leaf}`))).toBe(true);
    pool = await Pool.open(metaPath);
    const error = await (await pool.volume("base")).read(0, 20 * MiB).catch((e) => e);
    expect(error).toBeInstanceOf(CorruptBlockError);
    expect(error).toMatchObject({ kind: "checksum", blockIndex: leaf });
    expect(error.message).toContain(`metadata block ${leaf}`);
    // The pool carries on for what does not go through the bad block.
    expect((await pool.listVolumes()).length).toBe(1);
    await pool.close();
  });
});

async function firstMappingLeaf(pool: Pool): Promise<number> {
  let leaf = -1;
  await pool.transactions.change(async (metadata) => {
    const state = (await metadata.findVolume("base"))!;
    const { BTree } = await import("../src/pdata/btree/btree.js");
    const { plainValues } = await import("../src/pdata/btree/value-type.js");
    const tree = new BTree(metadata.tm, plainValues(8));
    await tree.forEachInRange(state.record.mappingRoot, 0, 1, (_k, _v, _s, leafIndex) => void (leaf = leafIndex));
  });
  expect(leaf).toBeGreaterThan(1);
  return leaf;
}

describe("crash after deleting a snapshot", () => {
  it("a write to a block the last commit still shares goes to a new block, so the committed snapshot survives a crash", async () => {
    const { pool, meta, data } = await memoryPool();
    await pool.createVolume("base", MiB);
    const base = await pool.volume("base");
    await base.write(0, Buffer.alloc(DATA_BLOCK_BYTES, 1));
    await pool.snapshot("base", "snap");
    await pool.commit();
    await pool.deleteVolume("snap"); // not committed: the last commit still has snap
    await base.write(0, Buffer.alloc(DATA_BLOCK_BYTES, 2));
    await data.sync(); // even if the data write reached the disk
    const crashed = await Pool.openFiles(meta.durableCopy(), data.durableCopy());
    const snap = await crashed.volume("snap");
    expect((await snap.read(0, DATA_BLOCK_BYTES)).every((b) => b === 1)).toBe(true);
  });
});

describe("extents", () => {
  it("tell owned blocks from blocks a write would copy, and unmapped ones from both", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("base", MiB);
    const base = await pool.volume("base");
    await base.write(0, Buffer.alloc(2 * DATA_BLOCK_BYTES, 1));
    await pool.snapshot("base", "snap");
    const snap = await pool.volume("snap");
    await snap.write(DATA_BLOCK_BYTES, Buffer.alloc(10, 2));
    expect(await snap.extents(0, MiB)).toEqual([
      { offset: 0, length: DATA_BLOCK_BYTES, mapped: true, copyOnWrite: true },
      { offset: DATA_BLOCK_BYTES, length: DATA_BLOCK_BYTES, mapped: true, copyOnWrite: false },
      { offset: 2 * DATA_BLOCK_BYTES, length: MiB - 2 * DATA_BLOCK_BYTES, mapped: false, copyOnWrite: false },
    ]);
  });
});

describe("metadata growth", () => {
  it("the metadata file grows by itself as mappings are added, and every commit succeeds", async () => {
    const { pool, meta } = await memoryPool(100_000 * DATA_BLOCK_BYTES);
    await pool.createVolume("big", 100_000 * DATA_BLOCK_BYTES);
    const initialBlocks = pool.status().metadataBlocksTotal;
    await pool.transactions.change(async (metadata) => {
      const state = (await metadata.findVolume("big"))!;
      for (let virtualBlock = 0; virtualBlock < 90_000; virtualBlock++) {
        // Mappings straight through the metadata layer: the data blocks' contents do not matter here.
        await metadata.mapBlock(state, virtualBlock, metadata.allocateDataBlock()!);
        if (virtualBlock % 10_000 === 0) await metadata.tm.trimDirty();
      }
    });
    await pool.commit();
    const status = pool.status();
    expect(status.metadataBlocksTotal).toBeGreaterThan(initialBlocks);
    expect(status.metadataBlocksUsed).toBeLessThan(status.metadataBlocksTotal);
    const report = await checkMetadataFile(meta, "meta");
    expect(report.problems).toEqual([]);
    expect(report.verified.mappings).toBe(90_000);
  });
});

describe("check with snapshots", () => {
  it("counts a snapshot's mappings through subtrees it shares with its origin", async () => {
    const { pool, meta } = await memoryPool();
    await pool.createVolume("a", 32 * MiB);
    await (await pool.volume("a")).write(0, Buffer.alloc(20 * MiB, 1)); // 320 mappings: a two-level tree
    await pool.snapshot("a", "b");
    await pool.snapshot("b", "c");
    await (await pool.volume("c")).write(0, Buffer.alloc(10, 2));
    await pool.commit();
    const report = await checkMetadataFile(meta, "meta");
    expect(report.problems).toEqual([]);
    expect(report.verified.mappings).toBe(3 * 320);
  });
});

describe("a commit while a write is in flight", () => {
  it("persists the write's new block as free until its mapping commits, so a crash leaks nothing", async () => {
    const { pool, meta, data } = await memoryPool();
    await pool.createVolume("base", MiB);
    await pool.commit();
    // A write between allocating its block and mapping it, as when a background commit runs
    // while the write's data is still going to the data file.
    const inFlight = await pool.transactions.change(async (metadata) => metadata.allocateDataBlock()!);
    await pool.commit();
    const crashed = meta.durableCopy();
    expect((await checkMetadataFile(crashed, "meta")).problems).toEqual([]);
    const reopened = await Pool.openFiles(crashed, data.durableCopy());
    expect(reopened.status().dataBlocksUsed).toBe(0);
    // Once mapped, the next commit persists it.
    await pool.transactions.change(async (metadata) => metadata.mapBlock((await metadata.findVolume("base"))!, 0, inFlight));
    await pool.commit();
    const report = await checkMetadataFile(meta.durableCopy(), "meta");
    expect(report.problems).toEqual([]);
    expect(report.verified.dataBlocksReferenced).toBe(1);
  });
});
