// The psktool key file: what is accepted, and the line a bad file is refused at.

import { describe, expect, it } from "vitest";
import { PSK_IDENTITY_BYTES_MAX, parsePskFile } from "../cli/psk-file.js";

const KEY = "0123456789abcdef".repeat(4);

describe("parsePskFile", () => {
  it("reads identity:hexkey lines, skipping blank ones and CRLF endings", () => {
    const keys = parsePskFile(`alice:${KEY}\r\n\nbob:${KEY.toUpperCase()}\n`, "keys");
    expect([...keys.keys()]).toEqual(["alice", "bob"]);
    expect(keys.get("alice")!.toString("hex")).toBe(KEY);
    expect(keys.get("bob")!.equals(keys.get("alice")!)).toBe(true);
  });

  it("refuses a bad file, naming the line", () => {
    const cases: [string, string][] = [
      ["", "holds no keys"],
      [`alice ${KEY}`, "line 1: not 'identity:hexkey'"],
      [`:${KEY}`, "line 1: the identity must have"],
      [`${"x".repeat(PSK_IDENTITY_BYTES_MAX + 1)}:${KEY}`, "the identity must have"],
      [`alice:${KEY}\nbob:xyz`, "line 2: the key of 'bob' is not hexadecimal"],
      [`alice:${KEY}0`, "not hexadecimal"],
      ["alice:abcd", "has 2 bytes"],
      [`alice:${KEY}\nalice:${KEY}`, "line 2: 'alice' has a key already"],
    ];
    for (const [text, message] of cases) {
      expect(() => parsePskFile(text, "keys"), JSON.stringify(text)).toThrow(message);
    }
  });
});
