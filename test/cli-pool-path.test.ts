// How a command finds its pool: --pool, else $THINP_POOL, else ./meta.img.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";

describe("finding the pool", () => {
  let dir: string;
  let elsewhere: string;

  async function volumeNames(args: readonly string[], options: { cwd: string; env?: Record<string, string> }): Promise<string[]> {
    const listed = JSON.parse(await runCliOk(["list", "--json", ...args], options));
    return listed.volumes.map((volume: { name: string }) => volume.name);
  }

  beforeAll(async () => {
    assertCliBuilt();
    dir = await makeTempDir();
    elsewhere = path.join(dir, "elsewhere");
    await mkdir(elsewhere);
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "1M"], { cwd: dir });
    await runCliOk(["create", "in-default", "--size", "1M"], { cwd: dir });
    await runCliOk(["create-pool", "other-data.img", "other-meta.img", "--size", "1M"], { cwd: elsewhere });
    await runCliOk(["create", "in-other", "--size", "1M", "--pool", "other-meta.img"], { cwd: elsewhere });
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("uses ./meta.img when neither --pool nor $THINP_POOL is given", async () => {
    expect(await volumeNames([], { cwd: dir })).toEqual(["in-default"]);
  });

  it("says which file it looked for when ./meta.img is missing", async () => {
    const result = await runCli(["list"], { cwd: elsewhere });
    expect(result.exitCode).toBe(8);
    expect(result.stderr).toContain(path.join(elsewhere, "meta.img"));
  });

  it("uses $THINP_POOL over ./meta.img", async () => {
    const env = { THINP_POOL: path.join(elsewhere, "other-meta.img") };
    expect(await volumeNames([], { cwd: dir, env })).toEqual(["in-other"]);
  });

  it("uses --pool over $THINP_POOL, relative to the working directory", async () => {
    const env = { THINP_POOL: path.join(elsewhere, "other-meta.img") };
    expect(await volumeNames(["--pool", "meta.img"], { cwd: dir, env })).toEqual(["in-default"]);
  });

  it("mutating commands honour $THINP_POOL too", async () => {
    const env = { THINP_POOL: path.join(elsewhere, "other-meta.img") };
    await runCliOk(["create", "via-env", "--size", "64K"], { cwd: dir, env });
    expect(await volumeNames([], { cwd: dir, env })).toEqual(["in-other", "via-env"]);
    expect(await volumeNames([], { cwd: dir })).toEqual(["in-default"]);
  });
});

describe("--json output shapes", () => {
  let dir: string;

  beforeAll(async () => {
    assertCliBuilt();
    dir = await makeTempDir();
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "1M"], { cwd: dir });
    await runCliOk(["create", "base", "--size", "1M"], { cwd: dir });
    await runCliOk(["snapshot", "base", "snap", "--read-only"], { cwd: dir });
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("list --json gives block size and one object per volume with exact numbers and ISO times", async () => {
    const listed = JSON.parse(await runCliOk(["list", "--json"], { cwd: dir }));
    expect(listed).toEqual({
      dataBlockBytes: 65536,
      volumes: [
        {
          name: "base",
          id: expect.any(Number),
          uuid: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
          sizeBytes: 1048576,
          mappedBlocks: 0,
          exclusiveBlocks: 0,
          sharedBlocks: 0,
          originName: null,
          readOnly: false,
          createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
          snapshotAt: null,
        },
        {
          name: "snap",
          id: expect.any(Number),
          uuid: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
          sizeBytes: 1048576,
          mappedBlocks: 0,
          exclusiveBlocks: 0,
          sharedBlocks: 0,
          originName: "base",
          readOnly: true,
          createdAt: expect.stringMatching(/Z$/),
          snapshotAt: expect.stringMatching(/Z$/),
        },
      ],
    });
  });

  it("status --json gives the pool's counters as numbers", async () => {
    const status = JSON.parse(await runCliOk(["status", "--json"], { cwd: dir }));
    expect(status).toMatchObject({
      dataBlockBytes: 65536,
      dataBlocksUsed: 0,
      dataBlocksTotal: 16,
      metadataBlockBytes: expect.any(Number),
      metadataBlocksUsed: expect.any(Number),
      metadataBlocksTotal: expect.any(Number),
      transactionId: expect.any(Number),
      volumeCount: 2,
      uuid: expect.any(String),
      dataPath: expect.stringMatching(/data\.img$/),
      metaPath: expect.stringMatching(/meta\.img$/),
    });
  });

  it("status without --json shows used of total with a percentage", async () => {
    const out = await runCliOk(["status"], { cwd: dir });
    expect(out).toMatch(/^data blocks\s+0 of 16 used \(0\.0%\)$/m);
    expect(out).toMatch(/^data block size\s+64 KiB$/m);
    expect(out).toMatch(/^metadata blocks\s+\d+ of \d+ used \(\d+\.\d%\)$/m);
    expect(out).toMatch(/^transaction id\s+\d+$/m);
  });

  it("check --json gives the engine's report", async () => {
    const report = JSON.parse(await runCliOk(["check", "--json"], { cwd: dir }));
    expect(report).toMatchObject({ clean: true, problems: [], verified: { volumes: 2, mappings: 0, dataBlocksReferenced: 0 } });
  });

  it("a read-only snapshot is marked in the human list", async () => {
    const out = await runCliOk(["list"], { cwd: dir });
    expect(out).toMatch(/^snap \(ro\)\s+1 MiB/m);
  });
});
