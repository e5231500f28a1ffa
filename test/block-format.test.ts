import { describe, expect, it } from "vitest";
import { CorruptBlockError } from "../src/errors.js";
import { BlockType, METADATA_BLOCK_BYTES, sealBlock, verifyBlock } from "../src/pdata/block-format.js";

function sealed(type: BlockType, index: number): Buffer {
  const block = Buffer.alloc(METADATA_BLOCK_BYTES);
  block.write("some payload", 100);
  sealBlock(block, type, index);
  return block;
}

/** The corruption error `verify` throws. */
function corruptionFrom(verify: () => void): CorruptBlockError {
  try {
    verify();
  } catch (error) {
    expect(error).toBeInstanceOf(CorruptBlockError);
    return error as CorruptBlockError;
  }
  throw new Error("the block verified");
}

describe("metadata block verification", () => {
  it("accepts a sealed block read from its own place", () => {
    expect(() => verifyBlock(sealed(BlockType.BTreeNode, 42), BlockType.BTreeNode, 42)).not.toThrow();
  });

  it("names the block when any single bit flips", () => {
    const original = sealed(BlockType.BTreeNode, 42);
    for (const byte of [0, 3, 5, 9, 100, 4095]) {
      const block = Buffer.from(original);
      block[byte]! ^= 0x10;
      expect(() => verifyBlock(block, BlockType.BTreeNode, 42)).toThrow(/block 42/);
    }
  });

  it("calls a flipped payload bit a checksum failure", () => {
    const block = sealed(BlockType.BTreeNode, 42);
    block[100]! ^= 0x10;
    expect(corruptionFrom(() => verifyBlock(block, BlockType.BTreeNode, 42))).toMatchObject({ kind: "checksum", blockIndex: 42 });
  });

  it("catches a misdirected write: a valid block in the wrong place", () => {
    const error = corruptionFrom(() => verifyBlock(sealed(BlockType.BTreeNode, 42), BlockType.BTreeNode, 43));
    expect(error).toMatchObject({ kind: "wrong-block-number", blockIndex: 43 });
    expect(error.message).toMatch(/says it is block 42/);
  });

  it("catches a block of another type", () => {
    expect(corruptionFrom(() => verifyBlock(sealed(BlockType.SpaceMapBitmap, 7), BlockType.BTreeNode, 7))).toMatchObject({
      kind: "wrong-type",
      blockIndex: 7,
    });
  });

  it("reports a zeroed block as zeros", () => {
    const error = corruptionFrom(() => verifyBlock(Buffer.alloc(METADATA_BLOCK_BYTES), BlockType.BTreeNode, 9));
    expect(error).toMatchObject({ kind: "wrong-type", blockIndex: 9 });
    expect(error.message).toMatch(/found zeros/);
  });
});
