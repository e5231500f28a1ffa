// Builds the disk states a power cut could leave, from the ordered log of writes and syncs.
// A sync of a file makes every earlier write to that file durable. A write after its file's
// last sync may or may not have reached the disk, in any order: a crash state keeps a subset
// of those pending writes (every subset when there are few, else a seeded sample), applies
// them in log order or reversed, and may tear the last one at a 512-byte boundary.

import type { IoLog, RecordedOperation } from "../../src/io/recording-storage-file.js";
import { SeededRandom } from "../support/random.js";
import { SparsePages } from "../../src/io/sparse-pages.js";

export const SECTOR_BYTES = 512;
/** Every subset is tried up to this many pending writes (2^10 states). */
export const EXHAUSTIVE_PENDING_MAX = 10;

export interface CrashState {
  /** Index in the log of the first operation that did not complete. */
  crashPoint: number;
  /** One image per file id. */
  images: SparsePages[];
  description: string;
}

export interface CrashStateOptions {
  random: SeededRandom;
  /** States built from this log, shared out across its crash points. */
  statesMax: number;
}

type PendingWrite = Extract<RecordedOperation, { kind: "write" }> & { index: number };

/**
 * Calls `visit` for each crash state, crash points taken just before each sync and at the
 * end of the log. `bases` are the durable images when recording began.
 */
export async function forEachCrashState(
  log: IoLog,
  bases: SparsePages[],
  options: CrashStateOptions,
  visit: (state: CrashState) => Promise<void>,
): Promise<number> {
  const durable = bases.map((base) => base.clone());
  const pending: PendingWrite[][] = bases.map(() => []);
  let visited = 0;
  const operations = log.operations;
  const crashPoints = operations.flatMap((operation, index) => (operation.kind === "sync" ? [index] : [])).concat([operations.length]);
  let next = 0;
  for (const [pointIndex, crashPoint] of crashPoints.entries()) {
    // What earlier points left unused goes to the later ones.
    const budgetPerPoint = Math.max(1, Math.floor((options.statesMax - visited) / (crashPoints.length - pointIndex)));
    for (; next < crashPoint; next++) {
      const operation = operations[next]!;
      if (operation.kind === "write") pending[operation.fileId]!.push({ ...operation, index: next });
      else if (operation.kind === "truncate") {
        // Truncation changes the file's size in the file system's own journal: durable at once.
        durable[operation.fileId]!.truncate(operation.byteLength);
      } else {
        for (const write of pending[operation.fileId]!) durable[operation.fileId]!.write(write.bytes, write.position);
        pending[operation.fileId] = [];
      }
    }
    const inFlight = pending.flat().sort((a, b) => a.index - b.index);
    for (const variant of variantsFor(inFlight, options, budgetPerPoint)) {
      if (visited >= options.statesMax) return visited;
      const images = durable.map((image) => image.clone());
      const writes = variant.reversed ? [...variant.writes].reverse() : variant.writes;
      for (const write of writes) {
        const bytes = write === variant.torn?.write ? write.bytes.subarray(0, variant.torn.keepBytes) : write.bytes;
        images[write.fileId]!.write(bytes, write.position);
      }
      await visit({ crashPoint, images, description: `crash before op ${crashPoint}: ${variant.description}` });
      visited++;
    }
    // The sync at this point completes; its file's pending writes are durable from here on.
    if (crashPoint < operations.length) {
      const sync = operations[crashPoint]!;
      for (const write of pending[sync.fileId]!) durable[sync.fileId]!.write(write.bytes, write.position);
      pending[sync.fileId] = [];
      next = crashPoint + 1;
    }
  }
  return visited;
}

interface Variant {
  writes: PendingWrite[];
  reversed: boolean;
  torn?: { write: PendingWrite; keepBytes: number };
  description: string;
}

function* variantsFor(inFlight: PendingWrite[], options: CrashStateOptions, budget: number): Generator<Variant> {
  const count = inFlight.length;
  const describe = (kept: PendingWrite[]) =>
    `${kept.length} of ${count} pending writes landed (ops ${kept.map((w) => w.index).join(",") || "none"})`;
  if (count === 0) {
    yield { writes: [], reversed: false, description: "nothing pending" };
    return;
  }
  let produced: number;
  if (count <= EXHAUSTIVE_PENDING_MAX && 2 ** count <= budget) {
    for (let mask = 0; mask < 2 ** count; mask++) {
      const kept = inFlight.filter((_, i) => (mask >> i) & 1);
      yield { writes: kept, reversed: false, description: describe(kept) };
    }
    produced = 2 ** count;
  } else {
    yield { writes: [], reversed: false, description: describe([]) };
    yield { writes: inFlight, reversed: false, description: describe(inFlight) };
    produced = 2;
    const samples = budget - 3;
    for (let i = 0; i < samples; i++) {
      const kept = inFlight.filter(() => options.random.next() < 0.5);
      const reversed = options.random.next() < 0.3;
      yield { writes: kept, reversed, description: `${describe(kept)}${reversed ? ", in reverse order" : ""}` };
      produced++;
    }
  }
  // The last write torn: only its first sectors reached the disk.
  const last = inFlight[count - 1]!;
  const sectors = Math.ceil(last.bytes.length / SECTOR_BYTES);
  if (sectors > 1 && produced < budget + 1) {
    const keepBytes = (1 + options.random.below(sectors - 1)) * SECTOR_BYTES;
    yield {
      writes: inFlight,
      reversed: false,
      torn: { write: last, keepBytes },
      description: `${describe(inFlight)}, op ${last.index} torn after ${keepBytes} bytes`,
    };
  }
}
