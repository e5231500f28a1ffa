// Checks one crash state: it must reopen, check clean, and hold the last commit it
// reopened to, byte for byte, except where a write issued after that commit may have
// landed (then each byte is the old value or one a later write put there, never a third).

import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import { Pool } from "../../src/thin/pool.js";
import { checkMetadataFile } from "../../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../../src/thin/limits.js";
import type { CrashState } from "./crash-states.js";
import { DATA_FILE_ID, META_FILE_ID, type CommitRecord, type CrashWorkload, type WriteRecord } from "./crash-workload.js";
import type { SeededRandom } from "../support/random.js";

export interface VerifyOptions {
  random: SeededRandom;
  /** Read every touched block of every volume, not a sample. */
  fullRead: boolean;
  /** Blocks read per volume, besides those written since the commit, when sampling. */
  sampledBlocks: number;
}

export async function verifyCrashState(workload: CrashWorkload, state: CrashState, options: VerifyOptions): Promise<string | null> {
  const metaFile = new MemoryStorageFile("meta", state.images[META_FILE_ID]!);
  let pool: Pool;
  try {
    pool = await Pool.openFiles(metaFile, new MemoryStorageFile("data", state.images[DATA_FILE_ID]!));
  } catch (error) {
    return `does not reopen: ${(error as Error).message}`;
  }
  const transactionId = pool.status().transactionId;
  const completed = workload.commits[lastIndexAtOrBelow(workload.commits, (commit) => commit.logEnd, state.crashPoint)]!;
  let expected: CommitRecord;
  if (transactionId === completed.transactionId) {
    expected = completed;
  } else {
    const inProgress = workload.commits.find((commit) => commit.transactionId === transactionId && commit.logStart < state.crashPoint);
    if (!inProgress || transactionId !== completed.transactionId + 1) {
      return `reopened at transaction ${transactionId}; the last completed commit is ${completed.transactionId}`;
    }
    expected = inProgress;
  }

  const report = await checkMetadataFile(metaFile, "meta");
  if (!report.clean)
    return `check found: ${report.problems
      .map((p) => p.message)
      .slice(0, 5)
      .join("; ")}`;

  const listed = (await pool.listVolumes()).map((info) => info.name).sort();
  const wanted = [...expected.volumes.keys()].sort();
  if (listed.join(",") !== wanted.join(",")) return `volumes [${listed}] but transaction ${transactionId} had [${wanted}]`;

  const later = writesBetween(workload.writes, expected.logEnd, state.crashPoint);
  for (const [name, bytes] of expected.volumes) {
    const volume = await pool.volume(name);
    if (volume.sizeBytes !== bytes.length) return `'${name}' is ${volume.sizeBytes} bytes, expected ${bytes.length}`;
    const touched = workload.touchedBlocks.get(name) ?? new Set<number>();
    for (const extent of await volume.extents(0, volume.sizeBytes)) {
      if (!extent.mapped) continue;
      for (let b = extent.offset / DATA_BLOCK_BYTES; b * DATA_BLOCK_BYTES < extent.offset + extent.length; b++) {
        if (!touched.has(Math.floor(b))) return `'${name}' maps block ${b}, which was never written`;
      }
    }
    const laterHere = later.filter((write) => write.volume === name);
    for (const block of blocksToRead(touched, laterHere, bytes.length, options)) {
      const start = block * DATA_BLOCK_BYTES;
      const length = Math.min(DATA_BLOCK_BYTES, bytes.length - start);
      if (length <= 0) continue;
      const read = await volume.read(start, length);
      const problem = compareBlock(name, start, read, bytes.subarray(start, start + length), laterHere);
      if (problem) return problem;
    }
  }
  return null;
}

function blocksToRead(touched: Set<number>, laterHere: WriteRecord[], volumeBytes: number, options: VerifyOptions): number[] {
  const all = [...touched].filter((block) => block * DATA_BLOCK_BYTES < volumeBytes);
  if (options.fullRead || all.length <= options.sampledBlocks) return all;
  const chosen = new Set<number>();
  for (const write of laterHere) {
    for (let b = Math.floor(write.offset / DATA_BLOCK_BYTES); b * DATA_BLOCK_BYTES < write.offset + write.bytes.length; b++) chosen.add(b);
  }
  for (let i = 0; i < options.sampledBlocks; i++) chosen.add(all[options.random.below(all.length)]!);
  return [...chosen];
}

function compareBlock(name: string, start: number, read: Buffer, expected: Buffer, laterHere: WriteRecord[]): string | null {
  if (read.equals(expected)) return null;
  for (let i = 0; i < read.length; i++) {
    if (read[i] === expected[i]) continue;
    const at = start + i;
    const explained = laterHere.some(
      (write) => at >= write.offset && at < write.offset + write.bytes.length && write.bytes[at - write.offset] === read[i],
    );
    if (!explained) {
      return `'${name}' byte ${at} reads ${read[i]}, neither the committed ${expected[i]} nor a value a later write put there`;
    }
  }
  return null;
}

/** Index of the last record whose key is at most `limit` (records are in key order). */
function lastIndexAtOrBelow<T>(records: T[], key: (record: T) => number, limit: number): number {
  let low = 0;
  let high = records.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (key(records[middle]!) <= limit) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

/** Writes issued at log positions in [from, to); the workload records them in log order. */
function writesBetween(writes: WriteRecord[], from: number, to: number): WriteRecord[] {
  const first = lastIndexAtOrBelow(writes, (write) => write.logIndex, from - 1) + 1;
  const end = lastIndexAtOrBelow(writes, (write) => write.logIndex, to - 1) + 1;
  return writes.slice(first, end);
}
