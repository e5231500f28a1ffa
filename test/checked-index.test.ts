import { describe, expect, it } from "vitest";
import { AssertionError } from "../src/io/assert.js";
import { at, countOne } from "../src/io/checked-index.js";

describe("checked index", () => {
  it("at returns the element that is there", () => {
    expect(at([5, 6, 7], 2, "three elements")).toBe(7);
    expect(at(Uint8Array.of(0), 0, "one byte")).toBe(0);
  });

  it("at fails an assertion, with the reason, for an index outside the array", () => {
    expect(() => at([5], 1, "one element")).toThrow(AssertionError);
    expect(() => at([5], -1, "one element")).toThrow(/one element/);
  });

  it("countOne adds one inside the table and fails an assertion outside it", () => {
    const counts = new Uint32Array(2);
    countOne(counts, 1, "two counts");
    countOne(counts, 1, "two counts");
    expect([...counts]).toEqual([0, 2]);
    expect(() => countOne(counts, 2, "two counts")).toThrow(AssertionError);
  });
});
