// thinp dump speaks thin-provisioning-tools' XML: thin_restore builds real dm-thin metadata
// from it, thin_check finds that metadata clean, and thin_dump gives back the same XML.

import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";

const execFileAsync = promisify(execFile);

async function restoreAndCheck(dir: string, xmlPath: string): Promise<string> {
  const tmeta = path.join(dir, "dm-thin-meta.bin");
  await execFileAsync("truncate", ["-s", "64M", tmeta]);
  await execFileAsync("thin_restore", ["-i", xmlPath, "-o", tmeta], { timeout: 60_000 });
  await execFileAsync("thin_check", [tmeta], { timeout: 60_000 }); // rejects unless clean
  const { stdout } = await execFileAsync("thin_dump", [tmeta], { timeout: 60_000, maxBuffer: 64 << 20 });
  return stdout;
}

describe("thinp dump", () => {
  let dir: string;

  beforeAll(async () => {
    assertCliBuilt();
    dir = await makeTempDir();
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("round-trips through thin_restore, thin_check and thin_dump, snapshots included", async () => {
    const cwd = { cwd: dir };
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "1G"], cwd);
    await runCliOk(["create", "base", "--size", "256M"], cwd);
    await writeFile(path.join(dir, "image.raw"), Buffer.alloc(8 << 20, 0x5a));
    await writeFile(path.join(dir, "patch.raw"), Buffer.alloc(64 << 10, 0xa5));
    await runCliOk(["import", "base", "image.raw"], cwd);
    await runCliOk(["snapshot", "base", "web1"], cwd);
    await runCliOk(["import", "web1", "patch.raw", "--offset", "1M"], cwd);
    await runCliOk(["import", "base", "patch.raw", "--offset", "100M"], cwd);
    const result = await runCli(["dump", "--output", "pool.xml"], cwd);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain(`dev_id 2 is 'web1': dmsetup create web1 --table "0 524288 thin /dev/mapper/POOL 2"`);
    const xml = await readFile(path.join(dir, "pool.xml"), "utf8");
    expect(xml).toContain('data_block_size="128" nr_data_blocks="16384"');
    expect(xml).toMatch(/<device dev_id="1" mapped_blocks="129"/);
    expect(xml).toMatch(/<device dev_id="2" mapped_blocks="128"/);
    expect(await restoreAndCheck(dir, path.join(dir, "pool.xml"))).toBe(xml);
    // stdout by default
    expect(await runCliOk(["dump"], cwd)).toBe(xml);
  });

  it("a pool with many scattered mappings and shared blocks passes thin_check", async () => {
    const sub = path.join(dir, "many");
    await execFileAsync("mkdir", [sub]);
    const pool = await Pool.create(path.join(sub, "data.img"), path.join(sub, "meta.img"), { sizeBytes: 40_000 * DATA_BLOCK_BYTES });
    await pool.createVolume("a", 100_000 * DATA_BLOCK_BYTES);
    await pool.transactions.change(async (metadata) => {
      const state = (await metadata.findVolume("a"))!;
      for (let i = 0; i < 30_000; i++) await metadata.mapBlock(state, i * 3, metadata.allocateDataBlock()!);
    });
    await pool.snapshot("a", "b");
    await (await pool.volume("b")).write(0, Buffer.alloc(DATA_BLOCK_BYTES, 1));
    await pool.commit();
    await pool.close();
    await runCliOk(["dump", "--output", "pool.xml"], { cwd: sub });
    const xml = await readFile(path.join(sub, "pool.xml"), "utf8");
    expect(await restoreAndCheck(sub, path.join(sub, "pool.xml"))).toBe(xml);
  });

  it("refuses to overwrite an existing output file", async () => {
    const before = await readFile(path.join(dir, "pool.xml"));
    const result = await runCli(["dump", "--output", "pool.xml"], { cwd: dir });
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toBe(`thinp: pool.xml already exists; refusing to overwrite it\n`);
    expect((await readFile(path.join(dir, "pool.xml"))).equals(before)).toBe(true);
  });
});
