import { describe, expect, it } from "vitest";
import { AssertionError } from "../src/io/assert.js";
import { defineLayout, fieldBytes, readUint, writeUint } from "../src/io/byte-layout.js";

describe("byte layouts", () => {
  it("accepts fields in offset order, with gaps, that end within the struct", () => {
    const layout = defineLayout("example", 16, { a: { offset: 0, bytes: 4 }, b: { offset: 8, bytes: 8 } });
    expect(Object.isFrozen(layout)).toBe(true);
  });

  it("refuses a field that overlaps the one before it", () => {
    expect(() => defineLayout("example", 16, { a: { offset: 0, bytes: 8 }, b: { offset: 4, bytes: 4 } })).toThrow(AssertionError);
    expect(() => defineLayout("example", 16, { a: { offset: 0, bytes: 8 }, b: { offset: 4, bytes: 4 } })).toThrow(
      /example\.b at 4 overlaps/,
    );
  });

  it("refuses a field listed out of order, or past the struct's end", () => {
    expect(() => defineLayout("example", 16, { b: { offset: 8, bytes: 4 }, a: { offset: 0, bytes: 4 } })).toThrow(AssertionError);
    expect(() => defineLayout("example", 16, { a: { offset: 12, bytes: 8 } })).toThrow(/ends at 20, past the struct's 16 bytes/);
  });

  it("reads and writes each integer field at its own width, little-endian", () => {
    const layout = defineLayout("example", 15, {
      u8: { offset: 0, bytes: 1 },
      u16: { offset: 1, bytes: 2 },
      u32: { offset: 3, bytes: 4 },
      u64: { offset: 7, bytes: 8 },
    });
    const buf = Buffer.alloc(15);
    writeUint(buf, layout.u8, 0xab);
    writeUint(buf, layout.u16, 0xbeef);
    writeUint(buf, layout.u32, 0xdead_beef);
    writeUint(buf, layout.u64, 2 ** 53 - 1);
    expect(buf.toString("hex")).toBe("abefbeefbeaddeffffffffffff1f00");
    expect([layout.u8, layout.u16, layout.u32, layout.u64].map((field) => readUint(buf, field))).toEqual([
      0xab,
      0xbeef,
      0xdead_beef,
      2 ** 53 - 1,
    ]);
    expect(fieldBytes(buf, layout.u16).toString("hex")).toBe("efbe");
  });

  it("reads a u64 field past 2^53 as NaN, for the decoder to refuse", () => {
    const layout = defineLayout("example", 8, { u64: { offset: 0, bytes: 8 } });
    expect(readUint(Buffer.alloc(8, 0xff), layout.u64)).toBeNaN();
  });
});
