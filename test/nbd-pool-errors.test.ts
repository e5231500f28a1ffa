// Through a real client: a full pool answers ENOSPC only for writes that need a block and
// recovers when room is made; a corrupt metadata block answers EIO for reads through it
// while everything else keeps being served.

import { execFile } from "node:child_process";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ControlClient } from "../src/control/control-client.js";
import { controlSocketPath } from "../src/control/control-protocol.js";
import { startPoolService, type PoolService } from "../src/control/pool-service.js";
import { BTree } from "../src/pdata/btree/btree.js";
import { plainValues } from "../src/pdata/btree/value-type.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";

const execFileAsync = promisify(execFile);
let dir: string;
let service: PoolService | null = null;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "thinp-nbd-errors-"));
});
afterEach(async () => {
  await service?.stop().catch(() => undefined);
  service = null;
  await rm(dir, { recursive: true, force: true });
});

/** What qemu-io printed, whether or not a command failed (its exit status says only that). */
async function qemuIo(uri: string, ...commands: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync("qemu-io", ["-f", "raw", uri, ...commands.flatMap((c) => ["-c", c])], {
      timeout: 30_000,
    });
    return stdout + stderr;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; killed?: boolean };
    if (failed.killed || failed.stdout === undefined) throw error;
    return `${failed.stdout}${failed.stderr ?? ""}`;
  }
}

async function serve(metaPath: string): Promise<string> {
  const socketPath = join(dir, "nbd.sock");
  service = await startPoolService({ metaPath, socketPath, log: () => undefined });
  return socketPath;
}

describe("a full pool over NBD", () => {
  it("fails writes needing a block with ENOSPC, keeps owned blocks writable, and recovers after a delete", async () => {
    const metaPath = join(dir, "meta.img");
    const pool = await Pool.create(join(dir, "data.img"), metaPath, { sizeBytes: 8 * DATA_BLOCK_BYTES });
    for (const name of ["a", "b", "spare"]) await pool.createVolume(name, 1 << 20);
    await (await pool.volume("spare")).write(0, Buffer.alloc(2 * DATA_BLOCK_BYTES, 1));
    await pool.commit();
    await pool.close();
    const socketPath = await serve(metaPath);
    const uri = (name: string) => `nbd+unix:///${name}?socket=${socketPath}`;

    expect(await qemuIo(uri("a"), "write -P 0xaa 0 384k")).not.toMatch(/failed/);
    expect(await qemuIo(uri("b"), "write -P 0xbb 0 4k")).toMatch(/write failed: No space left on device/);
    // Blocks "a" owns are written in place and need no space.
    expect(await qemuIo(uri("a"), "write -P 0xcc 4k 4k", "read -P 0xcc 4k 4k")).not.toMatch(/failed/);

    const control = (await ControlClient.connect(controlSocketPath(metaPath)))!;
    await control.deleteVolume("spare", { defer: false });
    control.close();
    expect(await qemuIo(uri("b"), "write -P 0xbb 0 4k", "read -P 0xbb 0 4k")).not.toMatch(/failed/);
    expect(await qemuIo(uri("a"), "read -P 0xaa 64k 320k")).not.toMatch(/failed/);
  });
});

describe("a corrupt metadata block under a served volume", () => {
  it("answers EIO for reads through it and serves everything else", async () => {
    const metaPath = join(dir, "meta.img");
    const pool = await Pool.create(join(dir, "data.img"), metaPath, { sizeBytes: 64 << 20 });
    await pool.createVolume("hurt", 16 << 20);
    await pool.createVolume("fine", 16 << 20);
    await (await pool.volume("hurt")).write(0, Buffer.alloc(1 << 20, 0x11));
    await (await pool.volume("fine")).write(0, Buffer.alloc(1 << 20, 0x22));
    await pool.commit();
    let leaf = -1;
    await pool.transactions.read(async (metadata) => {
      const state = (await metadata.findVolume("hurt"))!;
      await new BTree(metadata.tm, plainValues(8)).forEachInRange(
        state.record.mappingRoot,
        0,
        1,
        (_k, _v, _s, leafIndex) => void (leaf = leafIndex),
      );
    });
    await pool.close();
    const handle = await open(metaPath, "r+");
    await handle.write(Buffer.from([0xff]), 0, 1, leaf * 4096 + 1000);
    await handle.close();

    const socketPath = await serve(metaPath);
    const uri = (name: string) => `nbd+unix:///${name}?socket=${socketPath}`;
    expect(await qemuIo(uri("hurt"), "read 0 64k")).toMatch(/read failed: Input\/output error/);
    expect(await qemuIo(uri("fine"), "read -P 0x22 0 1M", "write -P 0x33 1M 64k", "read -P 0x33 1M 64k")).not.toMatch(/failed/);
    const { stdout } = await execFileAsync("nbdinfo", ["--list", `nbd+unix:///?socket=${socketPath}`], { timeout: 30_000 });
    expect(stdout).toContain('export="hurt"');
  });
});
