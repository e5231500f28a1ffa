// One pool, one owner, whatever names reach it: OS locks on the metadata file and the data
// file themselves, and the data file's record of which metadata file is its pool's. Each
// case here corrupted a pool before: a second path to the same files, or a second metadata
// file for one data file, opened while the first was in use or after it had moved on.

import { copyFile, link, mkdir, open, readFile, rename, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Pool } from "../src/thin/pool.js";
import { DATA_IDENTITY_XATTR } from "../src/thin/data-file-identity.js";
import { findLockHolder } from "../src/io/file-lock.js";
import { killAllBackground, startCli } from "./support/cli-background.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, runProgram, seededBytes } from "./support/cli-run.js";
import { eventually, killAllServers, startServe } from "./support/cli-serve-process.js";
import { readXattrHex, removeXattr } from "./support/xattrs.js";
import { rewriteMetadataBlock } from "./support/pool-blocks.js";
import { BlockType } from "../src/pdata/block-format.js";

const MiB = 1024 * 1024;
let dir: string;

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", "64M"], { cwd: dir });
  await runCliOk(["create", "base", "--size", "8M"], { cwd: dir });
  await writeFile(path.join(dir, "w.raw"), seededBytes(2 * MiB, 0x0a11ce));
});
afterEach(async () => {
  killAllServers();
  await killAllBackground();
  await removeTempDir(dir);
});

/** The process holding an OS lock on the file, as the kernel lists it. */
async function findPidHolding(filePath: string): Promise<number | null> {
  const { dev, ino } = await stat(filePath);
  return findLockHolder(dev, ino)?.pid ?? null;
}

async function expectClean(metaName = "meta.img"): Promise<void> {
  const result = await runCli(["check", "--pool", metaName], { cwd: dir });
  expect(result.exitCode, result.stdout + result.stderr).toBe(0);
}

describe("a pool reached by two names", () => {
  it("refuses a write through the real name while a server holds the pool through a symlink", async () => {
    await symlink("meta.img", path.join(dir, "alias.img"));
    const server = await startServe(["--pool", "alias.img", "--listen", "127.0.0.1:0"], { cwd: dir });
    const refused = await runCli(["import", "base", "w.raw", "--pool", "meta.img"], { cwd: dir });
    expect(refused.exitCode).toBe(7);
    expect(refused.stderr).toContain(`process ${server.pid}`);
    // The symlink's server is the real file's server: management goes through it.
    expect(await runCliOk(["list", "--pool", "meta.img"], { cwd: dir })).toContain("base");
    expect(await server.stop()).toBe(0);
    await expectClean();
  });

  it("refuses a write through a hard link while a server holds the pool", async () => {
    await link(path.join(dir, "meta.img"), path.join(dir, "hard.img"));
    const server = await startServe(["--pool", "hard.img", "--listen", "127.0.0.1:0"], { cwd: dir });
    for (const args of [["import", "base", "w.raw"], ["create", "other", "--size", "1M"], ["check"]]) {
      const refused = await runCli([...args, "--pool", "meta.img"], { cwd: dir });
      expect(refused.exitCode, `${args.join(" ")}: ${refused.stderr}`).toBe(7);
      expect(refused.stderr).toContain(`process ${server.pid} (thinp serve --pool hard.img`);
    }
    expect(await server.stop()).toBe(0);
    await expectClean();
  });

  it("frees the pool when its holder dies, and a leftover lock file blocks nothing", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], { cwd: dir });
    server.kill();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await writeFile(path.join(dir, "meta.img.lock"), "1\n");
    await runCliOk(["import", "base", "w.raw"], { cwd: dir });
    await expectClean();
  });

  it("answers list and status while an export holds the pool, and refuses a writer", async () => {
    const fifoPath = path.join(dir, "image.fifo");
    await runProgram("mkfifo", [fifoPath], { timeoutMs: 10_000 });
    await runCliOk(["import", "base", "w.raw"], { cwd: dir });
    // An export into a pipe that is open but not read holds the pool for as long as the test likes.
    const exporting = startCli(["export", "base", "image.fifo"], { cwd: dir });
    const reader = await open(fifoPath, "r");
    await eventually(async () => (await findPidHolding(path.join(dir, "meta.img"))) === exporting.pid, 20_000, "the export holds the pool");
    expect(await runCliOk(["list"], { cwd: dir })).toContain("base");
    expect(JSON.parse(await runCliOk(["status", "--json"], { cwd: dir })).volumeCount).toBe(1);
    const refused = await runCli(["import", "base", "w.raw"], { cwd: dir });
    expect(refused.exitCode).toBe(7);
    expect(refused.stderr).toContain(`process ${exporting.pid} (thinp export base image.fifo)`);
    const image = await reader.readFile();
    await reader.close();
    expect(image.length).toBe(8 * MiB);
    expect(image.subarray(0, 2 * MiB).equals(await readFile(path.join(dir, "w.raw")))).toBe(true);
    expect((await exporting.exited).exitCode).toBe(0);
  });

  it("lets readers share the pool with each other but not with a writer", async () => {
    const reader = await Pool.open(path.join(dir, "meta.img"), { readOnly: true });
    try {
      expect(await runCliOk(["list"], { cwd: dir })).toContain("base");
      const refused = await runCli(["import", "base", "w.raw"], { cwd: dir });
      expect(refused.exitCode).toBe(7);
      expect(refused.stderr).toContain(`process ${process.pid}`);
    } finally {
      await reader.close();
    }
    const writer = await Pool.open(path.join(dir, "meta.img"));
    try {
      const refused = await runCli(["list"], { cwd: dir });
      expect(refused.exitCode).toBe(7);
    } finally {
      await writer.close();
    }
  });
});

