// Random sequences of pool operations against a plain in-memory model: every read must
// match the model, and after every commit the checker must find every refcount right.
// A "crash" reopens the files as the last sync left them; the model rolls back to the
// last commit. Failures name the seed: THINP_SEED=<seed> npx vitest run test/pool-model.test.ts

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { SeededRandom, testSeeds } from "./support/random.js";

// 40 MiB volumes hold over 254 mappings once written, so their trees have two levels to share.
const VOLUME_BYTES_CHOICES = [1 << 20, 4 << 20, 20 << 20, 40 << 20];
const POOL_BYTES = 4096 * DATA_BLOCK_BYTES;
const STEPS = 160;

type Model = Map<string, Buffer>;

function cloneModel(model: Model): Model {
  return new Map([...model].map(([name, bytes]) => [name, Buffer.from(bytes)]));
}

async function expectMatches(pool: Pool, model: Model, context: string): Promise<void> {
  const listed = (await pool.listVolumes()).map((v) => v.name).sort();
  expect(listed, context).toEqual([...model.keys()].sort());
  for (const [name, bytes] of model) {
    const volume = await pool.volume(name);
    expect(volume.sizeBytes, context).toBe(bytes.length);
    const read = await volume.read(0, bytes.length);
    expect(read.equals(bytes), `${context}: contents of '${name}'`).toBe(true);
  }
}

async function expectClean(meta: MemoryStorageFile, context: string): Promise<void> {
  const report = await checkMetadataFile(meta, "meta");
  expect(report.problems, context).toEqual([]);
  expect(report.clean).toBe(true);
}

describe("pool against an in-memory model", () => {
  for (const seed of testSeeds(4)) {
    it(`random operations, commits and crashes (seed ${seed})`, async () => {
      const random = new SeededRandom(seed);
      let meta = new MemoryStorageFile("meta");
      let data = new MemoryStorageFile("data");
      let pool = await Pool.formatFiles(meta, data, { sizeBytes: POOL_BYTES });
      let model: Model = new Map();
      let committed: Model = new Map();
      let nextName = 0;
      const log: string[] = [];

      for (let step = 0; step < STEPS; step++) {
        const names = [...model.keys()];
        const roll = random.next();
        const context = () => `seed ${seed} step ${step}: ${log.slice(-6).join("; ")}`;
        if (names.length === 0 || roll < 0.08) {
          const name = `v${nextName++}`;
          const size = random.pick(VOLUME_BYTES_CHOICES);
          log.push(`create ${name} ${size}`);
          await pool.createVolume(name, size);
          model.set(name, Buffer.alloc(size));
        } else if (roll < 0.18 && names.length < 8) {
          const origin = random.pick(names);
          const name = `v${nextName++}`;
          log.push(`snapshot ${origin} ${name}`);
          await pool.snapshot(origin, name);
          model.set(name, Buffer.from(model.get(origin)!));
        } else if (roll < 0.55) {
          const name = random.pick(names);
          const bytes = model.get(name)!;
          const wanted =
            random.next() < 0.05
              ? 1 + random.below(32 * DATA_BLOCK_BYTES)
              : random.next() < 0.3
                ? 1 + random.below(3 * DATA_BLOCK_BYTES)
                : 1 + random.below(8192);
          const length = Math.min(wanted, bytes.length);
          const offset = random.below(bytes.length - length + 1);
          const payload = random.bytes(length);
          log.push(`write ${name} ${offset}+${length}`);
          await (await pool.volume(name)).write(offset, payload);
          payload.copy(bytes, offset);
        } else if (roll < 0.65) {
          const name = random.pick(names);
          const bytes = model.get(name)!;
          const length = random.below(4 * DATA_BLOCK_BYTES);
          const offset = random.below(bytes.length - length + 1);
          log.push(`discard ${name} ${offset}+${length}`);
          await (await pool.volume(name)).discard(offset, length);
          bytes.fill(0, offset, offset + length);
        } else if (roll < 0.7) {
          const name = random.pick(names);
          log.push(`delete ${name}`);
          await pool.deleteVolume(name);
          model.delete(name);
        } else if (roll < 0.75) {
          const name = random.pick(names);
          const bytes = model.get(name)!;
          const size = bytes.length + 512 * random.below(300);
          log.push(`grow ${name} ${size}`);
          await pool.resizeVolume(name, size);
          const grown = Buffer.alloc(size);
          bytes.copy(grown);
          model.set(name, grown);
        } else if (roll < 0.85) {
          log.push("commit");
          await pool.commit();
          committed = cloneModel(model);
          await expectClean(meta, context());
        } else if (roll < 0.92) {
          log.push("crash");
          // Whatever was not committed is lost, as after a power cut.
          meta = meta.durableCopy();
          data = data.durableCopy();
          pool = await Pool.openFiles(meta, data);
          model = cloneModel(committed);
          await expectClean(meta, context());
          await expectMatches(pool, model, context());
        } else {
          const name = random.pick(names);
          const bytes = model.get(name)!;
          const length = 1 + random.below(3 * DATA_BLOCK_BYTES);
          const offset = random.below(bytes.length - length + 1);
          const read = await (await pool.volume(name)).read(offset, length);
          expect(read.equals(bytes.subarray(offset, offset + length)), `${context()}: read ${name} ${offset}+${length}`).toBe(true);
        }
      }
      await pool.commit();
      await expectClean(meta, `seed ${seed} final`);
      await expectMatches(pool, model, `seed ${seed} final`);
      pool = await Pool.openFiles(meta, data);
      await expectMatches(pool, model, `seed ${seed} reopened`);
    });
  }
});
