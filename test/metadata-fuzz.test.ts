// Fuzzes everything that reads a pool's metadata: seeded random damage to a valid metadata
// file, then open, list, read, extents, check and repair, each of which must succeed or
// fail with a typed error (never an assertion or another exception), finish in bounded
// time, and, where the damage is of a kind checksums catch, never return anything but
// the original data. See test/fuzz-metadata/ for the pools, the damage and the contract.
//
// Replay one case: THINP_SEED=<seed> npx vitest run test/metadata-fuzz.test.ts
// More cases:      THINP_SEEDS=20000 npx vitest run test/metadata-fuzz.test.ts

import { beforeAll, describe, expect, it } from "vitest";
import { CorruptBlockError } from "../src/errors.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { writeU64 } from "../src/io/integers.js";
import { BlockType, METADATA_BLOCK_BYTES, sealBlock } from "../src/pdata/block-format.js";
import { CHILD_VALUE_BYTES, maxEntriesFor, nodeValuesOffset } from "../src/pdata/btree/node.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { SNAPSHOT_TIME_MAX } from "../src/thin/limits.js";
import { decodeMapping, encodeMapping } from "../src/thin/mapping-value.js";
import { SPACE_MAP_ROOT_LAYOUT, SUPERBLOCK_LAYOUT } from "../src/thin/superblock.js";
import { Pool } from "../src/thin/pool.js";
import { repairMetadataFile } from "../src/thin/repair.js";
import { corrupt } from "./fuzz-metadata/corruptions.js";
import { exerciseCase } from "./fuzz-metadata/exercise.js";
import { buildFuzzPools, type FuzzPool } from "./fuzz-metadata/fuzz-pools.js";
import { SeededRandom, testSeeds } from "./support/random.js";

const CASES = 3000;
/** Far beyond what a case takes (milliseconds): only a hang gets here. */
const CASE_TIMEOUT_MS = 10_000;
/** Repair costs more than reading: it runs on this share of the cases. */
const REPAIR_ONE_IN = 4;
const FAILURES_SHOWN_MAX = Number(process.env.THINP_FUZZ_SHOWN ?? 20);
/** Cases take a few milliseconds each; a longer campaign (THINP_SEEDS) gets time in proportion. */
const CASE_BUDGET_MS = 40;

