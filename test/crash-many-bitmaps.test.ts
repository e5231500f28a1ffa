// Crash states of a commit that writes a few of many metadata space-map bitmaps: the
// commit keeps every other bitmap where the last commit has it, so a crash at any write or
// sync of it must reopen to the old commit or the new one, check clean, and read that
// commit's data. The crash suite's own pools are too small for more than one bitmap.

import { beforeAll, describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { IoLog, RecordingStorageFile } from "../src/io/recording-storage-file.js";
import type { SparsePages } from "../src/io/sparse-pages.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { forEachCrashState } from "./crash/crash-states.js";
import {
  MAPPED_VOLUME,
  SMALL_VOLUMES,
  SNAPSHOT_VOLUME,
  buildManyBitmapsPool,
  smallVolumeName,
  type ManyBitmapsPool,
} from "./support/many-bitmaps-pool.js";
import { SeededRandom, testSeeds } from "./support/random.js";

const META_FILE_ID = 0;
const DATA_FILE_ID = 1;
/** Crash states with the pending writes landed in any subset or order, per scenario, besides one per log position. */
const REORDERED_STATES = 12;
const WRITE_BYTES = 4096;

let built: ManyBitmapsPool;
beforeAll(async () => {
  built = await buildManyBitmapsPool();
}, 60_000);

/** What one scenario changes: reads that tell the old commit from the new one. */
interface Scenario {
  name: string;
  change: (pool: Pool) => Promise<void>;
  /** Null when the pool holds what the commit says; else what is wrong. */
  verify: (pool: Pool, committed: "old" | "new") => Promise<string | null>;
}

const pattern = (byte: number) => Buffer.alloc(WRITE_BYTES, byte);

async function readsAs(pool: Pool, volume: string, offset: number, expected: Buffer): Promise<string | null> {
  const read = await (await pool.volume(volume)).read(offset, expected.length);
  return read.equals(expected)
    ? null
    : `'${volume}' at ${offset} does not read as expected (first byte ${read[0]}, expected ${expected[0]})`;
}

const lastSmall = smallVolumeName(SMALL_VOLUMES - 1);
const firstSmall = smallVolumeName(0);
const sharedOffset = 5 * DATA_BLOCK_BYTES;

const SCENARIOS: Scenario[] = [
  {
    name: "the first write to the newest small volume",
    change: async (pool) => (await pool.volume(lastSmall)).write(0, pattern(7)),
    verify: (pool, committed) => readsAs(pool, lastSmall, 0, committed === "new" ? pattern(7) : pattern(0)),
  },
  {
    name: "a copy-on-write of a block shared with a snapshot, and the oldest small volume deleted",
    change: async (pool) => {
      await (await pool.volume(MAPPED_VOLUME)).write(sharedOffset, pattern(9));
      await pool.deleteVolume(firstSmall);
    },
    verify: async (pool, committed) => {
      const names = new Set((await pool.listVolumes()).map((info) => info.name));
      if (names.has(firstSmall) !== (committed === "old")) return `'${firstSmall}' ${names.has(firstSmall) ? "exists" : "is gone"}`;
      return (
        (await readsAs(pool, MAPPED_VOLUME, sharedOffset, committed === "new" ? pattern(9) : pattern(0))) ??
        (await readsAs(pool, SNAPSHOT_VOLUME, sharedOffset, pattern(0)))
      );
    },
  },
];

interface RecordedCommit {
  log: IoLog;
  bases: SparsePages[];
  oldTransaction: number;
}

async function recordCommit(scenario: Scenario): Promise<RecordedCommit> {
  const bases = [built.metaImage.clone(), built.dataImage.clone()];
  const log = new IoLog();
  const metaFile = new RecordingStorageFile(new MemoryStorageFile("meta", bases[META_FILE_ID]!.clone()), log, META_FILE_ID);
  const dataFile = new RecordingStorageFile(new MemoryStorageFile("data", bases[DATA_FILE_ID]!.clone()), log, DATA_FILE_ID);
  const pool = await Pool.openFiles(metaFile, dataFile);
  const oldTransaction = pool.status().transactionId;
  await scenario.change(pool);
  await pool.commit();
  await pool.close();
  return { log, bases, oldTransaction };
}

/** The images after the first `count` operations of the log, every write among them landed in order. */
function prefixImages({ log, bases }: RecordedCommit, count: number): SparsePages[] {
  const images = bases.map((base) => base.clone());
  for (const operation of log.operations.slice(0, count)) {
    if (operation.kind === "write") images[operation.fileId]!.write(operation.bytes, operation.position);
    else if (operation.kind === "truncate") images[operation.fileId]!.truncate(operation.byteLength);
  }
  return images;
}

async function verifyState(scenario: Scenario, recorded: RecordedCommit, images: SparsePages[]): Promise<string | null> {
  const metaFile = new MemoryStorageFile("meta", images[META_FILE_ID]!);
  let pool: Pool;
  try {
    pool = await Pool.openFiles(metaFile, new MemoryStorageFile("data", images[DATA_FILE_ID]!));
  } catch (error) {
    return `does not reopen: ${(error as Error).message}`;
  }
  try {
    const transactionId = pool.status().transactionId;
    if (transactionId !== recorded.oldTransaction && transactionId !== recorded.oldTransaction + 1) {
      return `reopened at transaction ${transactionId}, neither ${recorded.oldTransaction} nor the next`;
    }
    const report = await checkMetadataFile(metaFile, "meta");
    if (!report.clean) return `check found: ${report.problems.map((problem) => problem.message).slice(0, 5)}`;
    return await scenario.verify(pool, transactionId === recorded.oldTransaction ? "old" : "new");
  } finally {
    await pool.close();
  }
}

describe("crash states of a commit that writes a few of many metadata bitmaps", () => {
  for (const scenario of SCENARIOS) {
    const [seed] = testSeeds(1);
    it(`every crash state of ${scenario.name} reopens to the old or new commit and checks clean (seed ${seed})`, async () => {
      const recorded = await recordCommit(scenario);
      const failures: string[] = [];
      // A crash after each operation of the log, every write before it landed.
      for (let count = 0; count <= recorded.log.operations.length; count++) {
        const problem = await verifyState(scenario, recorded, prefixImages(recorded, count));
        if (problem) failures.push(`after ${count} operations: ${problem}`);
      }
      // And the writes pending at each sync landed in any subset, in either order, the last one torn.
      const random = new SeededRandom(seed!);
      const states = await forEachCrashState(recorded.log, recorded.bases, { random, statesMax: REORDERED_STATES }, async (state) => {
        const problem = await verifyState(scenario, recorded, state.images);
        if (problem) failures.push(`${state.description}: ${problem}`);
      });
      expect(failures).toEqual([]);
      expect(states).toBeGreaterThan(0);
      // The final state is the new commit: the scenario did commit.
      const images = prefixImages(recorded, recorded.log.operations.length);
      const pool = await Pool.openFiles(new MemoryStorageFile("meta", images[0]!), new MemoryStorageFile("data", images[1]!));
      expect(pool.status().transactionId).toBe(recorded.oldTransaction + 1);
      await pool.close();
    }, 120_000);
  }
});
