// The binary dm-thin reader against real kernel-format metadata: thin_restore writes it from
// hand-written thin_dump XML, the reader's events must say what the XML says and what
// thin_dump prints back, and a damaged block must fail as a CorruptBlockError naming it.

import { crc32c } from "@node-rs/crc32";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CorruptBlockError } from "../src/errors.js";
import { NodeStorageFile } from "../src/io/node-storage-file.js";
import { DmMetadataSource } from "../src/thin/adopt/dm-metadata-source.js";
import type { DmThinDevice, DmThinEvent, DmThinMapping, DmThinSuperblock } from "../src/thin/adopt/dm-thin-source.js";
import { REPO_ROOT, makeTempDir, removeTempDir, runProgram } from "./support/cli-run.js";

const execFileAsync = promisify(execFile);
const BLOCK_BYTES = 4096;
const NODE_SALT = 121107;
const SUPERBLOCK_SALT = 160774;

/** What a thin_dump XML file says, written by hand so the test knows every mapping. */
interface PoolSpec {
  superblock: DmThinSuperblock;
  devices: { device: DmThinDevice; mappings: DmThinMapping[] }[];
}

function xmlOf(pool: PoolSpec): string {
  const s = pool.superblock;
  const lines = [
    `<superblock uuid="${s.uuid}" time="${s.time}" transaction="${s.transaction}" flags="0" version="2" ` +
      `data_block_size="${s.dataBlockSectors}" nr_data_blocks="${s.dataBlockCount}">`,
  ];
  for (const { device: d, mappings } of pool.devices) {
    lines.push(
      `  <device dev_id="${d.devId}" mapped_blocks="${d.mappedBlocks}" transaction="${d.transaction}" ` +
        `creation_time="${d.creationTime}" snap_time="${d.snapTime}">`,
    );
    for (const m of mappings) {
      lines.push(
        m.length === 1
          ? `    <single_mapping origin_block="${m.virtualBegin}" data_block="${m.dataBegin}" time="${m.time}"/>`
          : `    <range_mapping origin_begin="${m.virtualBegin}" data_begin="${m.dataBegin}" length="${m.length}" time="${m.time}"/>`,
      );
    }
    lines.push("  </device>");
  }
  lines.push("</superblock>", "");
  return lines.join("\n");
}

function device(devId: number, mappings: DmThinMapping[], times: Partial<DmThinDevice> = {}) {
  const mappedBlocks = mappings.reduce((sum, m) => sum + m.length, 0);
  return { device: { devId, mappedBlocks, transaction: 0, creationTime: 0, snapTime: 0, ...times }, mappings };
}

const run = (virtualBegin: number, dataBegin: number, length: number, time: number): DmThinMapping => ({
  virtualBegin,
  dataBegin,
  length,
  time,
});

/** Every mapping one block at a time, so runs cut differently still compare equal. */
function singles(mappings: readonly DmThinMapping[]): [number, number, number][] {
  return mappings.flatMap((m) =>
    Array.from({ length: m.length }, (_, i): [number, number, number] => [m.virtualBegin + i, m.dataBegin + i, m.time]),
  );
}

/** Maximal runs, as the reader coalesces them. */
function coalesced(mappings: readonly DmThinMapping[]): DmThinMapping[] {
  const runs: DmThinMapping[] = [];
  for (const [virtualBlock, dataBlock, time] of singles(mappings)) {
    const last = runs[runs.length - 1];
    if (last && last.virtualBegin + last.length === virtualBlock && last.dataBegin + last.length === dataBlock && last.time === time) {
      last.length++;
    } else {
      runs.push(run(virtualBlock, dataBlock, 1, time));
    }
  }
  return runs;
}

/** The events the reader must yield for a pool, in thin_dump's order. */
function expectedEvents(pool: PoolSpec): DmThinEvent[] {
  const events: DmThinEvent[] = [{ kind: "superblock", superblock: pool.superblock }];
  for (const { device, mappings } of [...pool.devices].sort((a, b) => a.device.devId - b.device.devId)) {
    events.push({ kind: "device", device });
    for (const mapping of coalesced(mappings)) events.push({ kind: "mapping", mapping });
    events.push({ kind: "end-device" });
  }
  return events;
}

