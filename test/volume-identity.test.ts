// A sealed volume's identity names its contents exactly: the first change to them (a write,
// a discard, a resize) raises the generation, and that is durable before any byte changes,
// so a crash at any moment after it leaves no sealed record over changed contents.

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";

/** A data file that, at each write, opens what a crash would leave of the metadata and notes the volume's record. */
class WatchedDataFile extends MemoryStorageFile {
  watch: (() => Promise<void>) | null = null;
  override async write(buf: Uint8Array, position: number): Promise<void> {
    if (this.watch) await this.watch();
    return super.write(buf, position);
  }
  override writeNow(): boolean {
    // Every write goes through `write`, so each is watched.
    return false;
  }
}

async function recordAfterCrash(meta: MemoryStorageFile, data: MemoryStorageFile, name: string) {
  const pool = await Pool.openFiles(meta.durableCopy(), data.durableCopy());
  const record = await pool.transactions.read(async (metadata) => ({ ...(await metadata.requireVolume(name)).record }));
  await pool.close();
  return record;
}

describe("volume identity", () => {
  for (const change of ["write", "discard", "write zeroes"] as const) {
    it(`a ${change} to a sealed volume unseals it, durably, before its first byte changes`, async () => {
      const meta = new MemoryStorageFile("meta");
      const data = new WatchedDataFile("data");
      const pool = await Pool.formatFiles(meta, data, { sizeBytes: 64 * DATA_BLOCK_BYTES });
      await pool.createVolume("v", 8 * DATA_BLOCK_BYTES);
      const volume = await pool.volume("v");
      await volume.write(0, Buffer.alloc(4 * DATA_BLOCK_BYTES, 1));
      const sealed = await pool.seal("v");
      expect((await recordAfterCrash(meta, data, "v")).sealed).toBe(true);
      const seen: { sealed: boolean; generation: number }[] = [];
      data.watch = async () => {
        const record = await recordAfterCrash(meta, data, "v");
        seen.push({ sealed: record.sealed, generation: record.generation });
      };
      if (change === "write") await volume.write(100, Buffer.alloc(200, 2));
      else if (change === "discard") await volume.discard(100, DATA_BLOCK_BYTES);
      else await volume.writeZeroes(100, 300, true);
      data.watch = null;
      expect(seen.length).toBeGreaterThan(0);
      for (const state of seen) expect(state).toEqual({ sealed: false, generation: sealed.generation + 1 });
      // Further changes stay in that generation; a new seal names the new contents.
      await volume.write(0, Buffer.alloc(10, 3));
      expect(await pool.seal("v")).toEqual({ uuid: sealed.uuid, generation: sealed.generation + 1 });
      await pool.close();
    });
  }

  it("a resize unseals the volume in the same change", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: 64 * DATA_BLOCK_BYTES });
    await pool.createVolume("v", 8 * DATA_BLOCK_BYTES);
    const sealed = await pool.seal("v");
    await pool.resizeVolume("v", 16 * DATA_BLOCK_BYTES);
    expect(await pool.seal("v")).toEqual({ uuid: sealed.uuid, generation: sealed.generation + 1 });
    await pool.close();
  });
});
