// The data file is half of a pool: `thinp check` verifies it is there and long enough for
// every block the pool has, and every command that finds it cut short says so, naming it as
// the data file (not as a metadata file it never was).

import { rm, truncate } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";
import { corruptMetadataBlock, spaceMapLayout } from "./support/pool-blocks.js";

const MiB = 1024 * 1024;
const POOL_BYTES = 16 * MiB;

let dir: string;
const cwd = () => ({ cwd: dir });
const dataPath = () => path.join(dir, "data.img");

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", "16M"], cwd());
  await runCliOk(["create", "vol", "--size", "4M"], cwd());
});
afterEach(async () => {
  await removeTempDir(dir);
});

describe("thinp check and the data file", () => {
  it("a healthy pool's report names the data file and its length", async () => {
    const checked = await runCliOk(["check"], cwd());
    expect(checked).toMatch(new RegExp(`^data file ${dataPath()}: ${POOL_BYTES} bytes, as the pool's 256 blocks need$`, "m"));
    expect(checked).toMatch(/^clean$/m);
    const report = JSON.parse(await runCliOk(["check", "--json"], cwd()));
    expect(report).toMatchObject({
      clean: true,
      problems: [],
      dataFile: { path: dataPath(), byteLength: POOL_BYTES, neededBytes: POOL_BYTES },
    });
  });

  it("a truncated data file is a problem, naming the data file, with its own field in --json", async () => {
    await truncate(dataPath(), MiB);
    const checked = await runCli(["check"], cwd());
    expect(checked.exitCode).toBe(6);
    expect(checked.stdout).toContain(
      `problem: data file ${dataPath()} is ${MiB} bytes but the pool has ${POOL_BYTES} bytes of blocks: it was truncated or is not this pool's data file`,
    );
    expect(checked.stdout).not.toMatch(/^clean$/m);
    expect(checked.stderr).toMatch(/^thinp: check of .*meta\.img found 1 problem$/m);

    const json = await runCli(["check", "--json"], cwd());
    expect(json.exitCode).toBe(6);
    const report = JSON.parse(json.stdout);
    expect(report.clean).toBe(false);
    expect(report.problems).toEqual([
      { file: "data", blockIndex: null, message: expect.stringMatching(new RegExp(`^data file ${dataPath()} is ${MiB} bytes`)) },
    ]);
    expect(report.dataFile).toEqual({ path: dataPath(), byteLength: MiB, neededBytes: POOL_BYTES });
  });

  it("a missing data file is a problem naming it", async () => {
    await rm(dataPath());
    const checked = await runCli(["check"], cwd());
    expect(checked.exitCode).toBe(6);
    expect(checked.stdout).toMatch(new RegExp(`^problem: data file ${dataPath()} does not exist`, "m"));
    const report = JSON.parse((await runCli(["check", "--json"], cwd())).stdout);
    expect(report.problems).toEqual([{ file: "data", blockIndex: null, message: expect.stringMatching(/does not exist/) }]);
    expect(report.dataFile).toEqual({ path: dataPath(), byteLength: null, neededBytes: POOL_BYTES });
  });

  it("metadata problems keep their block and name the metadata file's block, beside a data-file problem", async () => {
    const target = (await spaceMapLayout(path.join(dir, "meta.img"), "data")).bitmapLocations[0]!;
    await corruptMetadataBlock(path.join(dir, "meta.img"), target);
    await truncate(dataPath(), MiB);
    const report = JSON.parse((await runCli(["check", "--json"], cwd())).stdout);
    expect(report.problems).toContainEqual({
      blockIndex: target,
      message: expect.stringMatching(new RegExp(`metadata block ${target}\\b`)),
    });
    expect(report.problems).toContainEqual({ file: "data", blockIndex: null, message: expect.stringMatching(/^data file /) });
  });
});

describe("a truncated data file, to every other command", () => {
  it("is a corrupt data file, named as the data file, with the way out", async () => {
    await truncate(dataPath(), MiB);
    for (const args of [["list"], ["status"], ["create", "x", "--size", "1M"], ["export", "vol", "vol.raw"]]) {
      const result = await runCli(args, cwd());
      expect(result.exitCode, args.join(" ")).toBe(6);
      expect(result.stderr, args.join(" ")).toBe(
        `thinp: data file ${dataPath()} is ${MiB} bytes but the pool has ${POOL_BYTES} bytes of blocks: ` +
          `it was truncated or is not this pool's data file; restore it from a backup, or grow it back with ` +
          `'truncate -s ${POOL_BYTES} ${dataPath()}' (the blocks that were cut off then read as zeros), then run 'thinp check'\n`,
      );
      expect(result.stderr).not.toMatch(/not a thinp metadata file/);
    }
  });
});
