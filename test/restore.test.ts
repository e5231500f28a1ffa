// `thinp restore`: a thinp pool over an existing dm-thin data file, from thin_dump's XML.
// The round trip goes through the real tools: a thinp pool with snapshots of snapshots and
// shared blocks, `thinp dump` -> thin_restore (kernel-format metadata) -> thin_dump (0.9 XML)
// -> `thinp restore` over the same data file; every volume must export byte-identical and
// count the same mapped, exclusive and shared blocks. Then what it refuses, and names.

import { createHash } from "node:crypto";
import { mkdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, seededBytes } from "./support/cli-run.js";

const MiB = 1 << 20;
const B = 65536;
let dir: string;
const cwd = () => ({ cwd: dir });
const thinp = (args: string[]) => runCliOk(args, cwd());
const sha256 = async (file: string) =>
  createHash("sha256")
    .update(await readFile(path.join(dir, file)))
    .digest("hex");

interface Listed {
  name: string;
  sizeBytes: number;
  mappedBlocks: number;
  exclusiveBlocks: number;
  sharedBlocks: number;
}
const listed = async (meta: string): Promise<Listed[]> => JSON.parse(await thinp(["list", "--json", "--pool", meta])).volumes;

const SUPERBLOCK = (body: string, blockSectors = 128, blocks = 64) =>
  `<superblock uuid="" time="3" transaction="5" flags="0" version="2" data_block_size="${blockSectors}" nr_data_blocks="${blocks}">\n${body}</superblock>\n`;
const DEVICE = (id: number, body: string, mapped = 0) =>
  `  <device dev_id="${id}" mapped_blocks="${mapped}" transaction="0" creation_time="0" snap_time="1">\n${body}  </device>\n`;

beforeAll(async () => {
  assertCliBuilt();
  dir = await makeTempDir();
}, 60_000);
afterAll(async () => {
  await removeTempDir(dir);
});

