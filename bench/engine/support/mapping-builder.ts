// Builds and changes mappings through the metadata layer directly: a data block is
// allocated and mapped, and no data is written. That is how the bench reaches a million
// mappings without writing 64 GiB.

import { assert } from "../../../src/io/assert.js";
import { at } from "../../../src/io/checked-index.js";
import type { Pool } from "../../../src/thin/pool.js";

/**
 * mapBlock calls per metadata section. The pool trims dirty metadata blocks only between
 * sections, so this bounds the memory a long build holds.
 */
export const MAPPINGS_PER_SECTION = 1000;
/** A long build commits this often, as a busy pool would, so a transaction stays bounded. */
export const MAPPINGS_PER_COMMIT = 50_000;

/** Why keys[i] is there in the section functions below. */
const KEYS_IN_RANGE = "callers pass a range start..end inside keys";

export type BuildProgress = (mappedCount: number) => void;

/** Maps each key, in order, to a freshly allocated data block; commits as it goes and at the end. */
export async function mapFreshBlocks(pool: Pool, volumeName: string, keys: readonly number[], progress?: BuildProgress): Promise<void> {
  let sinceCommit = 0;
  for (let start = 0; start < keys.length; start += MAPPINGS_PER_SECTION) {
    const end = Math.min(keys.length, start + MAPPINGS_PER_SECTION);
    await mapKeys(pool, volumeName, keys, start, end);
    sinceCommit += end - start;
    if (sinceCommit >= MAPPINGS_PER_COMMIT) {
      await pool.commit();
      sinceCommit = 0;
      progress?.(end);
    }
  }
  await pool.commit();
  progress?.(keys.length);
}

/** One metadata section: keys[start..end) each get a fresh data block. Existing mappings are replaced. */
export async function mapKeys(pool: Pool, volumeName: string, keys: readonly number[], start: number, end: number): Promise<void> {
  assert(end - start <= MAPPINGS_PER_SECTION, `a section maps at most ${MAPPINGS_PER_SECTION} keys`);
  await pool.transactions.change(async (metadata) => {
    const state = await metadata.requireVolume(volumeName);
    for (let i = start; i < end; i++) {
      const dataBlock = metadata.allocateDataBlock();
      assert(dataBlock !== null, "the bench sized its pool too small");
      await metadata.mapBlock(state, at(keys, i, KEYS_IN_RANGE), dataBlock);
    }
  });
}

export async function unmapKeys(pool: Pool, volumeName: string, keys: readonly number[], start: number, end: number): Promise<void> {
  await pool.transactions.change(async (metadata) => {
    const state = await metadata.requireVolume(volumeName);
    for (let i = start; i < end; i++) {
      const key = at(keys, i, KEYS_IN_RANGE);
      const removed = await metadata.unmapBlock(state, key);
      assert(removed, `key ${key} was not mapped`);
    }
  });
}

/** Looks keys up in one metadata section; asserts each is mapped, so a lookup is never a cheap miss. */
export async function lookupKeys(pool: Pool, volumeName: string, keys: readonly number[], start: number, end: number): Promise<void> {
  await pool.transactions.read(async (metadata) => {
    const state = await metadata.requireVolume(volumeName);
    for (let i = start; i < end; i++) {
      const key = at(keys, i, KEYS_IN_RANGE);
      const found = await metadata.lookupMapping(state, key);
      assert(found !== null, `key ${key} should be mapped`);
    }
  });
}
