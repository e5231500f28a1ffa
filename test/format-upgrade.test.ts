// Pools written before volumes had identities (metadata format version 1) open unchanged:
// read, listed and checked as they are, left byte for byte as they were by a read-only open,
// and written as version 2 by their first commit, each volume keeping the identity it was
// given when first read. The fixture was made by thinp at format version 1 (commit 2be7694):
// create-pool --size 2M; create base --size 1M; import 512 KiB into base; snapshot base s1;
// import 256 KiB at 256K into base; snapshot base s2 --read-only.

import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkMetadataFile } from "../src/thin/check.js";
import { Pool } from "../src/thin/pool.js";
import { NodeStorageFile } from "../src/io/node-storage-file.js";

const FIXTURE = new URL("./fixtures/pool-format-1/", import.meta.url);
const CONTENTS_SHA256: Record<string, string> = {
  base: "d32ce3186ea2f32b3866359996aa614bd5fe17e3015adb3339b35670fd0103b3",
  s1: "64818a65e90da198871511b360bf1057ad72829d52104b7cc6c88949ed7b4852",
  s2: "d32ce3186ea2f32b3866359996aa614bd5fe17e3015adb3339b35670fd0103b3",
};

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

let dir: string;
let metaPath: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "thinp-format-1-"));
  metaPath = join(dir, "meta.img");
  for (const name of ["meta.img", "data.img"]) {
    await writeFile(join(dir, name), gunzipSync(await readFile(new URL(`${name}.gz`, FIXTURE))));
  }
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function formatVersion(): Promise<number[]> {
  const bytes = await readFile(metaPath);
  // The version is at byte 24 of each superblock copy (formats/metadata.md).
  return [bytes.readUInt32LE(24), bytes.readUInt32LE(4096 + 24)];
}

async function contentsOf(pool: Pool): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const info of await pool.listVolumes()) {
    const volume = await pool.volume(info.name);
    out[info.name] = sha256(await volume.read(0, volume.sizeBytes));
  }
  return out;
}

describe("a pool of metadata format version 1", () => {
  it("opens read-only with every volume, byte and count as written, and is left untouched", async () => {
    const before = sha256(await readFile(metaPath));
    expect(await formatVersion()).toEqual([1, 1]);
    const pool = await Pool.open(metaPath, { readOnly: true });
    expect((await pool.listVolumes()).map((v) => [v.name, v.originName, v.readOnly, v.mappedBlocks])).toEqual([
      ["base", null, false, 8],
      ["s1", "base", false, 8],
      ["s2", "base", true, 8],
    ]);
    expect(await contentsOf(pool)).toEqual(CONTENTS_SHA256);
    expect(await pool.usage("s1")).toEqual({ mappedBlocks: 8, exclusiveBlocks: 4, sharedBlocks: 4 });
    const uuids = (await pool.listVolumes()).map((v) => v.uuid);
    expect(new Set(uuids).size).toBe(3);
    await pool.close();
    const file = await NodeStorageFile.open(metaPath, "read-only", "metadata file");
    expect((await checkMetadataFile(file, metaPath)).problems).toEqual([]);
    await file.close();
    expect(sha256(await readFile(metaPath))).toBe(before);
  });

  it("is written as version 2 by its first commit, each volume keeping the identity it was read with", async () => {
    let pool = await Pool.open(metaPath, { readOnly: true });
    const uuids = Object.fromEntries((await pool.listVolumes()).map((v) => [v.name, v.uuid]));
    await pool.close();
    pool = await Pool.open(metaPath);
    const base = await pool.volume("base");
    await base.write(0, Buffer.alloc(4096, 7));
    await pool.createVolume("fresh", 1 << 20);
    await pool.commit();
    await pool.close();
    expect((await formatVersion()).sort()).toEqual([1, 2]);
    pool = await Pool.open(metaPath, { readOnly: true });
    const after = Object.fromEntries((await pool.listVolumes()).map((v) => [v.name, v.uuid]));
    expect({ base: after.base, s1: after.s1, s2: after.s2 }).toEqual(uuids);
    expect(after.fresh).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const contents = await contentsOf(pool);
    expect(contents.s1).toBe(CONTENTS_SHA256.s1);
    expect(contents.s2).toBe(CONTENTS_SHA256.s2);
    expect(contents.base).not.toBe(CONTENTS_SHA256.base);
    await pool.close();
  });
});
