// How a snapshot's blocks look through base:allocation: a block a write would copy is
// HOLE (writing it needs a free block, so it may fail with ENOSPC, which the spec allows
// only for holes) but not ZERO (it holds data); owned blocks are data; unmapped are HOLE|ZERO.

import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startPoolService, type PoolService } from "../src/control/pool-service.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";

const run = promisify(execFile);
let dir: string;
let service: PoolService | null = null;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "thinp-nbd-snap-"));
});
afterEach(async () => {
  await service?.stop();
  service = null;
  await rm(dir, { recursive: true, force: true });
});

describe("base:allocation of a snapshot", () => {
  it("nbdinfo --map shows shared blocks as hole without zero, owned blocks as data", async () => {
    const metaPath = join(dir, "meta.img");
    const pool = await Pool.create(join(dir, "data.img"), metaPath, { sizeBytes: 64 << 20 });
    await pool.createVolume("base", 1 << 20);
    await (await pool.volume("base")).write(0, Buffer.alloc(2 * DATA_BLOCK_BYTES, 1));
    await pool.snapshot("base", "snap");
    await (await pool.volume("snap")).write(DATA_BLOCK_BYTES, Buffer.alloc(DATA_BLOCK_BYTES, 2));
    await pool.commit();
    await pool.close();
    const socketPath = join(dir, "nbd.sock");
    service = await startPoolService({ metaPath, socketPath, log: () => undefined });
    const { stdout } = await run("nbdinfo", ["--map", "--json", `nbd+unix:///snap?socket=${socketPath}`], { timeout: 20_000 });
    const map = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
    expect(map.map(({ offset, length, type }) => ({ offset, length, type }))).toEqual([
      { offset: 0, length: DATA_BLOCK_BYTES, type: 1 },
      { offset: DATA_BLOCK_BYTES, length: DATA_BLOCK_BYTES, type: 0 },
      { offset: 2 * DATA_BLOCK_BYTES, length: (1 << 20) - 2 * DATA_BLOCK_BYTES, type: 3 },
    ]);
    // The shared block still reads as its data.
    const { stdout: hex } = await run("nbdcopy", [`nbd+unix:///snap?socket=${socketPath}`, "-"], {
      encoding: "buffer",
      maxBuffer: 4 << 20,
      timeout: 20_000,
    });
    expect(hex.subarray(0, DATA_BLOCK_BYTES).every((b: number) => b === 1)).toBe(true);
    expect(hex.subarray(DATA_BLOCK_BYTES, 2 * DATA_BLOCK_BYTES).every((b: number) => b === 2)).toBe(true);
  });
});
