import { describe, expect, it } from "vitest";
import { InvalidSizeError } from "../src/errors.js";
import { formatSize, parseSize } from "../cli/size.js";

describe("parseSize", () => {
  it.each([
    ["65536", 65536],
    ["0", 0],
    ["64K", 65536],
    ["64k", 65536],
    ["512M", 512 * 2 ** 20],
    ["10G", 10 * 2 ** 30],
    ["2T", 2 * 2 ** 40],
    ["4P", 4 * 2 ** 50],
    ["10GiB", 10 * 2 ** 30],
    ["10gib", 10 * 2 ** 30],
    ["10GB", 10 * 2 ** 30],
    ["100B", 100],
    [" 1M ", 2 ** 20],
    ["1.5G", 1.5 * 2 ** 30],
    ["0.5K", 512],
    ["1.25M", 1.25 * 2 ** 20],
  ])("reads %j as %d bytes, binary units", (text, byteCount) => {
    expect(parseSize(text)).toBe(byteCount);
  });

  it.each(["10Q", "", "G", "-1", "1e3", "0x10", ".5G", "5.", "1,000", "10 GG", "10iB", "1/2G"])(
    "refuses %j naming the text and the accepted forms",
    (text) => {
      expect(() => parseSize(text)).toThrow(InvalidSizeError);
      expect(() => parseSize(text)).toThrow(
        `size '${text}' not understood: use a number of bytes or a suffix K, M, G, T, P (binary: 1K = 1024)`,
      );
    },
  );

  it("refuses a fraction that is not a whole number of bytes", () => {
    expect(() => parseSize("0.1K")).toThrow("size '0.1K' is not a whole number of bytes");
    expect(() => parseSize("1.0000001")).toThrow(InvalidSizeError);
  });

  it("refuses sizes beyond exact integer arithmetic", () => {
    expect(parseSize(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => parseSize(String(Number.MAX_SAFE_INTEGER + 1))).toThrow("is too large");
    expect(() => parseSize("99999999T")).toThrow("is too large");
    expect(() => parseSize("9".repeat(400))).toThrow(InvalidSizeError);
  });
});

describe("formatSize", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1 KiB"],
    [65536, "64 KiB"],
    [1536, "1.5 KiB"],
    [256 * 2 ** 20, "256 MiB"],
    [1.5 * 2 ** 30, "1.5 GiB"],
    [2 ** 20 - 1, "1 MiB"],
    [2 ** 20 - 2 ** 10, "1023 KiB"],
    [4 * 2 ** 20 + 65536, "4.1 MiB"],
    [127 * 65536, "7.9 MiB"],
    [3 * 2 ** 40, "3 TiB"],
  ])("shows %d bytes as %j", (byteCount, text) => {
    expect(formatSize(byteCount)).toBe(text);
  });

  it("round-trips with parseSize for whole units", () => {
    for (const text of ["64 KiB", "512 MiB", "10 GiB", "1.5 GiB"]) {
      expect(formatSize(parseSize(text.replace(" ", "")))).toBe(text);
    }
  });
});