async function restore(dir: string, name: string, pool: PoolSpec, metadataBytes = "16M"): Promise<string> {
  const xmlPath = path.join(dir, `${name}.xml`);
  const metaPath = path.join(dir, `${name}.bin`);
  await writeFile(xmlPath, xmlOf(pool));
  await execFileAsync("truncate", ["-s", metadataBytes, metaPath]);
  await execFileAsync("thin_restore", ["-i", xmlPath, "-o", metaPath], { timeout: 60_000 });
  return metaPath;
}

/** Every event the reader yields, and the position it gave with each. */
async function readEvents(metaPath: string): Promise<{ events: DmThinEvent[]; positions: string[] }> {
  const file = await NodeStorageFile.open(metaPath, "read-only", "dm-thin metadata file");
  try {
    const source = new DmMetadataSource(file);
    const events: DmThinEvent[] = [];
    const positions: string[] = [];
    for await (const event of source.events()) {
      events.push(event);
      positions.push(source.position);
    }
    return { events, positions };
  } finally {
    await file.close();
  }
}

async function readError(metaPath: string): Promise<CorruptBlockError> {
  const error: unknown = await readEvents(metaPath).then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(CorruptBlockError);
  return error as CorruptBlockError;
}

/** thin_dump's own reading of the file, parsed simply: the superblock's numbers, each device and its blocks. */
async function thinDump(metaPath: string) {
  const { stdout } = await execFileAsync("thin_dump", [metaPath], { timeout: 60_000, maxBuffer: 64 << 20 });
  const attrs = (line: string) => Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const devices: { attrs: Record<string, string | undefined>; blocks: [number, number, number][] }[] = [];
  let superblock: Record<string, string | undefined> = {};
  for (const line of stdout.split("\n")) {
    const a = attrs(line);
    if (line.includes("<superblock")) superblock = a;
    else if (line.includes("<device")) devices.push({ attrs: a, blocks: [] });
    else if (line.includes("_mapping")) {
      const mapping = line.includes("<single_mapping")
        ? run(Number(a.origin_block), Number(a.data_block), 1, Number(a.time))
        : run(Number(a.origin_begin), Number(a.data_begin), Number(a.length), Number(a.time));
      devices[devices.length - 1]!.blocks.push(...singles([mapping]));
    }
  }
  return { superblock, devices };
}

/** The kernel's dm_bm_checksum(), written out again here so the reader's is checked against it. */
function kernelChecksum(block: Buffer, salt: number): number {
  return (crc32c(block.subarray(4)) ^ 0xffffffff ^ salt) >>> 0;
}

async function readBlock(metaPath: string, blockIndex: number): Promise<Buffer> {
  const handle = await open(metaPath, "r");
  try {
    const block = Buffer.alloc(BLOCK_BYTES);
    await handle.read(block, 0, BLOCK_BYTES, blockIndex * BLOCK_BYTES);
    return block;
  } finally {
    await handle.close();
  }
}

/** Flips bits of one byte of a block. */
function flip(block: Buffer, byteOffset: number, bits: number): void {
  block.writeUInt8(block.readUInt8(byteOffset) ^ bits, byteOffset);
}

/** Changes one block of a copy of the file: `reseal` gives it a valid checksum again, so only the change is wrong. */
async function damagedCopy(
  metaPath: string,
  copyName: string,
  blockIndex: number,
  change: (block: Buffer) => void,
  reseal: number | null,
): Promise<string> {
  const copy = path.join(path.dirname(metaPath), copyName);
  await writeFile(copy, await readFile(metaPath));
  const block = await readBlock(copy, blockIndex);
  change(block);
  if (reseal !== null) block.writeUInt32LE(kernelChecksum(block, reseal), 0);
  const handle = await open(copy, "r+");
  try {
    await handle.write(block, 0, BLOCK_BYTES, blockIndex * BLOCK_BYTES);
  } finally {
    await handle.close();
  }
  return copy;
}

