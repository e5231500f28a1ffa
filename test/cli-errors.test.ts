// Each way a command can fail: the one-line message naming the fact, the exit
// status from cli/exit-codes.ts, and the pool left at its last commit.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { holdPool } from "./support/cli-pool-holder.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, seededBytes, type CliResult } from "./support/cli-run.js";

const MiB = 1024 * 1024;

let dir: string;
const cwd = () => ({ cwd: dir });

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  // 1 MiB: 16 data blocks, small enough to fill.
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", "1M"], cwd());
  await runCliOk(["create", "vol", "--size", "8M"], cwd());
  await writeFile(path.join(dir, "64k.bin"), seededBytes(64 * 1024, 7));
  await runCliOk(["import", "vol", "64k.bin", "--offset", "4M"], cwd());
});
afterEach(async () => {
  await removeTempDir(dir);
});

/** Runs a command that must fail, and checks it changed nothing a later `list` or `status` can see. */
async function failsWithoutChange(args: readonly string[]): Promise<CliResult> {
  const listBefore = await runCliOk(["list", "--json"], cwd());
  const usedBefore = JSON.parse(await runCliOk(["status", "--json"], cwd())).dataBlocksUsed;
  const result = await runCli(args, cwd());
  expect(result.exitCode, result.stdout).not.toBe(0);
  expect(result.stdout).toBe("");
  // One line, prefixed, no stack.
  expect(result.stderr).toMatch(/^thinp: [^\n]+\n$/);
  expect(await runCliOk(["list", "--json"], cwd())).toBe(listBefore);
  expect(JSON.parse(await runCliOk(["status", "--json"], cwd())).dataBlocksUsed).toBe(usedBefore);
  return result;
}

