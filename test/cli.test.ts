// The CLI end to end, run as a user would run it: the built dist/cli/main.js in
// a scratch directory, one process per command.

import { open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, seededBytes } from "./support/cli-run.js";
import { findCorruptibleBlock } from "./support/cli-corrupt.js";

const MiB = 1024 * 1024;
const BLOCK_BYTES = 65536;
const BASE_SEED = 0x5eed0001;
const WEB1_SEED = 0x5eed0002;

interface Piece {
  offset: number;
  bytes: Buffer;
}

/** Compares a file with an image that is zero except for `pieces`, a chunk at a time so 256 MiB stays cheap. */
async function expectImage(filePath: string, sizeBytes: number, pieces: readonly Piece[]): Promise<void> {
  expect((await stat(filePath)).size).toBe(sizeBytes);
  const chunkBytes = 8 * MiB;
  const handle = await open(filePath, "r");
  try {
    const actual = Buffer.alloc(chunkBytes);
    for (let chunkStart = 0; chunkStart < sizeBytes; chunkStart += chunkBytes) {
      const length = Math.min(chunkBytes, sizeBytes - chunkStart);
      const expected = Buffer.alloc(length);
      for (const piece of pieces) {
        const from = Math.max(piece.offset, chunkStart);
        const to = Math.min(piece.offset + piece.bytes.length, chunkStart + length);
        if (from < to) piece.bytes.copy(expected, from - chunkStart, from - piece.offset, to - piece.offset);
      }
      const { bytesRead } = await handle.read(actual, 0, length, chunkStart);
      expect(bytesRead).toBe(length);
      // Buffer.equals keeps a mismatch report short; name the chunk so it can be found.
      expect(actual.subarray(0, length).equals(expected), `${filePath} differs in the 8 MiB chunk at ${chunkStart}`).toBe(true);
    }
  } finally {
    await handle.close();
  }
}

describe("thinp end to end: pool, volumes, snapshot, import, export, delete, check", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  const baseData = seededBytes(8 * MiB, BASE_SEED);
  const web1Data = seededBytes(64 * 1024, WEB1_SEED);

  async function status(): Promise<{ dataBlocksUsed: number; dataBlocksTotal: number; dataBlockBytes: number }> {
    return JSON.parse(await runCliOk(["status", "--json"], cwd()));
  }

  beforeAll(async () => {
    assertCliBuilt();
    dir = await makeTempDir();
    await writeFile(path.join(dir, "base.bin"), baseData);
    await writeFile(path.join(dir, "web1.bin"), web1Data);
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("creates a 1 GiB pool with 64 KiB blocks", async () => {
    const out = await runCliOk(["create-pool", "data.img", "meta.img", "--size", "1G"], cwd());
    expect(out).toContain("1 GiB");
    const pool = await status();
    expect(pool).toMatchObject({ dataBlocksUsed: 0, dataBlocksTotal: 16384, dataBlockBytes: BLOCK_BYTES });
  });

  it("creates a volume that maps nothing until written", async () => {
    expect(await runCliOk(["create", "base", "--size", "256M"], cwd())).toBe("created volume base (256 MiB)\n");
    const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
    expect(listed.volumes).toHaveLength(1);
    expect(listed.volumes[0]).toMatchObject({ name: "base", sizeBytes: 256 * MiB, mappedBlocks: 0, originName: null });
  });

  it("imports 8 MiB into 128 data blocks", async () => {
    const out = await runCliOk(["import", "base", "base.bin"], cwd());
    expect(out).toContain("imported 8 MiB");
    expect((await status()).dataBlocksUsed).toBe(128);
  });

  it("a snapshot shares all of its origin's blocks and costs none", async () => {
    expect(await runCliOk(["snapshot", "base", "web1"], cwd())).toBe("created snapshot web1 of base\n");
    expect((await status()).dataBlocksUsed).toBe(128);
  });

  it("writing 64 KiB into the snapshot copies one block, leaving the origin's alone", async () => {
    await runCliOk(["import", "web1", "web1.bin", "--offset", "1048576"], cwd());
    expect((await status()).dataBlocksUsed).toBe(129);
    const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
    const byName = Object.fromEntries(listed.volumes.map((volume: { name: string }) => [volume.name, volume]));
    expect(byName.base).toMatchObject({ mappedBlocks: 128, exclusiveBlocks: 1, sharedBlocks: 127 });
    expect(byName.web1).toMatchObject({ mappedBlocks: 128, exclusiveBlocks: 1, sharedBlocks: 127, originName: "base" });
  });

  it("exports both volumes byte-exact as sparse images", async () => {
    await runCliOk(["export", "base", "base.raw"], cwd());
    await runCliOk(["export", "web1", "web1.raw"], cwd());
    await expectImage(path.join(dir, "base.raw"), 256 * MiB, [{ offset: 0, bytes: baseData }]);
    await expectImage(path.join(dir, "web1.raw"), 256 * MiB, [
      { offset: 0, bytes: baseData },
      { offset: 1 * MiB, bytes: web1Data },
    ]);
    // Only the 8 MiB of data occupies disk; the other 248 MiB are holes.
    const allocatedBytes = (await stat(path.join(dir, "web1.raw"))).blocks * 512;
    expect(allocatedBytes).toBeLessThan(16 * MiB);
  });

  it("the human list shows sizes, usage and origin", async () => {
    const out = await runCliOk(["list"], cwd());
    const [header, ...rows] = out.trimEnd().split("\n");
    expect(header!.split(/\s+/)).toEqual(["NAME", "SIZE", "MAPPED", "EXCLUSIVE", "SHARED", "ORIGIN", "CREATED"]);
    expect(rows).toHaveLength(2);
    expect(rows.find((row) => row.startsWith("web1"))).toMatch(
      /^web1\s+256 MiB\s+8 MiB\s+64 KiB\s+7\.9 MiB\s+base\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/,
    );
  });

  it("deleting the origin leaves the snapshot intact and frees only the origin's own block", async () => {
    expect(await runCliOk(["delete", "base"], cwd())).toBe("deleted volume base\n");
    expect((await status()).dataBlocksUsed).toBe(128);
    const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
    expect(listed.volumes.map((volume: { name: string }) => volume.name)).toEqual(["web1"]);
    expect(listed.volumes[0]).toMatchObject({ mappedBlocks: 128, exclusiveBlocks: 128, sharedBlocks: 0 });
    await runCliOk(["export", "web1", "web1-after.raw"], cwd());
    await expectImage(path.join(dir, "web1-after.raw"), 256 * MiB, [
      { offset: 0, bytes: baseData },
      { offset: 1 * MiB, bytes: web1Data },
    ]);
  });

  it("check passes a healthy pool and says what it verified", async () => {
    const result = await runCli(["check"], cwd());
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /^checked .*meta\.img at transaction \d+: \d+ metadata blocks \(\d+ tree nodes?\), 1 volume, 128 mappings, 128 data blocks referenced$/m,
    );
    expect(result.stdout).toMatch(/^clean$/m);
  });

  it("a flipped byte in a metadata block fails check and export, both naming the block", async () => {
    const metaPath = path.join(dir, "meta.img");
    const { metadataBlockBytes } = JSON.parse(await runCliOk(["status", "--json"], cwd()));
    const corrupted = await findCorruptibleBlock(metaPath, metadataBlockBytes, async () => {
      const exported = await runCli(["export", "web1", "web1-corrupt.raw", "--force"], cwd());
      return exported.exitCode === 0 ? null : exported.stderr;
    });
    // The export that failed named the block and exited with the corruption status.
    expect(corrupted.failure).toMatch(new RegExp(`^thinp: metadata block ${corrupted.blockIndex}\\b.*corrupt`, "m"));
    const checked = await runCli(["check"], cwd());
    expect(checked.exitCode).toBe(6);
    expect(checked.stdout).toMatch(new RegExp(`block ${corrupted.blockIndex}\\b`));
    expect(checked.stderr).toMatch(/^thinp: check of .*meta\.img found \d+ problems?$/m);
    await writeFile(path.join(dir, "web1-corrupt.raw"), "an earlier image");
    const exported = await runCli(["export", "web1", "web1-corrupt.raw", "--force"], cwd());
    expect(exported.exitCode).toBe(6);
    // A failed export leaves no half-written image behind, and the file it would have replaced as it was.
    expect(await readFile(path.join(dir, "web1-corrupt.raw"), "utf8")).toBe("an earlier image");
    expect((await readdir(dir)).filter((name) => name.includes("thinp-partial"))).toEqual([]);
  });
});

