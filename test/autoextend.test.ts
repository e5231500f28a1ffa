// The data file grows by itself as it fills (LVM's thin_pool_autoextend_threshold and
// _percent): by the percentage asked, never past the maximum, each growth logged, and a
// pool that cannot grow says so once.

import { describe, expect, it } from "vitest";
import { Autoextend } from "../src/control/autoextend.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli } from "./support/cli-run.js";

const B = DATA_BLOCK_BYTES;

describe("autoextend", () => {
  it("grows the pool at the threshold by the percentage, up to the maximum, and says when it cannot", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: 10 * B });
    await pool.createVolume("v", 64 * B);
    const volume = await pool.volume("v");
    const log: string[] = [];
    const autoextend = new Autoextend(pool, { atPercent: 80, byPercent: 50, maxBytes: 12 * B }, (line) => log.push(line));
    await volume.write(0, Buffer.alloc(7 * B, 1));
    await autoextend.check();
    expect(pool.status().dataBlocksTotal).toBe(10);
    await volume.write(7 * B, Buffer.alloc(B, 1));
    await autoextend.check();
    // 50 % of 10 blocks would be 15; the maximum holds it at 12.
    expect(pool.status().dataBlocksTotal).toBe(12);
    expect(log).toEqual([expect.stringMatching(/^grew the pool's data file from 640 KiB to 768 KiB: data use had reached 80\.0%/)]);
    await volume.write(8 * B, Buffer.alloc(2 * B, 1));
    await autoextend.check();
    await autoextend.check();
    expect(pool.status().dataBlocksTotal).toBe(12);
    expect(log.slice(1)).toEqual([
      expect.stringMatching(/83\.3% used and cannot grow by itself: it is at its --autoextend-max of 768 KiB/),
    ]);
    await pool.close();
  });
});

describe("autoextend options", () => {
  it("refuse -by and -max without -at, and a percentage out of range, with exit 2 and the fact", async () => {
    assertCliBuilt();
    const dir = await makeTempDir();
    try {
      const alone = await runCli(["serve", "--autoextend-by", "10"], { cwd: dir });
      expect(alone.exitCode).toBe(2);
      expect(alone.stderr).toMatch(/--autoextend-by and --autoextend-max need --autoextend-at PERCENT/);
      const over = await runCli(["serve", "--autoextend-at", "120"], { cwd: dir });
      expect(over.exitCode).toBe(2);
      expect(over.stderr).toMatch(/use a percentage above 0 and at most 100/);
      const queue = await runCli(["serve", "--when-full", "wait"], { cwd: dir });
      expect(queue.exitCode).toBe(2);
      expect(queue.stderr).toMatch(/use error, queue or queue:SECONDS/);
    } finally {
      await removeTempDir(dir);
    }
  });
});