describe("thinp errors", () => {
  it("an unknown volume exits 3 naming it", async () => {
    for (const args of [
      ["delete", "nope"],
      ["resize", "nope", "--size", "1M"],
      ["snapshot", "nope", "snap"],
      ["import", "nope", "64k.bin"],
    ]) {
      const result = await failsWithoutChange(args);
      expect(result.exitCode, args.join(" ")).toBe(3);
      expect(result.stderr).toBe("thinp: no volume named 'nope' in this pool\n");
    }
    const exported = await runCli(["export", "nope", "nope.raw"], cwd());
    expect(exported).toMatchObject({ exitCode: 3, stderr: "thinp: no volume named 'nope' in this pool\n" });
  });

  it("a duplicate name exits 4, for create and for snapshot", async () => {
    const created = await failsWithoutChange(["create", "vol", "--size", "1M"]);
    expect(created.exitCode).toBe(4);
    expect(created.stderr).toBe("thinp: a volume named 'vol' already exists\n");
    const snapped = await failsWithoutChange(["snapshot", "vol", "vol"]);
    expect(snapped.exitCode).toBe(4);
  });

  it("an invalid name exits 2 saying why", async () => {
    const tooLong = await failsWithoutChange(["create", "x".repeat(1000), "--size", "1M"]);
    expect(tooLong.exitCode).toBe(2);
    expect(tooLong.stderr).toMatch(/^thinp: invalid volume name 'x+': /);
    const slash = await failsWithoutChange(["create", "a/b", "--size", "1M"]);
    expect(slash.exitCode).toBe(2);
    expect(slash.stderr).toMatch(/^thinp: invalid volume name 'a\/b': use letters, digits/);
    const empty = await failsWithoutChange(["create", "", "--size", "1M"]);
    expect(empty.exitCode).toBe(2);
    expect(empty.stderr).toMatch(/^thinp: invalid volume name '': /);
  });

  it("a size not understood exits 2 before the pool is even opened", async () => {
    const result = await failsWithoutChange(["create", "new", "--size", "10Q"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe("thinp: size '10Q' not understood: use a number of bytes or a suffix K, M, G, T, P (binary: 1K = 1024)\n");
    const noPool = await runCli(["create", "new", "--size", "10Q", "--pool", "missing.img"], cwd());
    expect(noPool.exitCode).toBe(2);
    const badOffset = await failsWithoutChange(["import", "vol", "64k.bin", "--offset", "-5"]);
    expect(badOffset.exitCode).toBe(2);
  });

  it("shrinking a volume below its mapped data exits 2 and says how far data reaches", async () => {
    const result = await failsWithoutChange(["resize", "vol", "--size", "1M"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^thinp: cannot shrink 'vol' to 1048576 bytes: .*4259840/);
    // Shrinking down to the end of the data is allowed.
    expect(await runCliOk(["resize", "vol", "--size", "4160K"], cwd())).toBe("resized volume vol to 4.1 MiB\n");
  });

  it("a full pool exits 5 saying how many blocks are used of how many, and keeps the last commit", async () => {
    await runCliOk(["create", "big", "--size", "2M"], cwd());
    await writeFile(path.join(dir, "2m.bin"), seededBytes(2 * MiB, 9));
    const result = await failsWithoutChange(["import", "big", "2m.bin"]);
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toMatch(/^thinp: pool is full: \d+ of 16 data blocks \(64 KiB each\) are in use/);
  });

  it("an import that does not fit exits 2 before writing anything", async () => {
    await writeFile(path.join(dir, "9m.bin"), seededBytes(9 * MiB, 3));
    const result = await failsWithoutChange(["import", "vol", "9m.bin"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(
      /9m\.bin \(9437184 bytes, 9 MiB\) does not fit in 'vol' at offset 0: it needs 9437184 bytes and the volume has 8388608/,
    );
    const atOffset = await failsWithoutChange(["import", "vol", "64k.bin", "--offset", "8M"]);
    expect(atOffset.exitCode).toBe(2);
  });

  it("a missing input file exits 8 naming it", async () => {
    const result = await failsWithoutChange(["import", "vol", "absent.bin"]);
    expect(result.exitCode).toBe(8);
    expect(result.stderr).toBe("thinp: input file absent.bin does not exist\n");
  });

  it("a folder given as the input exits 1 saying it is a folder, once", async () => {
    const result = await failsWithoutChange(["import", "vol", "."]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe("thinp: . is a directory; name a file to read\n");
  });

  it("export refuses to overwrite a file unless --force, and says so", async () => {
    await writeFile(path.join(dir, "out.raw"), "keep me");
    const result = await runCli(["export", "vol", "out.raw"], cwd());
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toBe(`thinp: out.raw already exists; add --force to replace it\n`);
    await runCliOk(["export", "vol", "out.raw", "--force"], cwd());
  });

  it("a missing metadata file exits 8 naming the path", async () => {
    const result = await runCli(["list", "--pool", "absent.img"], cwd());
    expect(result.exitCode).toBe(8);
    expect(result.stderr).toMatch(/^thinp: .*absent\.img does not exist; [^\n]*--pool[^\n]*\n$/);
  });

  it("a file that is not a pool exits 6 naming it", async () => {
    await writeFile(path.join(dir, "random.img"), seededBytes(MiB, 11));
    for (const args of [
      ["list", "--pool", "random.img"],
      ["create", "x", "--size", "1M", "--pool", "random.img"],
      ["check", "--pool", "random.img"],
    ]) {
      const result = await runCli(args, cwd());
      expect(result.exitCode, args.join(" ")).toBe(6);
      expect(result.stderr).toMatch(/^thinp: .*random\.img/);
    }
  });

  it("create-pool refuses to overwrite existing files, exit 4", async () => {
    const result = await runCli(["create-pool", "data2.img", "meta.img", "--size", "1M"], cwd());
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/^thinp: .*meta\.img already exists/);
  });

  it("a pool held open by another process exits 7 naming that process, and is untouched", async () => {
    const listBefore = await runCliOk(["list", "--json"], cwd());
    const holder = await holdPool(path.join(dir, "meta.img"));
    try {
      const result = await runCli(["create", "other", "--size", "1M"], cwd());
      expect(result.exitCode).toBe(7);
      expect(result.stderr).toMatch(/^thinp: [^\n]*\n$/);
      expect(result.stderr).toContain(`pool ${path.join(dir, "meta.img")} is in use by process ${holder.pid} `);
    } finally {
      await holder.release();
    }
    expect(await runCliOk(["list", "--json"], cwd())).toBe(listBefore);
  });

  it("usage mistakes exit 2 with a thinp: message", async () => {
    const missingArgument = await runCli(["create", "--size", "1M"], cwd());
    expect(missingArgument.exitCode).toBe(2);
    expect(missingArgument.stderr).toMatch(/^thinp: missing required argument 'name'/);
    const missingSize = await runCli(["create", "x"], cwd());
    expect(missingSize.exitCode).toBe(2);
    expect(missingSize.stderr).toMatch(/^thinp: required option '--size <size>' not specified/);
    const unknownCommand = await runCli(["frobnicate"], cwd());
    expect(unknownCommand.exitCode).toBe(2);
    expect(unknownCommand.stderr).toMatch(/^thinp: unknown command 'frobnicate'/);
    const help = await runCli(["--help"], cwd());
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("create-pool");
  });
});
