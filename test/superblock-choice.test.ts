// Which superblock copy opening, check and repair read a pool through: the newest valid one,
// whatever the other holds (src/pdata/superblock-choice.ts).

import { describe, expect, it } from "vitest";
import { CorruptBlockError, NotAPoolError } from "../src/errors.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { METADATA_BLOCK_BYTES } from "../src/pdata/block-format.js";
import { chooseSuperblock } from "../src/pdata/superblock-choice.js";

const SLOTS = [0, 1] as const;

/** Each slot holds a transaction id, or a negative number saying how its decoder fails. */
async function fileWith(slots: [number, number]): Promise<MemoryStorageFile> {
  const file = new MemoryStorageFile("meta");
  for (const slot of SLOTS) {
    const block = Buffer.alloc(METADATA_BLOCK_BYTES);
    block.writeInt32LE(slots[slot], 0);
    await file.write(block, slot * METADATA_BLOCK_BYTES);
  }
  return file;
}

const CORRUPT = -1;
const NOT_A_POOL = -2;
const BROKEN_DECODER = -3;

function decode(block: Buffer, slot: number): { transactionId: number } {
  const value = block.readInt32LE(0);
  if (value === CORRUPT) throw new CorruptBlockError(slot, "checksum", "checksum mismatch");
  if (value === NOT_A_POOL) throw new NotAPoolError("meta", `block ${slot} has no thinp superblock magic`);
  if (value === BROKEN_DECODER) throw new TypeError("a bug in the decoder");
  return { transactionId: value };
}

describe("choosing a superblock copy", () => {
  it("takes the copy with the higher transaction id and says what the other holds", async () => {
    const chosen = await chooseSuperblock(await fileWith([8, 9]), "meta", SLOTS, decode);
    expect(chosen).toEqual({ superblock: { transactionId: 9 }, slot: 1, otherSlot: { slot: 0, transactionId: 8 } });
  });

  it("takes the first slot when both hold the same commit, as a fresh pool's do", async () => {
    expect((await chooseSuperblock(await fileWith([1, 1]), "meta", SLOTS, decode)).slot).toBe(0);
  });

  it("takes the older copy when the newer does not verify, and says why the newer could not be read", async () => {
    const chosen = await chooseSuperblock(await fileWith([4, CORRUPT]), "meta", SLOTS, decode);
    expect(chosen.superblock.transactionId).toBe(4);
    expect(chosen.otherSlot).toEqual({ slot: 1, unreadable: expect.stringMatching(/checksum mismatch/) });
  });

  it("says a file with no superblock at all is not a pool", async () => {
    await expect(chooseSuperblock(await fileWith([NOT_A_POOL, NOT_A_POOL]), "meta", SLOTS, decode)).rejects.toThrow(NotAPoolError);
  });

  it("says a pool with no valid copy is corrupt, giving each copy's failure", async () => {
    const failure = await chooseSuperblock(await fileWith([NOT_A_POOL, CORRUPT]), "meta", SLOTS, decode).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(CorruptBlockError);
    expect(failure).toMatchObject({ kind: "bad-superblock", path: "meta" });
    expect((failure as Error).message).toMatch(/both superblock copies are unreadable \(block 0: .*magic; block 1: .*checksum mismatch\)/);
  });

  it("lets an error that is not about the file through", async () => {
    await expect(chooseSuperblock(await fileWith([3, BROKEN_DECODER]), "meta", SLOTS, decode)).rejects.toThrow(TypeError);
  });
});