describe("thinp restore", () => {
  it("round-trips a pool through thin_restore and thin_dump: same bytes, same sharing, clean check", async () => {
    await thinp(["create-pool", "data.img", "meta.img", "--size", "64M"]);
    const pool = ["--pool", "meta.img"];
    await thinp(["create", "base", "--size", "8M", ...pool]);
    await writeFile(path.join(dir, "a.raw"), seededBytes(4 * MiB, 1));
    await thinp(["import", "base", "a.raw", ...pool]);
    await thinp(["snapshot", "base", "s1", ...pool]);
    await writeFile(path.join(dir, "b.raw"), seededBytes(MiB, 2));
    await thinp(["import", "base", "b.raw", "--offset", "1M", ...pool]);
    await thinp(["snapshot", "s1", "s1a", ...pool]);
    await writeFile(path.join(dir, "c.raw"), seededBytes(B + 512, 3));
    await thinp(["import", "s1a", "c.raw", "--offset", "6M", "--raw", ...pool]);
    const before = await listed("meta.img");
    const exports: Record<string, string> = {};
    for (const volume of before) {
      await thinp(["export", volume.name, `${volume.name}.before.raw`, ...pool]);
      exports[volume.name] = await sha256(`${volume.name}.before.raw`);
    }
    // thinp dump says on stderr which dev_id each volume is, and its size in sectors.
    const dumped = await runCli(["dump", "--output", "thinp.xml", ...pool], cwd());
    expect(dumped.exitCode).toBe(0);
    const names = [...dumped.stderr.matchAll(/dev_id (\d+) is '([^']+)': dmsetup create \S+ --table "0 (\d+) thin/g)].map(
      ([, id, name, sectors]) => `${id} ${name} ${Number(sectors) * 512}`,
    );
    expect(names).toHaveLength(3);
    await writeFile(path.join(dir, "names.txt"), `# dev_id name size\n${names.join("\n")}\n`);
    await writeFile(path.join(dir, "kernel.meta"), "");
    await truncate(path.join(dir, "kernel.meta"), 16 * MiB);
    await runToolOk("thin_restore", ["-i", "thinp.xml", "-o", "kernel.meta"], cwd());
    await runToolOk("thin_check", ["kernel.meta"], cwd());
    const xml = await runToolOk("thin_dump", ["kernel.meta"], cwd());
    await writeFile(path.join(dir, "kernel.xml"), xml);

    const dataBefore = await sha256("data.img");
    const restored = JSON.parse(await thinp(["restore", "kernel.xml", "data.img", "restored.meta", "--names", "names.txt", "--json"]));
    expect(restored.check.clean).toBe(true);
    expect(restored.replacedOwner).toMatch(/meta\.img$/);
    // The data file's bytes are never written.
    expect(await sha256("data.img")).toBe(dataBefore);
    const after = await listed("restored.meta");
    const counts = (volumes: Listed[]) =>
      volumes.map(({ name, sizeBytes, mappedBlocks, exclusiveBlocks, sharedBlocks }) => ({
        name,
        sizeBytes,
        mappedBlocks,
        exclusiveBlocks,
        sharedBlocks,
      }));
    expect(counts(after)).toEqual(counts(before));
    for (const volume of after) {
      await thinp(["export", volume.name, `${volume.name}.after.raw`, "--pool", "restored.meta"]);
      expect(await sha256(`${volume.name}.after.raw`), volume.name).toBe(exports[volume.name]);
    }
    expect(await thinp(["check", "--pool", "restored.meta"])).toContain("clean");
    // The old metadata no longer owns the data file.
    expect((await runCli(["list", "--pool", "meta.img"], cwd())).exitCode).not.toBe(0);
    // The same from the kernel-format metadata itself, with no thin_dump in between.
    const direct = JSON.parse(
      await thinp(["restore", "--from-dm-metadata", "kernel.meta", "data.img", "direct.meta", "--names", "names.txt", "--json"]),
    );
    expect(direct.check.clean).toBe(true);
    expect(counts(await listed("direct.meta"))).toEqual(counts(before));
    for (const volume of before) {
      await thinp(["export", volume.name, `${volume.name}.direct.raw`, "--pool", "direct.meta"]);
      expect(await sha256(`${volume.name}.direct.raw`), volume.name).toBe(exports[volume.name]);
    }
    // The data file now belongs to the newest restore; the one before is refused, as the original was.
    expect((await runCli(["list", "--pool", "restored.meta"], cwd())).exitCode).not.toBe(0);
    // Copy-on-write works from the first write: a write to one snapshot leaves the others.
    await writeFile(path.join(dir, "d.raw"), Buffer.alloc(B, 9));
    await thinp(["import", "s1", "d.raw", "--raw", "--pool", "direct.meta"]);
    await thinp(["export", "base", "base.again.raw", "--pool", "direct.meta"]);
    expect(await sha256("base.again.raw")).toBe(exports.base);
  });

  it("restores thin_dump 1.x's shared runs (def and ref) as blocks the devices share", async () => {
    await writeFile(path.join(dir, "v1.data"), "");
    await truncate(path.join(dir, "v1.data"), 64 * B);
    const xml = SUPERBLOCK(
      `  <def name="7">\n    <range_mapping origin_begin="0" data_begin="10" length="4" time="0"/>\n  </def>\n` +
        DEVICE(1, `    <ref name="7"/>\n    <single_mapping origin_block="9" data_block="20" time="2"/>\n`, 5) +
        DEVICE(2, `    <ref name="7"/>\n`, 4),
    );
    await writeFile(path.join(dir, "v1.xml"), xml);
    await thinp(["restore", "v1.xml", "v1.data", "v1.meta"]);
    expect(
      (await listed("v1.meta")).map(({ name, sizeBytes, mappedBlocks, sharedBlocks }) => [name, sizeBytes, mappedBlocks, sharedBlocks]),
    ).toEqual([
      ["dev1", 10 * B, 5, 4],
      ["dev2", 4 * B, 4, 4],
    ]);
  });

  it("refuses, naming the fact, and leaves no metadata file", async () => {
    await writeFile(path.join(dir, "r.data"), "");
    await truncate(path.join(dir, "r.data"), 16 * B);
    const cases: { xml: string; status: number; message: RegExp }[] = [
      { xml: SUPERBLOCK("", 256), status: 2, message: /data blocks are 256 sectors \(128 KiB\); thinp pools use 64 KiB blocks/ },
      {
        xml: SUPERBLOCK(DEVICE(1, `    <single_mapping origin_block="0" data_block="16" time="0"/>\n`)),
        status: 6,
        message: /maps data block 16, past the data file's 16 blocks/,
      },
      {
        xml: SUPERBLOCK(
          DEVICE(
            1,
            `    <range_mapping origin_begin="0" data_begin="1" length="3" time="0"/>\n    <single_mapping origin_block="2" data_block="9" time="0"/>\n`,
          ),
        ),
        status: 6,
        message: /device 1 maps virtual block 2 again, or out of order.*thin_restore would take it and leak blocks/,
      },
      {
        xml: SUPERBLOCK(DEVICE(1, `    <single_mapping origin_block="0" data_block="1" time="0">\n`)),
        status: 6,
        message: /r\.xml, line \d+, column \d+: /,
      },
      { xml: "<superblock uuid=''", status: 6, message: /r\.xml, line 1, column \d+: / },
    ];
    for (const { xml, status, message } of cases) {
      await writeFile(path.join(dir, "r.xml"), xml);
      const result = await runCli(["restore", "r.xml", "r.data", "r.meta"], cwd());
      expect(result.exitCode, `${xml}\n${result.stderr}`).toBe(status);
      expect(result.stderr, xml).toMatch(message);
      await expect(stat(path.join(dir, "r.meta"))).rejects.toThrow();
    }
  });

  it("names and sizes volumes from Docker's devicemapper metadata, skipping deleted devices", async () => {
    await writeFile(path.join(dir, "docker.data"), "");
    await truncate(path.join(dir, "docker.data"), 64 * B);
    const folder = path.join(dir, "docker-metadata");
    await mkdir(folder);
    const hash = "3f".repeat(32);
    const gone = "ab".repeat(32);
    await writeFile(
      path.join(folder, "base"),
      JSON.stringify({ device_id: 1, size: 10 * MiB, transaction_id: 1, initialized: true, deleted: false }),
    );
    await writeFile(
      path.join(folder, hash),
      JSON.stringify({ device_id: 4, size: 20 * MiB, transaction_id: 3, initialized: false, deleted: false }),
    );
    await writeFile(
      path.join(folder, gone),
      JSON.stringify({ device_id: 5, size: 20 * MiB, transaction_id: 4, initialized: false, deleted: true }),
    );
    await writeFile(path.join(folder, "deviceset-metadata"), JSON.stringify({ next_device_id: 6 }));
    const single = (v: number, d: number) => `    <single_mapping origin_block="${v}" data_block="${d}" time="0"/>\n`;
    await writeFile(
      path.join(dir, "docker.xml"),
      SUPERBLOCK(DEVICE(1, single(0, 1)) + DEVICE(4, single(0, 1) + single(3, 2)) + DEVICE(5, single(0, 3))),
    );
    const out = await thinp(["restore", "docker.xml", "docker.data", "docker.meta", "--docker-metadata", folder]);
    expect(out).toContain("skipped devices marked deleted: 5");
    expect(
      (await listed("docker.meta")).map(({ name, sizeBytes, mappedBlocks, sharedBlocks }) => [name, sizeBytes, mappedBlocks, sharedBlocks]),
    ).toEqual([
      ["base", 10 * MiB, 1, 1],
      [hash, 20 * MiB, 2, 1],
    ]);
    expect(await thinp(["check", "--pool", "docker.meta"])).toContain("clean");
  });
});
