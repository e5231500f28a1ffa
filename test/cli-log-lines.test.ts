// `thinp serve`'s log lines: the text line people read, and the JSON object log shippers parse.

import { describe, expect, it } from "vitest";
import { formatLogLine, parseLogFormat } from "../cli/log-lines.js";

const NOW = new Date("2026-01-05T10:00:00.000Z");

describe("log lines", () => {
  it("text puts the time and level before the message and leaves the fields out", () => {
    expect(formatLogLine("text", "info", "NBD server closed", { connection: 3 }, NOW)).toBe(
      "2026-01-05T10:00:00.000Z info NBD server closed\n",
    );
  });

  it("json is one object per line: time, level and msg first, then the fields", () => {
    const line = formatLogLine("json", "warn", 'a "quoted"\nmessage', { connection: 3, peer: "127.0.0.1:5000" }, NOW);
    expect(line.endsWith("\n")).toBe(true);
    expect(line.slice(0, -1)).not.toContain("\n");
    expect(Object.keys(JSON.parse(line))).toEqual(["time", "level", "msg", "connection", "peer"]);
    expect(JSON.parse(line)).toEqual({
      time: "2026-01-05T10:00:00.000Z",
      level: "warn",
      msg: 'a "quoted"\nmessage',
      connection: 3,
      peer: "127.0.0.1:5000",
    });
  });

  it("a field named like time, level or msg does not replace them", () => {
    const line = formatLogLine("json", "info", "real", { msg: "fake", level: "debug" }, NOW);
    expect(JSON.parse(line)).toEqual({ time: "2026-01-05T10:00:00.000Z", level: "info", msg: "real" });
  });

  it("--log-format takes text or json only", () => {
    expect(parseLogFormat("json")).toBe("json");
    expect(parseLogFormat("text")).toBe("text");
    expect(() => parseLogFormat("xml")).toThrow(/use text or json/);
  });
});
