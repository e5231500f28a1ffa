// Damage that reads do not pass through does not stop them. A space-map block that fails
// verification leaves the pool readable but not changeable (degraded: every command says
// which block and that `thinp repair` is the way out; changes exit 6 saying the same). A
// corrupt node of one volume's mapping tree fails only the reads that pass through it.

import { readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runTool, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, type CliResult } from "./support/cli-run.js";
import { killAllServers, startServe } from "./support/cli-serve-process.js";
import { corruptMetadataBlock, mappingLeaves, spaceMapLayout } from "./support/pool-blocks.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK_BYTES = 64 * KiB;

let dir: string;
const cwd = () => ({ cwd: dir });
const metaPath = () => path.join(dir, "meta.img");

beforeAll(() => assertCliBuilt());
afterEach(async () => {
  killAllServers();
  await removeTempDir(dir);
});

/** The one line every command on a degraded pool prints on stderr. */
function degradedWarning(blockIndex: number, which: "data" | "metadata"): RegExp {
  return new RegExp(
    `^thinp: warning: metadata block ${blockIndex} of \\S*meta\\.img \\(${which} space map\\) is corrupt: [^\\n]+; ` +
      `the pool is read-only until 'thinp repair' rebuilds it\\n$`,
  );
}

function expectRefusedNaming(result: CliResult, blockIndex: number, args: readonly string[]): void {
  expect(result.exitCode, `${args.join(" ")}: ${result.stderr}`).toBe(6);
  expect(result.stdout, args.join(" ")).toBe("");
  expect(result.stderr, args.join(" ")).toMatch(new RegExp(`^thinp: [^\\n]*metadata block ${blockIndex} [^\\n]*'thinp repair'[^\\n]*\\n$`));
}