/** A node's header fields and its i-th key and u64 value, as the kernel lays them out. */
function nodeHeader(block: Buffer) {
  const maxEntries = block.readUInt32LE(20);
  const valueBytes = block.readUInt32LE(24);
  return {
    flags: block.readUInt32LE(4),
    entryCount: block.readUInt32LE(16),
    maxEntries,
    keyOffset: (i: number) => 32 + 8 * i,
    valueOffset: (i: number) => 32 + 8 * maxEntries + valueBytes * i,
  };
}

/** The root of one device's mapping tree, looked up through the superblock and the top-level leaf. */
async function deviceTreeRoot(metaPath: string, devId: number): Promise<number> {
  const superblock = await readBlock(metaPath, 0);
  const topLevel = await readBlock(metaPath, Number(superblock.readBigUInt64LE(320)));
  const header = nodeHeader(topLevel);
  expect(header.flags, "the top level of a few devices is one leaf").toBe(2);
  for (let i = 0; i < header.entryCount; i++) {
    if (Number(topLevel.readBigUInt64LE(header.keyOffset(i))) === devId) return Number(topLevel.readBigUInt64LE(header.valueOffset(i)));
  }
  throw new Error(`device ${devId} not in the top level`);
}

const MANY = 3000;

/** Four devices: runs and singles; a snapshot sharing blocks with its origin; one with internal nodes; one empty. */
const POOL: PoolSpec = {
  superblock: { uuid: "", time: 5, transaction: 42, dataBlockSectors: 128, dataBlockCount: 100_000 },
  devices: [
    device(1, [run(0, 100, 8, 0), run(8, 300, 1, 1), run(20, 400, 3, 2), run(1_000_000, 500, 1, 0)], {
      transaction: 3,
      creationTime: 0,
      snapTime: 2,
    }),
    // A snapshot of 1: it shares data blocks 100..107 and 400..402, and has written its own at 4..5.
    device(2, [run(0, 100, 4, 0), run(4, 600, 2, 3), run(6, 106, 2, 0), run(20, 400, 3, 2)], {
      transaction: 4,
      creationTime: 2,
      snapTime: 2,
    }),
    // Scattered singles with alternating times, so none coalesce: twelve leaves under an internal node.
    device(
      3,
      Array.from({ length: MANY }, (_, i) => run(2 * i, 10_000 + i, 1, i % 2)),
      { transaction: 5, creationTime: 1, snapTime: 1 },
    ),
    device(7, [], { transaction: 6, creationTime: 4, snapTime: 4 }),
  ],
};