describe("two metadata files for one data file", () => {
  it("refuses an import into a repaired copy while the original is served", async () => {
    await runCliOk(["repair", "--output", "rep2.img"], { cwd: dir });
    const server = await startServe(["--listen", "127.0.0.1:0"], { cwd: dir });
    const refused = await runCli(["import", "base", "w.raw", "--pool", "rep2.img"], { cwd: dir });
    expect(refused.exitCode).toBe(7);
    expect(refused.stderr).toContain(`data file ${path.join(dir, "data.img")}`);
    expect(refused.stderr).toContain(`process ${server.pid}`);
    expect(await server.stop()).toBe(0);
    await expectClean();
  });

  it("refuses a repaired copy until it is put in place, then refuses the file it replaced", async () => {
    await runCliOk(["import", "base", "w.raw"], { cwd: dir });
    const repair = await runCliOk(["repair", "--output", "rep2.img"], { cwd: dir });
    expect(repair).toContain("mv ");
    const early = await runCli(["import", "base", "w.raw", "--pool", "rep2.img"], { cwd: dir });
    expect(early.exitCode).toBe(6);
    expect(early.stderr).toContain("not yet in place");
    expect(early.stderr).toContain(
      `mv ${path.join(dir, "meta.img")} ${path.join(dir, "meta.img")}.old && mv ${path.join(dir, "rep2.img")} ${path.join(dir, "meta.img")}`,
    );

    await rename(path.join(dir, "meta.img"), path.join(dir, "meta.img.old"));
    await rename(path.join(dir, "rep2.img"), path.join(dir, "meta.img"));
    await runCliOk(["create", "after", "--size", "1M"], { cwd: dir });
    expect(await runCliOk(["list"], { cwd: dir })).toContain("after");
    const old = await runCli(["list", "--pool", "meta.img.old"], { cwd: dir });
    expect(old.exitCode).toBe(6);
    expect(old.stderr).toContain("older copy");
    await expectClean();
  });

  it("refuses a backup copy of the metadata once the pool has committed past it", async () => {
    await copyFile(path.join(dir, "meta.img"), path.join(dir, "backup.img"));
    await runCliOk(["import", "base", "w.raw"], { cwd: dir });
    const refused = await runCli(["create", "other", "--size", "1M", "--pool", "backup.img"], { cwd: dir });
    expect(refused.exitCode).toBe(6);
    expect(refused.stderr).toContain(path.join(dir, "backup.img"));
    expect(refused.stderr).toContain(path.join(dir, "data.img"));
    expect(refused.stderr).toContain(`Use ${path.join(dir, "meta.img")}`);
    await expectClean();
  });

  it("refuses another pool's data file, naming both files", async () => {
    const other = path.join(dir, "other");
    await mkdir(other);
    await runCliOk(["create-pool", "other/data.img", "other/meta.img", "--size", "64M"], { cwd: dir });
    await rename(path.join(other, "data.img"), path.join(dir, "data.img"));
    const refused = await runCli(["list"], { cwd: dir });
    expect(refused.exitCode).toBe(6);
    expect(refused.stderr).toContain(path.join(dir, "meta.img"));
    expect(refused.stderr).toContain(path.join(dir, "data.img"));
    expect(refused.stderr).toContain("belongs to pool");
  });

  it("opens a pool whose data file has no identity yet, and records one on its first write", async () => {
    const dataPath = path.join(dir, "data.img");
    removeXattr(dataPath, DATA_IDENTITY_XATTR);
    await runCliOk(["list"], { cwd: dir });
    expect(readXattrHex(dataPath, DATA_IDENTITY_XATTR)).toBeNull();
    await runCliOk(["import", "base", "w.raw"], { cwd: dir });
    const recorded = JSON.parse(Buffer.from(readXattrHex(dataPath, DATA_IDENTITY_XATTR)!, "hex").toString("utf8"));
    expect(recorded).toMatchObject({ format: 1, metadata: "meta.img" });
    expect(recorded.commit).toBeGreaterThan(1);
  });

  it("refuses to repair a metadata file against another pool's data file, naming both", async () => {
    const other = path.join(dir, "other");
    await mkdir(other);
    await runCliOk(["create-pool", "other/data.img", "other/meta.img", "--size", "64M"], { cwd: dir });
    await rename(path.join(other, "data.img"), path.join(dir, "data.img"));
    const refused = await runCli(["repair"], { cwd: dir });
    expect(refused.exitCode).toBe(6);
    expect(refused.stderr).toContain(`${path.join(dir, "meta.img")} cannot be used with data file ${path.join(dir, "data.img")}`);
    expect(refused.stderr).toContain("belongs to pool");
    await expect(stat(path.join(dir, "meta.img.repaired"))).rejects.toThrow(/ENOENT/);
  });
});

describe("a metadata file from a newer thinp", () => {
  it("is refused, saying a newer thinp wrote it, when its superblock has flags this one does not know", async () => {
    const metaPath = path.join(dir, "meta.img");
    for (const slot of [0, 1]) {
      await rewriteMetadataBlock(metaPath, slot, BlockType.Superblock, (block) => block.writeUInt32LE(block.readUInt32LE(28) | 0x80, 28));
    }
    const refused = await runCli(["list"], { cwd: dir });
    expect(refused.exitCode).toBe(6);
    expect(refused.stderr).toContain("superblock flags 0x80 include some this thinp does not know; a newer thinp wrote it");
  });
});