describe("import and export keep zeros sparse and handle unaligned offsets", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  const blockA = seededBytes(BLOCK_BYTES, 21);
  const blockB = seededBytes(BLOCK_BYTES, 22);
  const oddBytes = seededBytes(100, 23);
  const ODD_OFFSET = 3_000_000;

  async function dataBlocksUsed(): Promise<number> {
    return JSON.parse(await runCliOk(["status", "--json"], cwd())).dataBlocksUsed;
  }

  beforeAll(async () => {
    assertCliBuilt();
    dir = await makeTempDir();
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "16M"], cwd());
    await runCliOk(["create", "v", "--size", "4M"], cwd());
    // 1 MiB: a block of data, fourteen blocks of zeros, a block of data.
    const sparse = Buffer.alloc(MiB);
    blockA.copy(sparse, 0);
    blockB.copy(sparse, 15 * BLOCK_BYTES);
    await writeFile(path.join(dir, "sparse.bin"), sparse);
    await writeFile(path.join(dir, "odd.bin"), oddBytes);
    await writeFile(path.join(dir, "zero-block.bin"), Buffer.alloc(BLOCK_BYTES));
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("discards whole blocks of zeros instead of writing them", async () => {
    const out = await runCliOk(["import", "v", "sparse.bin"], cwd());
    expect(out).toContain("(128 KiB written, 896 KiB of zero blocks discarded)");
    expect(await dataBlocksUsed()).toBe(2);
  });

  it("writes at an offset that is not block-aligned", async () => {
    await runCliOk(["import", "v", "odd.bin", "--offset", String(ODD_OFFSET)], cwd());
    expect(await dataBlocksUsed()).toBe(3);
  });

  it("a block of zeros imported over data unmaps it", async () => {
    await runCliOk(["import", "v", "zero-block.bin", "--offset", "0"], cwd());
    expect(await dataBlocksUsed()).toBe(2);
  });

  it("exports exactly those bytes, with only the mapped blocks allocated on disk", async () => {
    await runCliOk(["export", "v", "v.raw"], cwd());
    await expectImage(path.join(dir, "v.raw"), 4 * MiB, [
      { offset: 15 * BLOCK_BYTES, bytes: blockB },
      { offset: ODD_OFFSET, bytes: oddBytes },
    ]);
    expect((await stat(path.join(dir, "v.raw"))).blocks * 512).toBeLessThanOrEqual(4 * BLOCK_BYTES);
  });
});
