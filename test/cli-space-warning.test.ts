// `thinp status` warns on stderr once data use reaches a threshold (80% unless --warn-at).

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";

describe("data space warning", () => {
  let dir: string;

  beforeAll(async () => {
    assertCliBuilt();
    dir = await makeTempDir();
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "640K"], { cwd: dir });
    await runCliOk(["create", "base", "--size", "1M"], { cwd: dir });
    await writeFile(path.join(dir, "seven-blocks.raw"), Buffer.alloc(7 * 65536, 0x33));
    await writeFile(path.join(dir, "one-block.raw"), Buffer.alloc(65536, 0x44));
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("stays quiet below the threshold and warns at it, naming used and total", async () => {
    const quiet = await runCli(["status"], { cwd: dir });
    expect(quiet.exitCode).toBe(0);
    expect(quiet.stderr).toBe("");
    await runCliOk(["import", "base", "seven-blocks.raw"], { cwd: dir });
    const below = await runCli(["status"], { cwd: dir });
    expect(below.stderr).toBe(""); // 7 of 10 blocks: 70%
    const lowered = await runCli(["status", "--warn-at", "70"], { cwd: dir });
    expect(lowered.exitCode).toBe(0);
    expect(lowered.stderr).toMatch(/warning: pool data space is 70\.0% used \(7 of 10 blocks, 3 free\)/);
    await runCliOk(["import", "base", "one-block.raw", "--offset", "448K"], { cwd: dir });
    const full = await runCli(["status", "--json"], { cwd: dir });
    expect(JSON.parse(full.stdout).dataBlocksUsed).toBe(8);
    expect(full.stderr).toMatch(/80\.0% used \(8 of 10 blocks, 2 free\).*resize-pool/);
  });

  it("refuses a threshold that is not a percentage", async () => {
    const result = await runCli(["status", "--warn-at", "150"], { cwd: dir });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/--warn-at '150' is not a percentage/);
  });
});
