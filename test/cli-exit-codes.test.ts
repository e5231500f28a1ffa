import { describe, expect, it } from "vitest";
import type { ErrorCode } from "../src/errors.js";
import { EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, exitCodeFor } from "../cli/exit-codes.js";

const EVERY_CODE: readonly ErrorCode[] = [
  "NO_SUCH_VOLUME",
  "VOLUME_EXISTS",
  "INVALID_NAME",
  "INVALID_SIZE",
  "SHRINK_BELOW_MAPPED",
  "POOL_FULL",
  "METADATA_FULL",
  "LIMIT_EXCEEDED",
  "OUT_OF_RANGE",
  "READ_ONLY",
  "VOLUME_BUSY",
  "CORRUPT",
  "NOT_A_POOL",
  "FILE_MISSING",
  "FILE_EXISTS",
  "POOL_LOCKED",
  "IO_ERROR",
  "SERVER_UNREACHABLE",
  "INVALID_ARGUMENT",
  "STREAM_CORRUPT",
  "BASE_MISMATCH",
];

describe("exit codes", () => {
  it("give every operating error a failing status distinct from success and from a bug", () => {
    for (const code of EVERY_CODE) {
      const status = exitCodeFor(code);
      expect(status, code).not.toBe(EXIT_OK);
      expect(status, code).not.toBe(EXIT_INTERNAL);
      expect(status, code).toBeGreaterThan(0);
      expect(status, code).toBeLessThan(64);
    }
  });

  it("keep the documented numbers scripts rely on", () => {
    expect(exitCodeFor("INVALID_SIZE")).toBe(EXIT_USAGE);
    expect(exitCodeFor("NO_SUCH_VOLUME")).toBe(3);
    expect(exitCodeFor("VOLUME_EXISTS")).toBe(4);
    expect(exitCodeFor("STREAM_CORRUPT")).toBe(9);
    expect(exitCodeFor("BASE_MISMATCH")).toBe(9);
    expect(exitCodeFor("INVALID_ARGUMENT")).toBe(EXIT_USAGE);
    expect(exitCodeFor("POOL_FULL")).toBe(5);
    expect(exitCodeFor("CORRUPT")).toBe(6);
    expect(exitCodeFor("POOL_LOCKED")).toBe(7);
    expect(exitCodeFor("FILE_MISSING")).toBe(8);
    expect(EXIT_INTERNAL).toBe(70);
  });
});
