// A seeded random workload over a small pool whose I/O is recorded, with a plain model of
// every volume's bytes at each commit, for the crash harness to check crash states against.

import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import { IoLog, RecordingStorageFile } from "../../src/io/recording-storage-file.js";
import { DATA_BLOCK_BYTES } from "../../src/thin/limits.js";
import { Pool } from "../../src/thin/pool.js";
import { SeededRandom } from "../support/random.js";
import { SparsePages } from "../../src/io/sparse-pages.js";

export const META_FILE_ID = 0;
export const DATA_FILE_ID = 1;

export interface CommitRecord {
  transactionId: number;
  /** Log length when the commit began and when it returned. */
  logStart: number;
  logEnd: number;
  volumes: Map<string, Buffer>;
}

export interface WriteRecord {
  /** Log length when the write began: its I/O, if any, is logged from here on. */
  logIndex: number;
  volume: string;
  offset: number;
  bytes: Buffer;
}

export interface CrashWorkload {
  seed: number;
  log: IoLog;
  bases: SparsePages[];
  commits: CommitRecord[];
  writes: WriteRecord[];
  /** Virtual blocks each volume ever had written (or inherited), for sampling reads. */
  touchedBlocks: Map<string, Set<number>>;
  steps: string[];
}

export interface WorkloadShape {
  steps: number;
  poolBlocks: number;
}

export async function runCrashWorkload(seed: number, shape: WorkloadShape): Promise<CrashWorkload> {
  const random = new SeededRandom(seed);
  const images = [SparsePages.empty(), SparsePages.empty()];
  const log = new IoLog();
  const metaFile = new RecordingStorageFile(new MemoryStorageFile("meta", images[META_FILE_ID]!), log, META_FILE_ID);
  const dataFile = new RecordingStorageFile(new MemoryStorageFile("data", images[DATA_FILE_ID]!), log, DATA_FILE_ID);
  const pool = await Pool.formatFiles(metaFile, dataFile, { sizeBytes: shape.poolBlocks * DATA_BLOCK_BYTES });
  // Everything before here was synced: the durable starting point of every crash state.
  const bases = images.map((image) => image.clone());
  log.operations.splice(0);

  const model = new Map<string, Buffer>();
  const touchedBlocks = new Map<string, Set<number>>();
  const commits: CommitRecord[] = [{ transactionId: pool.status().transactionId, logStart: 0, logEnd: 0, volumes: new Map() }];
  const writes: WriteRecord[] = [];
  const steps: string[] = [];
  let nextName = 0;
  const touch = (name: string, offset: number, length: number) => {
    const blocks = touchedBlocks.get(name)!;
    for (let b = Math.floor(offset / DATA_BLOCK_BYTES); b * DATA_BLOCK_BYTES < offset + length; b++) blocks.add(b);
  };

  for (let step = 0; step < shape.steps; step++) {
    const names = [...model.keys()];
    const roll = random.next();
    try {
      if (names.length === 0 || (roll < 0.05 && names.length < 6)) {
        const name = `v${nextName++}`;
        const size = random.pick([1, 2, 24]) * 1024 * 1024;
        steps.push(`create ${name} ${size}`);
        await pool.createVolume(name, size);
        model.set(name, Buffer.alloc(size));
        touchedBlocks.set(name, new Set());
      } else if (roll < 0.1 && names.length < 6) {
        const origin = random.pick(names);
        const name = `v${nextName++}`;
        steps.push(`snapshot ${origin} ${name}`);
        await pool.snapshot(origin, name);
        model.set(name, Buffer.from(model.get(origin)!));
        touchedBlocks.set(name, new Set(touchedBlocks.get(origin)!));
      } else if (roll < 0.7) {
        const name = random.pick(names);
        const bytes = model.get(name)!;
        const length = random.next() < 0.2 ? 1 + random.below(2 * DATA_BLOCK_BYTES) : 512 * (1 + random.below(8));
        const offset = random.next() < 0.7 ? 512 * random.below((bytes.length - length) / 512) : random.below(bytes.length - length);
        const payload = random.bytes(length);
        steps.push(`write ${name} ${offset}+${length}`);
        writes.push({ logIndex: log.operations.length, volume: name, offset, bytes: payload });
        await (await pool.volume(name)).write(offset, payload);
        payload.copy(bytes, offset);
        touch(name, offset, length);
      } else if (roll < 0.78) {
        const name = random.pick(names);
        const bytes = model.get(name)!;
        const length = random.below(3 * DATA_BLOCK_BYTES);
        const offset = random.below(bytes.length - length);
        steps.push(`discard ${name} ${offset}+${length}`);
        // A partial block at either end is zeroed by a write; record it as one.
        writes.push({ logIndex: log.operations.length, volume: name, offset, bytes: Buffer.alloc(length) });
        await (await pool.volume(name)).discard(offset, length);
        bytes.fill(0, offset, offset + length);
      } else if (roll < 0.82) {
        const name = random.pick(names);
        steps.push(`delete ${name}`);
        await pool.deleteVolume(name);
        model.delete(name);
      } else if (roll < 0.85) {
        const name = random.pick(names);
        const size = model.get(name)!.length + 512 * (1 + random.below(256));
        steps.push(`grow ${name} ${size}`);
        await pool.resizeVolume(name, size);
        const grown = Buffer.alloc(size);
        model.get(name)!.copy(grown);
        model.set(name, grown);
      } else {
        steps.push("commit");
        const logStart = log.operations.length;
        await pool.commit();
        commits.push({
          transactionId: pool.status().transactionId,
          logStart,
          logEnd: log.operations.length,
          volumes: new Map([...model].map(([name, bytes]) => [name, Buffer.from(bytes)])),
        });
      }
    } catch (error) {
      throw new Error(`workload seed ${seed} failed at step ${step} (${steps[steps.length - 1]}): ${(error as Error).stack}`, {
        cause: error,
      });
    }
  }
  return { seed, log, bases, commits, writes, touchedBlocks, steps };
}
