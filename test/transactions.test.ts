// The metadata transaction as a capability: sections are the only way in, a failed change
// drops the transaction, and what was handed out before a rollback is no longer usable.

import { describe, expect, it } from "vitest";
import { IoError } from "../src/errors.js";
import { AssertionError } from "../src/io/assert.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import type { PoolMetadata } from "../src/thin/pool-metadata.js";
import { Pool } from "../src/thin/pool.js";

const MiB = 1024 * 1024;

async function committedPool() {
  const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: 16 * MiB });
  await pool.createVolume("v", MiB);
  await pool.commit();
  return { pool };
}

/** A change section that fails part-way, as an I/O error in the middle of a tree change would. */
async function failAChange(pool: Pool): Promise<void> {
  await expect(pool.transactions.change(async () => Promise.reject(new IoError("meta", new Error("EIO"))))).rejects.toThrow(IoError);
}

describe("pool transactions", () => {
  it("hand a section the live metadata, and a new one after a failed change rolls back", async () => {
    const { pool } = await committedPool();
    const before = await pool.transactions.read(async (metadata) => metadata);
    await failAChange(pool);
    const after = await pool.transactions.read(async (metadata) => metadata);
    expect(after).not.toBe(before);
    expect(await after.findVolume("v")).not.toBeNull();
  });

  it("refuse, as a bug, metadata or a volume state kept from before a rollback", async () => {
    const { pool } = await committedPool();
    let kept!: PoolMetadata;
    const state = await pool.transactions.read(async (metadata) => {
      kept = metadata;
      return (await metadata.findVolume("v"))!;
    });
    await failAChange(pool);
    await pool.transactions.read(async () => undefined);
    await expect(kept.lookupMapping(state, 0)).rejects.toThrow(AssertionError);
    await expect(pool.transactions.read((metadata) => metadata.lookupMapping(state, 0))).rejects.toThrow(AssertionError);
  });

  it("fail a write whose reserved blocks a rollback took back, and leave the pool consistent", async () => {
    const { pool } = await committedPool();
    const { reservation } = await pool.transactions.reserve(async (_metadata, allocate) => allocate());
    expect(reservation.dataBlocks).toHaveLength(1);
    await failAChange(pool);
    await expect(pool.transactions.settle(reservation, async () => undefined)).rejects.toThrow(/rolled back/);
    // Abandoning it after the rollback gives nothing back twice.
    await pool.transactions.abandon(reservation);
    expect(pool.status().dataBlocksUsed).toBe(0);
  });

  it("give back the blocks a failed reserve section took", async () => {
    const { pool } = await committedPool();
    await expect(
      pool.transactions.reserve(async (_metadata, allocate) => {
        await allocate();
        await allocate();
        throw new Error("planning failed");
      }),
    ).rejects.toThrow("planning failed");
    expect(pool.status().dataBlocksUsed).toBe(0);
  });
});
