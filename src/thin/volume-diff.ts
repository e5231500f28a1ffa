// What changed between two volumes, from their mapping trees alone (PoolMetadata.diffMappings):
// runs of virtual blocks in one diff category, in order. The walk goes a window of virtual
// blocks per read section, so a long diff never holds the metadata for long and its memory
// is one window's runs.

import { NoSuchVolumeError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { DiffKind } from "./api.js";
import { DATA_BLOCK_BYTES } from "./limits.js";
import type { PoolMetadata, VolumeState } from "./pool-metadata.js";
import type { PoolTransactions } from "./transactions.js";

/** Virtual blocks [firstBlock, firstBlock + blockCount) of one kind. */
export interface BlockRun {
  kind: DiffKind;
  firstBlock: number;
  blockCount: number;
}

export interface DiffOptions {
  /** Also list the blocks both map to one data block; this reads every node of both trees. */
  includeSame?: boolean;
  /**
   * Compare only virtual blocks [fromBlock, toBlock) (default: all of them), so a question
   * about a small range (an NBD BLOCK_STATUS) walks only the paths into that range.
   */
  fromBlock?: number;
  toBlock?: number;
}

/** Virtual blocks walked per read section, at most. */
export const DIFF_WINDOW_BLOCKS = 1 << 16;
/**
 * Differing blocks found per read section, at most: a section ends after this much work or
 * this many blocks walked, whichever comes first, so it is short and its runs few whatever
 * the trees hold. A diff of few changes walks far in one section: windows cost a descent each.
 */
export const DIFF_SECTION_VISITS_MAX = 1 << 14;

/** One volume of a diff: its id to find it by, its name and identity to know it is still the same volume. */
export interface DiffSide {
  id: number;
  name: string;
  uuid: string;
}

/** The two volumes of a diff, resolved by name once and followed by id from then on. */
export interface DiffSides {
  left: DiffSide;
  right: DiffSide;
  /** The larger of the two sizes, in bytes: nothing past it is mapped. */
  sizeBytes: number;
  /** Blocks past both volumes' ends are never mapped. */
  blockEnd: number;
}

export async function resolveDiffSides(transactions: PoolTransactions, leftName: string, rightName: string): Promise<DiffSides> {
  return transactions.read(async (metadata) => {
    const left = await metadata.requireVolume(leftName);
    const right = await metadata.requireVolume(rightName);
    const sizeBytes = Math.max(left.record.sizeBytes, right.record.sizeBytes);
    return {
      left: { id: left.id, name: leftName, uuid: left.record.uuid },
      right: { id: right.id, name: rightName, uuid: right.record.uuid },
      sizeBytes,
      blockEnd: Math.ceil(sizeBytes / DATA_BLOCK_BYTES),
    };
  });
}

export async function* diffBlockRuns(
  transactions: PoolTransactions,
  sides: DiffSides,
  options: DiffOptions = {},
): AsyncGenerator<BlockRun> {
  const firstBlock = options.fromBlock ?? 0;
  const endBlock = Math.min(sides.blockEnd, options.toBlock ?? sides.blockEnd);
  assert(Number.isSafeInteger(firstBlock) && firstBlock >= 0, `diff from block ${firstBlock}`);
  assert(Number.isSafeInteger(endBlock) && endBlock >= 0, `diff to block ${endBlock}`);
  let pending: BlockRun | null = null;
  for (let from = firstBlock; from < endBlock;) {
    const section = await transactions.read((metadata) => diffSection(metadata, sides, from, endBlock, options));
    from = section.next;
    for (const run of section.runs) {
      if (pending !== null && pending.kind === run.kind && pending.firstBlock + pending.blockCount === run.firstBlock) {
        pending.blockCount += run.blockCount;
        continue;
      }
      if (pending !== null) yield pending;
      pending = { ...run };
    }
  }
  if (pending !== null) yield pending;
}

/** One read section's part of a diff, from block `from` to at most `end`: its runs, and where the next section starts. */
async function diffSection(
  metadata: PoolMetadata,
  sides: DiffSides,
  from: number,
  end: number,
  options: DiffOptions,
): Promise<{ runs: BlockRun[]; next: number }> {
  const left = liveState(metadata, sides.left);
  const right = liveState(metadata, sides.right);
  const runs: BlockRun[] = [];
  let last: BlockRun | undefined;
  // Without `same`, the walk skips what the trees share, and its work is the visits it makes.
  const to = options.includeSame ? Math.min(end, from + DIFF_WINDOW_BLOCKS) : end;
  const counts = await metadata.diffMappings(
    left,
    right,
    from,
    to,
    (virtualBlock, leftData, rightData) => {
      const kind = diffKind(leftData, rightData);
      if (kind === "same" && !options.includeSame) return;
      if (last !== undefined && last.kind === kind && last.firstBlock + last.blockCount === virtualBlock) last.blockCount++;
      else runs.push((last = { kind, firstBlock: virtualBlock, blockCount: 1 }));
    },
    { visitShared: options.includeSame === true, visitsMax: DIFF_SECTION_VISITS_MAX },
  );
  return { runs, next: counts.resumeAt ?? to };
}

/** The volume's state, checked to be the one resolved when its identity is known. */
function liveState(metadata: PoolMetadata, side: { id: number; name: string; uuid?: string }): VolumeState {
  const state = metadata.stateById(side.id);
  // Sides are resolved once and may be diffed again much later (an NBD client's dirty-bitmap
  // context): a volume deleted since, or its id taken by a new volume, is gone for the diff.
  if (state === undefined || (side.uuid !== undefined && state.record.uuid !== side.uuid)) throw new NoSuchVolumeError(side.name);
  return state;
}

function diffKind(left: number | null, right: number | null): DiffKind {
  if (left === null) return "right_only";
  if (right === null) return "left_only";
  return left === right ? "same" : "different";
}

/** The runs of blocks one volume maps, in order, a window per read section: a whole send's blocks. */
export async function* mappedBlockRuns(
  transactions: PoolTransactions,
  volume: { id: number; name: string },
  blockEnd: number,
  fromBlock = 0,
): AsyncGenerator<BlockRun> {
  let pending: BlockRun | null = null;
  for (let from = fromBlock; from < blockEnd; from += DIFF_WINDOW_BLOCKS) {
    const to = Math.min(blockEnd, from + DIFF_WINDOW_BLOCKS);
    const blocks = await transactions.read(async (metadata) => {
      const found: number[] = [];
      await metadata.forEachMapping(liveState(metadata, volume), from, to, (virtualBlock) => void found.push(virtualBlock));
      return found;
    });
    for (const block of blocks) {
      if (pending !== null && pending.firstBlock + pending.blockCount === block) {
        pending.blockCount++;
        continue;
      }
      if (pending !== null) yield pending;
      pending = { kind: "right_only", firstBlock: block, blockCount: 1 };
    }
  }
  if (pending !== null) yield pending;
}
