import { describe, expect, it } from "vitest";
import { zeroBlockRuns } from "../cli/zero-runs.js";

const BLOCK_BYTES = 16;

function blocks(...kinds: ("data" | "zero")[]): Buffer {
  return Buffer.concat(kinds.map((kind) => Buffer.alloc(BLOCK_BYTES, kind === "data" ? 0xab : 0)));
}

describe("zeroBlockRuns", () => {
  it("merges adjacent blocks of one kind", () => {
    expect(zeroBlockRuns(0, blocks("data", "data", "zero", "zero", "data"), BLOCK_BYTES)).toEqual([
      { start: 0, byteLength: 32, zero: false },
      { start: 32, byteLength: 32, zero: true },
      { start: 64, byteLength: 16, zero: false },
    ]);
  });

  it("never calls a partial block zero, so import writes it instead of discarding a neighbour's bytes", () => {
    // 8 bytes into a block: the first 8 zero bytes and the last 8 are partial blocks.
    const bytes = Buffer.alloc(BLOCK_BYTES * 2);
    expect(zeroBlockRuns(8, bytes, BLOCK_BYTES)).toEqual([
      { start: 0, byteLength: 8, zero: false },
      { start: 8, byteLength: 16, zero: true },
      { start: 24, byteLength: 8, zero: false },
    ]);
  });

  it("treats a block with one non-zero byte as data", () => {
    const bytes = blocks("zero", "zero");
    bytes[BLOCK_BYTES + 15] = 1;
    expect(zeroBlockRuns(0, bytes, BLOCK_BYTES)).toEqual([
      { start: 0, byteLength: 16, zero: true },
      { start: 16, byteLength: 16, zero: false },
    ]);
  });

  it("covers the buffer exactly, in order, for any offset", () => {
    const bytes = Buffer.concat([blocks("zero", "data", "zero", "zero", "data"), Buffer.alloc(5)]);
    for (let volumeOffset = 0; volumeOffset < BLOCK_BYTES * 2; volumeOffset += 1) {
      const runs = zeroBlockRuns(volumeOffset, bytes, BLOCK_BYTES);
      let expectedStart = 0;
      for (const run of runs) {
        expect(run.start).toBe(expectedStart);
        expect(run.byteLength).toBeGreaterThan(0);
        if (run.zero) {
          expect((volumeOffset + run.start) % BLOCK_BYTES).toBe(0);
          expect(run.byteLength % BLOCK_BYTES).toBe(0);
          expect(bytes.subarray(run.start, run.start + run.byteLength).every((byte) => byte === 0)).toBe(true);
        }
        expectedStart += run.byteLength;
      }
      expect(expectedStart).toBe(bytes.length);
    }
  });

  it("returns no runs for no bytes", () => {
    expect(zeroBlockRuns(123, Buffer.alloc(0), BLOCK_BYTES)).toEqual([]);
  });
});
