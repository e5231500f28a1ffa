// Space that comes back to the host: a committed delete or discard punches the freed blocks
// out of the data file, so its size on disk falls; never before that commit is durable (a
// crash anywhere must reopen to a commit whose blocks are all there), and where the file
// system cannot punch, once a warning and nothing else.

import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { IoLog, RecordingStorageFile } from "../src/io/recording-storage-file.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { forEachCrashState } from "./crash/crash-states.js";
import { SeededRandom, testSeeds } from "./support/random.js";

const B = DATA_BLOCK_BYTES;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "thinp-reclaim-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const allocated = async (path: string) => (await stat(path)).blocks * 512;

describe("space reclaim", () => {
  it("gives a deleted volume's blocks and discarded blocks back to the file system once committed, not before", async () => {
    const dataPath = join(dir, "data.img");
    const pool = await Pool.create(dataPath, join(dir, "meta.img"), { sizeBytes: 256 * B });
    await pool.createVolume("a", 64 * B);
    await pool.createVolume("b", 64 * B);
    await (await pool.volume("a")).write(0, Buffer.alloc(64 * B, 1));
    await (await pool.volume("b")).write(0, Buffer.alloc(32 * B, 2));
    await pool.commit();
    const full = await allocated(dataPath);
    expect(full).toBeGreaterThanOrEqual(96 * B);
    expect((await pool.measuredStatus()).dataFileAllocatedBytes).toBe(full);

    await pool.deleteVolume("a");
    // Freed, but the last commit still maps them: their bytes stay until the delete is durable.
    expect(await allocated(dataPath)).toBe(full);
    await pool.commit();
    expect(await allocated(dataPath)).toBeLessThanOrEqual(full - 64 * B);

    await (await pool.volume("b")).discard(8 * B, 16 * B);
    await pool.commit();
    expect(await allocated(dataPath)).toBeLessThanOrEqual(full - 80 * B);
    const b = await (await pool.volume("b")).read(0, 32 * B);
    expect(b.subarray(0, 8 * B).equals(Buffer.alloc(8 * B, 2))).toBe(true);
    expect(b.subarray(8 * B, 24 * B).equals(Buffer.alloc(16 * B))).toBe(true);
    expect(b.subarray(24 * B).equals(Buffer.alloc(8 * B, 2))).toBe(true);
    await pool.close();
  });

  it("a block shared with a snapshot is not given back while the snapshot maps it", async () => {
    const dataPath = join(dir, "data.img");
    const pool = await Pool.create(dataPath, join(dir, "meta.img"), { sizeBytes: 64 * B });
    await pool.createVolume("a", 16 * B);
    await (await pool.volume("a")).write(0, Buffer.alloc(16 * B, 5));
    await pool.snapshot("a", "s");
    await pool.commit();
    await pool.deleteVolume("a");
    await pool.commit();
    expect((await (await pool.volume("s")).read(0, 16 * B)).equals(Buffer.alloc(16 * B, 5))).toBe(true);
    expect(await allocated(dataPath)).toBeGreaterThanOrEqual(16 * B);
    await pool.close();
  });

  it("where the file system cannot punch holes, warns once and goes on", async () => {
    class NoPunch extends MemoryStorageFile {
      override async punchHole(): Promise<boolean> {
        return false;
      }
    }
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new NoPunch("data"), { sizeBytes: 64 * B });
    const warnings: string[] = [];
    // formatFiles takes no options: the warning goes through the transactions' reclaim.
    (pool.transactions.reclaim as unknown as { warn: (message: string) => void }).warn = (message) => warnings.push(message);
    for (const round of [1, 2]) {
      await pool.createVolume(`v${round}`, 4 * B);
      await (await pool.volume(`v${round}`)).write(0, Buffer.alloc(4 * B, round));
      await pool.commit();
      await pool.deleteVolume(`v${round}`);
      await pool.commit();
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot punch holes \(fallocate PUNCH_HOLE\): freed blocks stay allocated/);
    await pool.close();
  });

  for (const seed of testSeeds(2)) {
    it(`a crash anywhere around the commits that punch reopens to one commit, whole (seed ${seed})`, async () => {
      const random = new SeededRandom(seed);
      const meta = new MemoryStorageFile("meta");
      const data = new MemoryStorageFile("data");
      const setup = await Pool.formatFiles(meta, data, { sizeBytes: 128 * B });
      await setup.createVolume("keep", 8 * B);
      await (await setup.volume("keep")).write(0, random.bytes(8 * B));
      await setup.createVolume("gone", 16 * B);
      await (await setup.volume("gone")).write(0, random.bytes(16 * B));
      await setup.snapshot("gone", "snap");
      await setup.commit();
      await setup.close();
      const bases = [meta.durableCopy().pages, data.durableCopy().pages];

      const log = new IoLog();
      const pool = await Pool.openFiles(new RecordingStorageFile(meta, log, 0), new RecordingStorageFile(data, log, 1));
      const contents = async () => {
        const out = new Map<string, Buffer>();
        for (const info of await pool.listVolumes()) out.set(info.name, await (await pool.volume(info.name)).read(0, info.sizeBytes));
        return out;
      };
      const commits = [await contents()];
      // Frees: the snapshot's own blocks once gone is written and snap deleted, then gone itself.
      await (await pool.volume("gone")).write(0, random.bytes(4 * B));
      await pool.deleteVolume("snap");
      await pool.commit();
      commits.push(await contents());
      await pool.deleteVolume("gone");
      await pool.commit();
      commits.push(await contents());
      // The freed blocks are allocated again and written: a late punch would zero these.
      await pool.createVolume("new", 24 * B);
      await (await pool.volume("new")).write(0, random.bytes(24 * B));
      await pool.commit();
      commits.push(await contents());
      await pool.close();
      expect(log.operations.some((op) => op.kind === "write" && op.fileId === 1 && op.bytes.every((byte) => byte === 0))).toBe(true);

      const states = await forEachCrashState(log, bases, { random, statesMax: 120 }, async (state) => {
        const metaFile = new MemoryStorageFile("meta", state.images[0]!);
        const reopened = await Pool.openFiles(metaFile, new MemoryStorageFile("data", state.images[1]!));
        const found = new Map<string, Buffer>();
        for (const info of await reopened.listVolumes())
          found.set(info.name, await (await reopened.volume(info.name)).read(0, info.sizeBytes));
        await reopened.close();
        const matches = commits.some(
          (committed) => committed.size === found.size && [...committed].every(([name, bytes]) => found.get(name)?.equals(bytes) === true),
        );
        expect(matches, `seed ${seed}, ${state.description}: the pool holds no commit whole`).toBe(true);
        expect((await checkMetadataFile(metaFile, "meta")).problems, state.description).toEqual([]);
      });
      expect(states).toBeGreaterThan(20);
    });
  }
});