describe("a pool with a corrupt space-map block", () => {
  const image = Buffer.alloc(2 * MiB, 0x5a);

  beforeEach(async () => {
    dir = await makeTempDir();
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "16M"], cwd());
    await runCliOk(["create", "a", "--size", "4M"], cwd());
    await writeFile(path.join(dir, "a.raw"), image);
    await runCliOk(["import", "a", "a.raw"], cwd());
    await runCliOk(["snapshot", "a", "b"], cwd());
    await runCliOk(["create", "c", "--size", "1M"], cwd());
  });

  for (const which of ["data", "metadata"] as const) {
    it(`(${which} space map) still lists, shows status and exports, each saying which block and 'thinp repair'`, async () => {
      const layout = await spaceMapLayout(metaPath(), which);
      const target = layout.bitmapLocations[0]!;
      await corruptMetadataBlock(metaPath(), target);

      const listed = await runCli(["list"], cwd());
      expect(listed.exitCode, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(/^a\s+4 MiB\s+2 MiB/m);
      expect(listed.stdout).toMatch(/^c\s+1 MiB/m);
      expect(listed.stderr).toMatch(degradedWarning(target, which));

      // Which blocks are shared is not known without the space maps: null, not a guess.
      const listedJson = JSON.parse(await runCliOk(["list", "--json"], cwd()));
      expect(listedJson.volumes.map((volume: { name: string }) => volume.name)).toEqual(["a", "b", "c"]);
      expect(listedJson.volumes[0]).toMatchObject({ name: "a", mappedBlocks: 32, exclusiveBlocks: null, sharedBlocks: null });

      const status = await runCli(["status", "--json"], cwd());
      expect(status.exitCode, status.stderr).toBe(0);
      expect(status.stderr).toMatch(degradedWarning(target, which));
      const statusJson = JSON.parse(status.stdout);
      expect(statusJson).toMatchObject({
        dataBlocksTotal: 256,
        volumeCount: 3,
        degraded: { blockIndex: target, message: expect.stringMatching(/thinp repair/) },
      });
      if (which === "data") {
        expect(statusJson.dataBlocksUsed).toBeNull();
        expect(statusJson.metadataBlocksUsed).toEqual(expect.any(Number));
      } else {
        expect(statusJson.dataBlocksUsed).toBe(32);
        expect(statusJson.metadataBlocksUsed).toBeNull();
      }
      const statusText = await runCli(["status"], cwd());
      expect(statusText.exitCode, statusText.stderr).toBe(0);
      const unknownRow =
        which === "data"
          ? /^data blocks\s+unknown of 256 \(the data space map cannot be read\)$/m
          : /^metadata blocks\s+unknown of \d+ \(the metadata space map cannot be read\)$/m;
      expect(statusText.stdout).toMatch(unknownRow);
      expect(statusText.stdout).toMatch(new RegExp(`^degraded\\s+metadata block ${target} `, "m"));

      const exported = await runCli(["export", "b", "b.raw"], cwd());
      expect(exported.exitCode, exported.stderr).toBe(0);
      expect(exported.stderr).toMatch(degradedWarning(target, which));
      const copy = await readFile(path.join(dir, "b.raw"));
      expect(copy.length).toBe(4 * MiB);
      expect(copy.subarray(0, 2 * MiB).equals(image)).toBe(true);
      expect(copy.subarray(2 * MiB).every((byte) => byte === 0)).toBe(true);

      const checked = await runCli(["check"], cwd());
      expect(checked.exitCode).toBe(6);
      expect(checked.stdout).toMatch(new RegExp(`^problem: .*block ${target}\\b`, "m"));
    });
  }

  it("refuses every command that would change it, exit 6 naming the block and 'thinp repair', and leaves both files as they were", async () => {
    const target = (await spaceMapLayout(metaPath(), "data")).indexBlocks[0]!;
    await corruptMetadataBlock(metaPath(), target);
    await writeFile(path.join(dir, "small.raw"), Buffer.alloc(BLOCK_BYTES, 1));
    const metaBefore = await readFile(metaPath());
    const dataBytesBefore = (await stat(path.join(dir, "data.img"))).size;
    const changes = [
      ["create", "x", "--size", "1M"],
      ["snapshot", "a", "s"],
      ["delete", "c"],
      ["resize", "c", "--size", "2M"],
      ["resize-pool", "--size", "32M"],
      ["import", "c", "small.raw"],
    ];
    for (const args of changes) expectRefusedNaming(await runCli(args, cwd()), target, args);
    expect((await readFile(metaPath())).equals(metaBefore)).toBe(true);
    expect((await stat(path.join(dir, "data.img"))).size).toBe(dataBytesBefore);
  });

  it("after 'thinp repair --in-place' it is whole again: no warning, and changes work", async () => {
    const target = (await spaceMapLayout(metaPath(), "metadata")).bitmapLocations[0]!;
    await corruptMetadataBlock(metaPath(), target);
    await runCliOk(["repair", "--in-place"], cwd());
    const listed = await runCli(["list"], cwd());
    expect(listed).toMatchObject({ exitCode: 0, stderr: "" });
    await runCliOk(["create", "x", "--size", "1M"], cwd());
    expect(await runCliOk(["check"], cwd())).toMatch(/^clean$/m);
  });

  it("thinp serve serves it read-only, warning which block and 'thinp repair'; reads work, changes are refused", async () => {
    const target = (await spaceMapLayout(metaPath(), "data")).bitmapLocations[0]!;
    await corruptMetadataBlock(metaPath(), target);
    const metaBefore = await readFile(metaPath());
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    expect(server.stdout).toMatch(/^serving .*meta\.img: 3 volumes, read-only$/m);
    expect(server.stderr).toMatch(
      new RegExp(`warning: metadata block ${target} of \\S*meta\\.img \\(data space map\\) is corrupt: .*'thinp repair'`),
    );

    await runToolOk("qemu-io", ["-r", "-f", "raw", server.uri("b"), "-c", "read -P 0x5a 0 2M", "-c", "read -P 0 2M 2M"]);
    const info = JSON.parse(await runToolOk("nbdinfo", ["--json", server.uri("a")]));
    expect(info.exports[0]).toMatchObject({ "export-size": 4 * MiB, is_read_only: true });
    const written = await runTool("qemu-io", ["-f", "raw", server.uri("a"), "-c", "write -P 1 0 64k"]);
    expect(written.exitCode + written.stdout + written.stderr).toMatch(/read-only|Operation not permitted|Permission denied/i);

    // Through the control socket: reads warn, changes are refused with the same fact.
    const listed = await runCli(["list"], cwd());
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(listed.stderr).toMatch(degradedWarning(target, "data"));
    expect(JSON.parse(await runCliOk(["status", "--json"], cwd()))).toMatchObject({
      dataBlocksUsed: null,
      degraded: { blockIndex: target },
    });
    expectRefusedNaming(await runCli(["create", "x", "--size", "1M"], cwd()), target, ["create"]);

    expect(await server.stop()).toBe(0);
    expect((await readFile(metaPath())).equals(metaBefore)).toBe(true);
  });
});

