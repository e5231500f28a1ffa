// `pool.diff` against a model that compares every mapping of both volumes, over random
// histories of writes, discards, snapshots and commits; and the walk's cost: subtrees two
// snapshots share are passed without a read. Failures name the seed:
// THINP_SEED=<seed> npx vitest run test/volume-diff.test.ts

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import type { DiffKind, DiffRange } from "../src/thin/api.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { SeededRandom, testSeeds } from "./support/random.js";

const POOL_BYTES = 8192 * DATA_BLOCK_BYTES;

async function mappingsOf(pool: Pool, name: string): Promise<Map<number, number>> {
  return pool.transactions.read(async (metadata) => {
    const state = await metadata.requireVolume(name);
    const mappings = new Map<number, number>();
    await metadata.forEachMapping(state, 0, Number.MAX_SAFE_INTEGER, (virtualBlock, dataBlock) => mappings.set(virtualBlock, dataBlock));
    return mappings;
  });
}

/** The model: every block either volume maps, classified, merged into ranges. */
async function modelDiff(pool: Pool, from: string, to: string, includeSame: boolean): Promise<DiffRange[]> {
  const left = await mappingsOf(pool, from);
  const right = await mappingsOf(pool, to);
  const sizeBytes = Math.max((await pool.volume(from)).sizeBytes, (await pool.volume(to)).sizeBytes);
  const blocks = [...new Set([...left.keys(), ...right.keys()])].sort((a, b) => a - b);
  const ranges: DiffRange[] = [];
  for (const block of blocks) {
    const l = left.get(block);
    const r = right.get(block);
    const kind: DiffKind = l === undefined ? "right_only" : r === undefined ? "left_only" : l === r ? "same" : "different";
    if (kind === "same" && !includeSame) continue;
    const offset = block * DATA_BLOCK_BYTES;
    const length = Math.min(sizeBytes, offset + DATA_BLOCK_BYTES) - offset;
    const last = ranges[ranges.length - 1];
    if (last && last.kind === kind && last.offset + last.length === offset) last.length += length;
    else ranges.push({ kind, offset, length });
  }
  return ranges;
}

async function collect(ranges: AsyncIterable<DiffRange>): Promise<DiffRange[]> {
  const out: DiffRange[] = [];
  for await (const range of ranges) out.push(range);
  return out;
}