function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not finish within ${timeoutMs} ms (a hang)`)), timeoutMs);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

describe("metadata reader under random damage", () => {
  let pools: FuzzPool[];
  beforeAll(async () => {
    pools = await buildFuzzPools();
  });

  const seeds = testSeeds(CASES);
  it(
    `${seeds.length} seeded corruptions: typed errors only, no hangs, never wrong data`,
    { timeout: Math.max(120_000, seeds.length * CASE_BUDGET_MS) },
    async () => {
      const failures: string[] = [];
      for (const seed of seeds) {
        const random = new SeededRandom(seed);
        const pool = random.pick(pools);
        const file = new MemoryStorageFile("meta", pool.meta.pages.clone());
        const corruption = await corrupt(file, pool, random);
        const repair = random.below(REPAIR_ONE_IN) === 0;
        let violations: string[];
        try {
          violations = await withTimeout(exerciseCase(file, pool, random, { family: corruption.family, repair }), CASE_TIMEOUT_MS);
        } catch (error) {
          violations = [(error as Error).message];
        }
        for (const violation of violations) {
          failures.push(
            `seed ${seed}, pool ${pool.name}, ${corruption.family} damage: ${corruption.description}${repair ? ", with repair" : ""}\n  ${violation}`,
          );
        }
      }
      const shown = failures.slice(0, FAILURES_SHOWN_MAX).join("\n");
      expect(
        failures.length,
        `${failures.length} violations in ${seeds.length} cases (seeds ${seeds[0]}..${seeds[seeds.length - 1]}):\n${shown}`,
      ).toBe(0);
    },
  );
});

// Each of these was found by the fuzzer above, as an assertion or a RangeError where a
// typed CorruptBlockError belongs; the fuzzer may take many thousands of cases to meet one
// again, so each is pinned here.
describe("metadata that verifies but says the impossible is corrupt, not a crash", () => {
  async function smallPool() {
    const meta = new MemoryStorageFile("meta");
    const data = new MemoryStorageFile("data");
    const pool = await Pool.formatFiles(meta, data, { sizeBytes: 16 << 20 });
    await pool.createVolume("v", 1 << 20);
    await (await pool.volume("v")).write(0, Buffer.alloc(4096, 7));
    await pool.commit();
    await pool.close();
    return { meta, data };
  }

  /** Edits both superblock copies and re-seals them, as a bug in the engine could write them. */
  async function editSuperblocks(meta: MemoryStorageFile, edit: (block: Buffer) => void): Promise<void> {
    for (const slot of [0, 1]) {
      const block = Buffer.alloc(METADATA_BLOCK_BYTES);
      await meta.read(block, slot * METADATA_BLOCK_BYTES);
      edit(block);
      sealBlock(block, BlockType.Superblock, slot);
      await meta.write(block, slot * METADATA_BLOCK_BYTES);
    }
  }

  async function expectCorruptEverywhere(meta: MemoryStorageFile, data: MemoryStorageFile, reason: RegExp): Promise<void> {
    await expect(Pool.openFiles(meta, data)).rejects.toThrow(CorruptBlockError);
    await expect(checkMetadataFile(meta, "meta")).rejects.toThrow(reason);
    await expect(repairMetadataFile(meta, "meta", new MemoryStorageFile("out"), "out", data)).rejects.toThrow(CorruptBlockError);
  }

  it("a superblock whose space maps claim more blocks than a pool can have", async () => {
    const blockCountFields = [SUPERBLOCK_LAYOUT.dataSpaceMap, SUPERBLOCK_LAYOUT.metadataSpaceMap].map(
      (root) => root.offset + SPACE_MAP_ROOT_LAYOUT.blockCount.offset,
    );
    for (const offset of blockCountFields) {
      const { meta, data } = await smallPool();
      await editSuperblocks(meta, (block) => writeU64(block, offset, 2 ** 39));
      await expectCorruptEverywhere(meta, data, /superblock fields are out of range/);
    }
  });

  /** A volume whose mapping tree has two levels; returns its root, an internal node. */
  async function twoLevelPool() {
    const meta = new MemoryStorageFile("meta");
    const data = new MemoryStorageFile("data");
    const pool = await Pool.formatFiles(meta, data, { sizeBytes: 32 << 20 });
    await pool.createVolume("v", 20 << 20);
    const volume = await pool.volume("v");
    for (let block = 0; block < 300; block++) await volume.write(block * 65536, Buffer.alloc(512, block));
    await pool.commit();
    const root = (await pool.transactions.read((metadata) => metadata.findVolume("v")))!.record.mappingRoot;
    await pool.close();
    return { meta, data, root };
  }

  /** Where an internal node keeps its child pointers: after its keys. */
  const CHILD_VALUES_AT = nodeValuesOffset(maxEntriesFor(CHILD_VALUE_BYTES));

  /** Points the second child of an internal node elsewhere and re-seals the node. */
  async function repointSecondChild(meta: MemoryStorageFile, node: number, target: number): Promise<void> {
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await meta.read(block, node * METADATA_BLOCK_BYTES);
    writeU64(block, CHILD_VALUES_AT + CHILD_VALUE_BYTES, target);
    sealBlock(block, BlockType.BTreeNode, node);
    await meta.write(block, node * METADATA_BLOCK_BYTES);
  }

  it("a tree node pointing past the end of the metadata file", async () => {
    const { meta, data, root } = await twoLevelPool();
    await repointSecondChild(meta, root, 2 ** 30);
    const pool = await Pool.openFiles(meta, data);
    const volume = await pool.volume("v");
    await expect(volume.read(299 * 65536, 512)).rejects.toMatchObject({ kind: "pointer-out-of-range", blockIndex: 2 ** 30 });
    await expect(volume.extents(0, 20 << 20)).rejects.toThrow(CorruptBlockError);
    await expect(volume.write(299 * 65536, Buffer.alloc(512))).rejects.toThrow(CorruptBlockError);
    await pool.close();
    expect((await checkMetadataFile(meta, "meta")).clean).toBe(false);
  });

  it("a child pointer past 2^53 is one problem check lists, not the end of the check", async () => {
    const { meta, root } = await twoLevelPool();
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await meta.read(block, root * METADATA_BLOCK_BYTES);
    block.writeUInt32LE(0xffffffff, CHILD_VALUES_AT + CHILD_VALUE_BYTES + 4); // the high word of the second child pointer
    sealBlock(block, BlockType.BTreeNode, root);
    await meta.write(block, root * METADATA_BLOCK_BYTES);
    const report = await checkMetadataFile(meta, "meta");
    expect(report.clean).toBe(false);
    expect(report.problems).toContainEqual({ blockIndex: root, message: expect.stringMatching(/child pointer 1 out of range/) });
  });

  it("tree nodes that point in a loop", async () => {
    const { meta, data, root } = await twoLevelPool();
    await repointSecondChild(meta, root, root);
    const pool = await Pool.openFiles(meta, data);
    const volume = await pool.volume("v");
    await expect(volume.read(299 * 65536, 512)).rejects.toMatchObject({ kind: "loop", blockIndex: root });
    await expect(volume.write(299 * 65536, Buffer.alloc(512))).rejects.toThrow(CorruptBlockError);
    await expect(volume.read(0, 512)).resolves.toEqual(Buffer.alloc(512, 0));
    await pool.close();
    expect((await checkMetadataFile(meta, "meta")).clean).toBe(false);
    // Repair keeps the first leaf and refuses the loop, losing what the second child held.
    const report = await repairMetadataFile(meta, "meta", new MemoryStorageFile("out"), "out", data);
    const [outcome] = report.volumes;
    expect(outcome!.lostSubtrees).toEqual([
      { blockIndex: root, reason: "the node is reached twice in one tree", virtualBlocks: expect.anything() },
    ]);
    expect(outcome!.mappingsKept).toBeGreaterThan(250);
    expect(outcome!.mappingsKept + outcome!.mappingsLost).toBe(300);
  });

  it("a superblock whose snapshot time is past the limit every mapping is written with", async () => {
    const { meta, data } = await smallPool();
    await editSuperblocks(meta, (block) => block.writeUInt32LE(2 ** 24, SUPERBLOCK_LAYOUT.snapshotTime.offset));
    await expectCorruptEverywhere(meta, data, /superblock fields are out of range/);
  });
});

describe("mapping values", () => {
  // Found by the fuzzer through repair of a superblock with a large snapshot time.
  it("encode every snapshot time up to the limit, past 2^23 too", () => {
    for (const time of [0, 1, 2 ** 23 - 1, 2 ** 23, 2 ** 23 + 5, SNAPSHOT_TIME_MAX]) {
      for (const dataBlock of [0, 12345, 2 ** 32 + 7, 2 ** 40 - 1]) {
        expect(decodeMapping(encodeMapping({ dataBlock, time }))).toEqual({ dataBlock, time });
      }
    }
  });
});