describe("a pool with a corrupt node in one volume's mapping tree", () => {
  const BIG_BLOCKS = 300;

  beforeEach(async () => {
    dir = await makeTempDir();
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "32M"], cwd());
    // Past one leaf's 254 mappings, so big's tree has a root and two leaves.
    await runCliOk(["create", "big", "--size", "20M"], cwd());
    await writeFile(path.join(dir, "big.raw"), Buffer.alloc(BIG_BLOCKS * BLOCK_BYTES, 0x5a));
    await runCliOk(["import", "big", "big.raw"], cwd());
    await runCliOk(["create", "other", "--size", "4M"], cwd());
    await writeFile(path.join(dir, "other.raw"), Buffer.alloc(MiB, 0x3c));
    await runCliOk(["import", "other", "other.raw"], cwd());
  });

  it("fails only the reads that pass through it: other volumes, and big's other ranges, read fine", async () => {
    const [damaged, intact] = await mappingLeaves(metaPath(), "big");
    expect(intact, "big's tree has two leaves").toBeDefined();
    await corruptMetadataBlock(metaPath(), damaged!.blockIndex);

    const exportedOther = await runCli(["export", "other", "other-out.raw"], cwd());
    expect(exportedOther).toMatchObject({ exitCode: 0, stderr: "" });
    expect((await readFile(path.join(dir, "other-out.raw"))).subarray(0, MiB).equals(Buffer.alloc(MiB, 0x3c))).toBe(true);
    const exportedBig = await runCli(["export", "big", "big-out.raw"], cwd());
    expect(exportedBig.exitCode).toBe(6);
    expect(exportedBig.stderr).toMatch(new RegExp(`^thinp: metadata block ${damaged!.blockIndex} .*corrupt`));

    // list still lists both; big's sharing cannot be counted, and it says why.
    const listed = await runCli(["list", "--json"], cwd());
    expect(listed.exitCode, listed.stderr).toBe(0);
    const volumes = JSON.parse(listed.stdout).volumes;
    expect(volumes).toMatchObject([
      { name: "big", mappedBlocks: BIG_BLOCKS, exclusiveBlocks: null, sharedBlocks: null },
      { name: "other", mappedBlocks: 16, exclusiveBlocks: 16, sharedBlocks: 0 },
    ]);
    expect(listed.stderr).toMatch(
      new RegExp(`^thinp: warning: cannot count the blocks of 'big': metadata block ${damaged!.blockIndex} .*thinp repair`, "m"),
    );

    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const intactStart = intact!.firstKey * BLOCK_BYTES;
    const intactBytes = (intact!.lastKey + 1) * BLOCK_BYTES - intactStart;
    const tailBytes = 20 * MiB - BIG_BLOCKS * BLOCK_BYTES;
    await runToolOk("qemu-io", [
      "-r",
      "-f",
      "raw",
      server.uri("big"),
      "-c",
      `read -P 0x5a ${intactStart} ${intactBytes}`,
      "-c",
      `read -P 0 ${BIG_BLOCKS * BLOCK_BYTES} ${tailBytes}`,
    ]);
    const damagedRead = await runTool("qemu-io", [
      "-r",
      "-f",
      "raw",
      server.uri("big"),
      "-c",
      `read -P 0x5a ${damaged!.firstKey * BLOCK_BYTES} ${BLOCK_BYTES}`,
    ]);
    expect(damagedRead.exitCode).not.toBe(0);
    expect(damagedRead.stdout + damagedRead.stderr).toMatch(/Input\/output error/);
    await runToolOk("qemu-io", ["-r", "-f", "raw", server.uri("other"), "-c", "read -P 0x3c 0 1M", "-c", "read -P 0 1M 3M"]);
    expect(await server.stop()).toBe(0);
  });
});