describe("diff between volumes", () => {
  for (const seed of testSeeds(4)) {
    it(`lists exactly the blocks the model finds differ, over random histories (seed ${seed})`, async () => {
      const random = new SeededRandom(seed);
      const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: POOL_BYTES });
      // 1,200 blocks: trees of several leaves, so the diff has shared subtrees to skip.
      const volumeBytes = 1200 * DATA_BLOCK_BYTES;
      await pool.createVolume("base", volumeBytes);
      const names = ["base"];
      const volume = await pool.volume("base");
      for (let step = 0; step < 40; step++) {
        const roll = random.below(10);
        if (roll < 6) {
          const block = random.below(1200);
          const count = 1 + random.below(random.below(4) === 0 ? 200 : 4);
          const length = Math.min(count, 1200 - block) * DATA_BLOCK_BYTES;
          await volume.write(block * DATA_BLOCK_BYTES, random.bytes(length));
        } else if (roll < 7) {
          const block = random.below(1200);
          await volume.discard(block * DATA_BLOCK_BYTES, Math.min(1 + random.below(50), 1200 - block) * DATA_BLOCK_BYTES);
        } else if (roll < 9) {
          const name = `s${step}`;
          await pool.snapshot("base", name);
          names.push(name);
        } else await pool.commit();
      }
      for (let i = 0; i < 12; i++) {
        const from = random.pick(names);
        const to = random.pick(names);
        const includeSame = random.below(3) === 0;
        const context = `seed ${seed}: diff ${from} ${to}${includeSame ? " with same" : ""}`;
        const whole = await modelDiff(pool, from, to, includeSame);
        expect(await collect(pool.diff(from, to, { includeSame })), context).toEqual(whole);
        // A block window gives the whole diff's ranges cut to that window.
        const fromBlock = random.below(1200);
        const toBlock = fromBlock + random.below(1300 - fromBlock);
        const windowed = whole.flatMap((range) => {
          const start = Math.max(range.offset, fromBlock * DATA_BLOCK_BYTES);
          const end = Math.min(range.offset + range.length, toBlock * DATA_BLOCK_BYTES);
          return start < end ? [{ kind: range.kind, offset: start, length: end - start }] : [];
        });
        expect(await collect(pool.diff(from, to, { includeSame, fromBlock, toBlock })), `${context} [${fromBlock}, ${toBlock})`).toEqual(
          windowed,
        );
      }
      await pool.close();
    });
  }

  it("reads only the nodes on the paths to what changed, however large the volumes", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: POOL_BYTES });
    const blocks = 6016;
    await pool.createVolume("base", blocks * DATA_BLOCK_BYTES);
    const volume = await pool.volume("base");
    for (let block = 0; block < blocks; block += 64) await volume.write(block * DATA_BLOCK_BYTES, Buffer.alloc(64 * DATA_BLOCK_BYTES, 1));
    await pool.snapshot("base", "s1");
    await volume.write(17 * DATA_BLOCK_BYTES, Buffer.alloc(DATA_BLOCK_BYTES, 2));
    await volume.write(4321 * DATA_BLOCK_BYTES, Buffer.alloc(DATA_BLOCK_BYTES, 2));
    await pool.snapshot("base", "s2");
    const counts = await pool.transactions.read(async (metadata) => {
      const s1 = await metadata.requireVolume("s1");
      const s2 = await metadata.requireVolume("s2");
      const seen: number[] = [];
      const result = await metadata.diffMappings(s1, s2, 0, blocks, (virtualBlock) => seen.push(virtualBlock));
      expect(seen.filter((b) => b === 17 || b === 4321)).toEqual([17, 4321]);
      return result;
    });
    // 6,016 mappings fill 24 leaves or more under one root; two changed leaves and the two roots are all a diff needs.
    expect(counts.nodesRead).toBeLessThanOrEqual(6);
    expect(counts.subtreesSkipped).toBeGreaterThan(10);
    expect(await collect(pool.diff("s1", "s2"))).toEqual([
      { kind: "different", offset: 17 * DATA_BLOCK_BYTES, length: DATA_BLOCK_BYTES },
      { kind: "different", offset: 4321 * DATA_BLOCK_BYTES, length: DATA_BLOCK_BYTES },
    ]);
    await pool.close();
  });

  it("a walk stopped after a number of visits goes on from where it stopped to the same entries", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: POOL_BYTES });
    await pool.createVolume("base", 2000 * DATA_BLOCK_BYTES);
    const volume = await pool.volume("base");
    await volume.write(0, Buffer.alloc(1000 * DATA_BLOCK_BYTES, 1));
    await pool.snapshot("base", "s1");
    for (let block = 3; block < 1900; block += 7) await volume.write(block * DATA_BLOCK_BYTES, Buffer.alloc(512, 2));
    await pool.snapshot("base", "s2");
    const walk = (visitsMax: number) =>
      pool.transactions.read(async (metadata) => {
        const s1 = await metadata.requireVolume("s1");
        const s2 = await metadata.requireVolume("s2");
        const seen: number[] = [];
        let sections = 0;
        for (let from: number | null = 0; from !== null; sections++) {
          const counts = await metadata.diffMappings(s1, s2, from, 2000, (block) => void seen.push(block), { visitsMax });
          from = counts.resumeAt;
        }
        return { seen, sections };
      });
    const whole = await walk(Infinity);
    expect(whole.sections).toBe(1);
    for (const visitsMax of [1, 5, 37]) {
      const stepped = await walk(visitsMax);
      expect(stepped.seen, `${visitsMax} visits a section`).toEqual(whole.seen);
      expect(stepped.sections).toBe(Math.floor(whole.seen.length / visitsMax) + 1);
    }
    await pool.close();
  });

  it("a diff resolved earlier fails once either volume is deleted, even if a new one takes its name", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: POOL_BYTES });
    await pool.createVolume("base", 4 * DATA_BLOCK_BYTES);
    await (await pool.volume("base")).write(0, Buffer.alloc(DATA_BLOCK_BYTES, 1));
    await pool.snapshot("base", "s1");
    const sides = await pool.resolveDiff("s1", "base");
    expect(await collect(pool.diffSides(sides))).toEqual([]);
    await pool.deleteVolume("s1");
    await expect(collect(pool.diffSides(sides))).rejects.toThrow(/no volume named 's1'/);
    await pool.snapshot("base", "s1");
    await expect(collect(pool.diffSides(sides))).rejects.toThrow(/no volume named 's1'/);
    await pool.close();
  });

  it("names a volume that does not exist", async () => {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: POOL_BYTES });
    await pool.createVolume("base", DATA_BLOCK_BYTES);
    await expect(collect(pool.diff("base", "nope"))).rejects.toThrow(/no volume named 'nope'/);
    await pool.close();
  });
});
