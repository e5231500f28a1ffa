// Which superblock copy a metadata file is read through, for opening, check and repair alike.
// A commit writes the slot the previous commit did not use, so the valid copy with the higher
// transaction id is the last commit and the other is the one before it (formats/metadata.md).
// The older copy is never used while the newer one verifies, even when the newer one's trees
// are damaged: blocks that only the older commit reaches may have been reused since, and a
// reused block verifies as a valid block of another tree.

import { CorruptBlockError, NotAPoolError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { StorageFile } from "../io/storage-file.js";
import { METADATA_BLOCK_BYTES } from "./block-format.js";

export interface ChosenSuperblock<S> {
  superblock: S;
  slot: number;
  /** What became of the other copy: its transaction id, or why it could not be read. */
  otherSlot: { slot: number; transactionId: number } | { slot: number; unreadable: string };
}

/**
 * Reads every slot and decodes it with `decode` (which throws CorruptBlockError or
 * NotAPoolError for a copy it cannot use), then chooses the newest valid copy. With none
 * valid: NotAPoolError when no copy is a superblock of this format at all, else a
 * CorruptBlockError ("bad-superblock") that gives each copy's failure.
 */
export async function chooseSuperblock<S extends { transactionId: number }>(
  file: StorageFile,
  path: string,
  slots: readonly number[],
  decode: (block: Buffer, slot: number) => S,
): Promise<ChosenSuperblock<S>> {
  const firstSlot = slots[0];
  assert(slots.length === 2 && firstSlot !== undefined, `${slots.length} superblock slots`);
  const found: ({ slot: number; superblock: S } | { slot: number; failure: CorruptBlockError | NotAPoolError })[] = [];
  for (const slot of slots) {
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    await file.read(block, slot * METADATA_BLOCK_BYTES);
    try {
      found.push({ slot, superblock: decode(block, slot) });
    } catch (error) {
      if (!(error instanceof CorruptBlockError || error instanceof NotAPoolError)) throw error;
      found.push({ slot, failure: error });
    }
  }
  let chosen: { slot: number; superblock: S } | null = null;
  for (const entry of found) {
    if ("superblock" in entry && (chosen === null || entry.superblock.transactionId > chosen.superblock.transactionId)) chosen = entry;
  }
  if (chosen === null) {
    const failures = found.map((entry) => ("failure" in entry ? entry.failure : null)).filter((failure) => failure !== null);
    const firstFailure = failures[0];
    assert(firstFailure !== undefined, "with no copy chosen, every copy failed");
    if (failures.every((failure) => failure instanceof NotAPoolError)) throw firstFailure;
    const reasons = found.map((entry) => `block ${entry.slot}: ${"failure" in entry ? entry.failure.message : "valid"}`).join("; ");
    throw new CorruptBlockError(firstSlot, "bad-superblock", `both superblock copies are unreadable (${reasons})`, path);
  }
  const other = found.find((entry) => entry.slot !== chosen.slot);
  assert(other !== undefined, "two slots were read: one is chosen, the other is not");
  return {
    superblock: chosen.superblock,
    slot: chosen.slot,
    otherSlot:
      "superblock" in other
        ? { slot: other.slot, transactionId: other.superblock.transactionId }
        : { slot: other.slot, unreadable: other.failure.message },
  };
}
