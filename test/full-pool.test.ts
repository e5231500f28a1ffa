// A full pool, as LVM and dm-thin users expect: in `error` mode a write that needs a new
// block fails at once with POOL_FULL; in `queue` mode it waits for space (a resize, a
// delete) up to its timeout, then fails; writes to blocks a volume owns never wait.

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import type { FullPoolPolicy } from "../src/thin/transactions.js";
import { parseFullPoolPolicy } from "../cli/full-pool-option.js";

const B = DATA_BLOCK_BYTES;

async function fullPool(whenFull: FullPoolPolicy): Promise<Pool> {
  const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: 8 * B, whenFull });
  await pool.createVolume("v", 16 * B);
  await (await pool.volume("v")).write(0, Buffer.alloc(8 * B, 1));
  await pool.commit();
  return pool;
}

describe("a full pool", () => {
  it("in error mode, fails a write that needs a block at once", async () => {
    const pool = await fullPool({ mode: "error" });
    const write = (await pool.volume("v")).write(8 * B, Buffer.alloc(512, 2));
    expect(pool.transactions.spaceWaiters).toBe(0);
    await expect(write).rejects.toMatchObject({ code: "POOL_FULL" });
    await pool.close();
  });

  it("in queue mode, holds the write until the pool grows, then completes it; owned blocks never wait", async () => {
    const pool = await fullPool({ mode: "queue", timeoutMs: 30_000 });
    const volume = await pool.volume("v");
    let done = false;
    const held = volume.write(8 * B, Buffer.alloc(512, 2)).then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(done).toBe(false);
    expect(pool.transactions.spaceWaiters).toBe(1);
    // An overwrite of a block the volume owns goes through meanwhile.
    await volume.write(0, Buffer.alloc(512, 3));
    await pool.resize(16 * B);
    await held;
    expect(pool.transactions.spaceWaiters).toBe(0);
    expect((await volume.read(8 * B, 512)).equals(Buffer.alloc(512, 2))).toBe(true);
    expect((await volume.read(0, 512)).equals(Buffer.alloc(512, 3))).toBe(true);
    await pool.close();
  });

  it("in queue mode, a delete that frees blocks lets the held write through once committed", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), {
      sizeBytes: 8 * B,
      whenFull: { mode: "queue", timeoutMs: 30_000 },
    });
    await pool.createVolume("v", 16 * B);
    await pool.createVolume("scratch", 16 * B);
    await (await pool.volume("v")).write(0, Buffer.alloc(4 * B, 1));
    await (await pool.volume("scratch")).write(0, Buffer.alloc(4 * B, 1));
    await pool.commit();
    const held = (await pool.volume("v")).write(8 * B, Buffer.alloc(512, 2));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await pool.deleteVolume("scratch");
    await pool.commit();
    await held;
    await pool.close();
  });

  it("in queue mode, fails the write with POOL_FULL once the timeout passes", async () => {
    const pool = await fullPool({ mode: "queue", timeoutMs: 300 });
    const write = (await pool.volume("v")).write(8 * B, Buffer.alloc(512, 2));
    const failed = expect(write).rejects.toMatchObject({ code: "POOL_FULL" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(pool.transactions.spaceWaiters).toBe(1);
    await failed;
    expect(pool.transactions.spaceWaiters).toBe(0);
    await pool.close();
  });

  it("takes --when-full as error, queue or queue:SECONDS", () => {
    expect(parseFullPoolPolicy("error")).toEqual({ mode: "error" });
    expect(parseFullPoolPolicy("queue")).toEqual({ mode: "queue", timeoutMs: 60_000 });
    expect(parseFullPoolPolicy("queue:2.5")).toEqual({ mode: "queue", timeoutMs: 2500 });
    for (const bad of ["wait", "queue:", "queue:0", "queue:-1", "queue:9999"]) expect(() => parseFullPoolPolicy(bad), bad).toThrow();
  });
});