describe("reading dm-thin's binary metadata", () => {
  let dir: string;
  let metaPath: string;

  beforeAll(async () => {
    dir = await makeTempDir();
    metaPath = await restore(dir, "pool", POOL);
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("yields the superblock, then each device with its mappings as runs, as the XML says", async () => {
    const { events } = await readEvents(metaPath);
    expect(events).toEqual(expectedEvents(POOL));
    // A range stays one event; a snapshot's shared run is cut where its own blocks begin.
    expect(events.filter((e) => e.kind === "mapping").slice(0, 2)).toEqual([
      { kind: "mapping", mapping: run(0, 100, 8, 0) },
      { kind: "mapping", mapping: run(8, 300, 1, 1) },
    ]);
  });

  it("agrees with what thin_dump reads from the same file", async () => {
    const { events } = await readEvents(metaPath);
    const dump = await thinDump(metaPath);
    const first = events[0];
    expect(first?.kind).toBe("superblock");
    if (first?.kind !== "superblock") return;
    expect({
      time: Number(dump.superblock.time),
      transaction: Number(dump.superblock.transaction),
      dataBlockSectors: Number(dump.superblock.data_block_size),
      dataBlockCount: Number(dump.superblock.nr_data_blocks),
    }).toEqual({ ...first.superblock, uuid: undefined });
    const ours: { attrs: Record<string, string>; blocks: [number, number, number][] }[] = [];
    for (const event of events) {
      if (event.kind === "device") {
        const d = event.device;
        ours.push({
          attrs: {
            dev_id: String(d.devId),
            mapped_blocks: String(d.mappedBlocks),
            transaction: String(d.transaction),
            creation_time: String(d.creationTime),
            snap_time: String(d.snapTime),
          },
          blocks: [],
        });
      } else if (event.kind === "mapping") {
        ours[ours.length - 1]!.blocks.push(...singles([event.mapping]));
      }
    }
    expect(ours).toEqual(dump.devices);
    expect(ours.find((d) => d.attrs.dev_id === "3")?.blocks).toHaveLength(MANY);
  });

  it("a device with many mappings has a tree of internal nodes over leaves, and every leaf is named", async () => {
    const root = await readBlock(metaPath, await deviceTreeRoot(metaPath, 3));
    expect(nodeHeader(root).flags, "internal node").toBe(1);
    const { events, positions } = await readEvents(metaPath);
    const leaves = new Set(
      positions.filter((p, i) => events[i]?.kind === "mapping" && p.includes("device 3's mapping tree")).map((p) => p.split(" ")[2]),
    );
    expect(leaves.size).toBeGreaterThanOrEqual(Math.ceil(MANY / 252));
  });

  it("a pool of hundreds of devices walks both dev_id trees in step past their first leaf", async () => {
    const many: PoolSpec = {
      superblock: { uuid: "", time: 1, transaction: 1, dataBlockSectors: 128, dataBlockCount: 1000 },
      devices: Array.from({ length: 300 }, (_, i) => device(3 * i + 1, i % 5 === 0 ? [] : [run(i, i, 1, 0)])),
    };
    const manyPath = await restore(dir, "many-devices", many);
    const superblock = await readBlock(manyPath, 0);
    for (const rootOffset of [320, 328]) {
      const root = await readBlock(manyPath, Number(superblock.readBigUInt64LE(rootOffset)));
      expect(nodeHeader(root).flags, "both dev_id trees have an internal root").toBe(1);
    }
    expect((await readEvents(manyPath)).events).toEqual(expectedEvents(many));
  });

  it("the uuid thin_restore stores is given back", async () => {
    const named: PoolSpec = { ...POOL, superblock: { ...POOL.superblock, uuid: "pool-7f3a" }, devices: [device(1, [run(0, 0, 1, 0)])] };
    const first = (await readEvents(await restore(dir, "uuid", named))).events[0];
    expect(first).toEqual({ kind: "superblock", superblock: named.superblock });
  });

  it("a flipped byte in the superblock is a checksum error on block 0", async () => {
    const copy = await damagedCopy(metaPath, "bad-sb.bin", 0, (b) => flip(b, 100, 0x01), null);
    const error = await readError(copy);
    expect(error).toMatchObject({ blockIndex: 0, kind: "checksum" });
    expect(error.message).toMatch(/^metadata block 0 is corrupt: dm-thin superblock checksum mismatch/);
  });

  it("a flipped byte in a leaf is a checksum error naming the leaf and its device's tree", async () => {
    const { events, positions } = await readEvents(metaPath);
    const at = events.findIndex((e, i) => e.kind === "mapping" && positions[i]!.includes("device 3's"));
    const leafIndex = Number(/^metadata block (\d+)/.exec(positions[at]!)![1]);
    const copy = await damagedCopy(metaPath, "bad-leaf.bin", leafIndex, (b) => flip(b, 2000, 0x80), null);
    const error = await readError(copy);
    expect(error).toMatchObject({ blockIndex: leafIndex, kind: "checksum", path: "device 3's mapping tree" });
    expect(error.message).toContain(`metadata block ${leafIndex} of device 3's mapping tree is corrupt`);
  });

  it("a flipped byte in an internal node is a checksum error naming it", async () => {
    const rootIndex = await deviceTreeRoot(metaPath, 3);
    const copy = await damagedCopy(metaPath, "bad-internal.bin", rootIndex, (b) => flip(b, 40, 0x04), null);
    expect(await readError(copy)).toMatchObject({ blockIndex: rootIndex, kind: "checksum", path: "device 3's mapping tree" });
  });

  it("a superblock that verifies but has the wrong magic or version is refused", async () => {
    const magic = await damagedCopy(metaPath, "magic.bin", 0, (b) => b.writeUInt32LE(12345, 32), SUPERBLOCK_SALT);
    expect(await readError(magic)).toMatchObject({
      blockIndex: 0,
      kind: "bad-superblock",
      reason: expect.stringContaining("magic is 12345"),
    });
    const version = await damagedCopy(metaPath, "version.bin", 0, (b) => b.writeUInt32LE(3, 40), SUPERBLOCK_SALT);
    expect(await readError(version)).toMatchObject({ blockIndex: 0, kind: "bad-superblock", reason: expect.stringContaining("version 3") });
  });

  it("a root pointing at an unused block finds zeros; pointing past the device is out of range", async () => {
    const zeros = await damagedCopy(metaPath, "zeros.bin", 0, (b) => b.writeBigUInt64LE(4000n, 328), SUPERBLOCK_SALT);
    expect(await readError(zeros)).toMatchObject({ blockIndex: 4000, kind: "wrong-type", path: "the device-details tree" });
    const beyond = await damagedCopy(metaPath, "beyond.bin", 0, (b) => b.writeBigUInt64LE(1n << 40n, 320), SUPERBLOCK_SALT);
    expect(await readError(beyond)).toMatchObject({ blockIndex: 0, kind: "pointer-out-of-range" });
  });

  it("a node where the superblock should be is a wrong-type error", async () => {
    const node = await readBlock(metaPath, await deviceTreeRoot(metaPath, 3));
    const copy = await damagedCopy(metaPath, "sb-is-node.bin", 0, (b) => node.copy(b), null);
    const error = await readError(copy);
    expect(error).toMatchObject({ blockIndex: 0, kind: "wrong-type" });
    expect(error.reason).toContain("found a B-tree node");
  });

  it("a node whose checksum holds but whose contents do not is named with what is wrong", async () => {
    const rootIndex = await deviceTreeRoot(metaPath, 3);
    const root = nodeHeader(await readBlock(metaPath, rootIndex));
    const cases: [string, (b: Buffer) => void, string, RegExp][] = [
      ["swapped keys", (b) => b.writeBigUInt64LE(1n << 30n, root.keyOffset(0)), "bad-node", /key 1 .* does not follow key 0/],
      ["misdirected", (b) => b.writeBigUInt64LE(BigInt(rootIndex + 1), 8), "wrong-block-number", /says it is block/],
      ["no kind", (b) => b.writeUInt32LE(0, 4), "bad-node", /neither internal nor leaf/],
      ["too many entries", (b) => b.writeUInt32LE(root.maxEntries + 1, 16), "bad-node", /exceed the node's max/],
      ["oversized", (b) => b.writeUInt32LE(1000, 20), "bad-node", /do not fit a block/],
      [
        "child beyond",
        (b) => b.writeBigUInt64LE(1n << 33n, root.valueOffset(1)),
        "pointer-out-of-range",
        /child 1 points to block 8589934592/,
      ],
    ];
    for (const [name, change, kind, reason] of cases) {
      const copy = await damagedCopy(metaPath, `${name.replace(/ /g, "-")}.bin`, rootIndex, change, NODE_SALT);
      const error = await readError(copy);
      expect(error, name).toMatchObject({ blockIndex: rootIndex, kind, path: "device 3's mapping tree" });
      expect(error.reason, name).toMatch(reason);
    }
  });

  it("a child whose keys lie outside the range its parent gives is refused", async () => {
    const rootIndex = await deviceTreeRoot(metaPath, 3);
    const root = nodeHeader(await readBlock(metaPath, rootIndex));
    // Raising the parent's key for child 1 leaves child 1's first keys below its range.
    const copy = await damagedCopy(
      metaPath,
      "range.bin",
      rootIndex,
      (b) => b.writeBigUInt64LE(b.readBigUInt64LE(root.keyOffset(1)) + 2n, root.keyOffset(1)),
      NODE_SALT,
    );
    const error = await readError(copy);
    expect(error).toMatchObject({ kind: "bad-node", path: "device 3's mapping tree" });
    expect(error.reason).toMatch(new RegExp(`the range block ${rootIndex} gives this child`));
  });

  it("a mapping beyond the pool's data blocks is out of range, naming its leaf", async () => {
    const { events, positions } = await readEvents(metaPath);
    const leafIndex = Number(/^metadata block (\d+)/.exec(positions[events.findIndex((e) => e.kind === "mapping")]!)![1]);
    // Data block 2^39 at time 0: the block sits in the high 40 bits.
    const copy = await damagedCopy(
      metaPath,
      "data-beyond.bin",
      leafIndex,
      (b) => b.writeBigUInt64LE((1n << 39n) << 24n, nodeHeader(b).valueOffset(0)),
      NODE_SALT,
    );
    const error = await readError(copy);
    expect(error).toMatchObject({ blockIndex: leafIndex, kind: "pointer-out-of-range", path: "device 1's mapping tree" });
    expect(error.reason).toContain(`maps data block ${2 ** 39}, beyond the pool's 100000 data blocks`);
  });

  it("a file cut short names the pointer past its end", async () => {
    const cut = path.join(dir, "cut.bin");
    const rootIndex = await deviceTreeRoot(metaPath, 3);
    await writeFile(cut, (await readFile(metaPath)).subarray(0, rootIndex * BLOCK_BYTES));
    const error = await readError(cut);
    expect(error).toMatchObject({ kind: "pointer-out-of-range" });
    expect(error.reason).toMatch(/beyond the end of .*cut\.bin .*cut short/);
  });
});

describe("reading a large dm-thin pool", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await makeTempDir();
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("10^6 mappings stream through in well under 256 MiB of memory", async () => {
    const count = 1_000_000;
    const lines = [`<superblock uuid="" time="1" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="${count}">`];
    lines.push(`  <device dev_id="1" mapped_blocks="${count}" transaction="0" creation_time="0" snap_time="0">`);
    // Every other virtual block, so no two mappings coalesce and each is its own event.
    for (let i = 0; i < count; i++) lines.push(`    <single_mapping origin_block="${2 * i}" data_block="${i}" time="0"/>`);
    lines.push("  </device>", "</superblock>", "");
    const xmlPath = path.join(dir, "big.xml");
    const metaPath = path.join(dir, "big.bin");
    await writeFile(xmlPath, lines.join("\n"));
    await execFileAsync("truncate", ["-s", "128M", metaPath]);
    await execFileAsync("thin_restore", ["-i", xmlPath, "-o", metaPath], { timeout: 120_000 });
    // A fresh process, so the figure is the reader's and not this test runner's.
    const source = path.join(REPO_ROOT, "dist", "src", "thin", "adopt", "dm-metadata-source.js");
    const storage = path.join(REPO_ROOT, "dist", "src", "io", "node-storage-file.js");
    if (!existsSync(source)) throw new Error(`${source} is missing: run 'npm run build' (or 'npm test', which builds first)`);
    const script = `
      const { DmMetadataSource } = await import(${JSON.stringify(source)});
      const { NodeStorageFile } = await import(${JSON.stringify(storage)});
      const file = await NodeStorageFile.open(${JSON.stringify(metaPath)}, "read-only", "metadata");
      let mappings = 0, next = 0;
      for await (const event of new DmMetadataSource(file).events()) {
        if (event.kind !== "mapping") continue;
        if (event.mapping.virtualBegin !== 2 * next || event.mapping.dataBegin !== next) throw new Error("out of order at " + next);
        mappings++; next++;
      }
      await file.close();
      console.log(JSON.stringify({ mappings, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));`;
    const result = await runProgram(process.execPath, ["--input-type=module", "-e", script], { timeoutMs: 120_000 });
    expect(result.stderr).toBe("");
    const { mappings, maxRssBytes } = JSON.parse(result.stdout) as { mappings: number; maxRssBytes: number };
    expect(mappings).toBe(count);
    // The bound for a restore of 10^6 mappings; alone it peaks near 64 MiB, under a loaded machine higher.
    expect(maxRssBytes).toBeLessThan(256 * 2 ** 20);
  });
});
