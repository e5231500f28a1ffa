// Finds a metadata block whose corruption a command notices, by flipping one
// byte at a time in ascending block order: deterministic, and it needs nothing
// from the engine but the file.

import { open } from "node:fs/promises";

/** Blocks 0 and 1 may be the superblock pair, which the engine can fall back between. */
const FIRST_CANDIDATE_BLOCK = 2;
/** A byte well inside the block, past any header, covered by the block's checksum. */
const FLIPPED_BYTE_IN_BLOCK = 100;

export interface CorruptedBlock {
  blockIndex: number;
  /** What the probe reported for this block (its stderr). */
  failure: string;
}

/**
 * Flips a byte in each non-zero block in turn and runs `probe`, which returns
 * null when the pool still works or the failure text when it does not. Stops
 * at the first block whose failure names it, leaving that block corrupted;
 * every other block is restored.
 */
export async function findCorruptibleBlock(
  metaPath: string,
  metadataBlockBytes: number,
  probe: () => Promise<string | null>,
): Promise<CorruptedBlock> {
  const handle = await open(metaPath, "r+");
  try {
    const blockCount = Math.floor((await handle.stat()).size / metadataBlockBytes);
    const block = Buffer.alloc(metadataBlockBytes);
    const tried: string[] = [];
    for (let blockIndex = FIRST_CANDIDATE_BLOCK; blockIndex < blockCount; blockIndex += 1) {
      const position = blockIndex * metadataBlockBytes;
      await handle.read(block, 0, metadataBlockBytes, position);
      if (block.every((byte) => byte === 0)) continue;
      const original = block[FLIPPED_BYTE_IN_BLOCK]!;
      await handle.write(Buffer.of(original ^ 0xff), 0, 1, position + FLIPPED_BYTE_IN_BLOCK);
      await handle.sync();
      const failure = await probe();
      if (failure !== null && new RegExp(`block ${blockIndex}\\b`).test(failure)) {
        return { blockIndex, failure };
      }
      tried.push(`${blockIndex}: ${failure ?? "no failure"}`);
      await handle.write(Buffer.of(original), 0, 1, position + FLIPPED_BYTE_IN_BLOCK);
      await handle.sync();
    }
    throw new Error(`no metadata block's corruption was noticed by name; tried\n${tried.join("\n")}`);
  } finally {
    await handle.close();
  }
}
