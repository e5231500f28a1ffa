// The control socket's framing: messages split across chunks or packed into one come out
// whole, an oversized frame is refused, and a listing of the fullest pool fits one reply.

import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { CONTROL_LIST_ENTRY_BYTES_MAX, CONTROL_MESSAGE_BYTES_MAX, CONTROL_REPLY_BYTES_MAX } from "../src/control/limits.js";
import { FrameReader, frameMessage } from "../src/control/control-protocol.js";
import type { VolumeInfo } from "../src/thin/api.js";
import { NAME_BYTES_MAX, VOLUMES_MAX } from "../src/thin/limits.js";

/** A volume whose every field is as long as it can be. */
function largestVolumeInfo(id: number): VolumeInfo {
  return {
    id,
    name: "n".repeat(NAME_BYTES_MAX),
    uuid: "ffffffff-ffff-ffff-ffff-ffffffffffff",
    sizeBytes: Number.MAX_SAFE_INTEGER,
    mappedBlocks: Number.MAX_SAFE_INTEGER,
    originName: "o".repeat(NAME_BYTES_MAX),
    readOnly: true,
    createdAt: Number.MAX_SAFE_INTEGER,
    snapshotAt: Number.MAX_SAFE_INTEGER,
  };
}

describe("control frames", () => {
  it("come out whole whether split byte by byte or packed several to a chunk", () => {
    const messages = [{ op: "list" }, { ok: true, result: [1, 2, 3] }, { op: "status" }];
    const stream = Buffer.concat(messages.map((message) => frameMessage(message)));
    const bytewise = new FrameReader();
    const received: unknown[] = [];
    for (let i = 0; i < stream.length; i++) received.push(...bytewise.push(stream.subarray(i, i + 1)));
    expect(received).toEqual(messages);
    expect(new FrameReader().push(stream)).toEqual(messages);
  });

  it("refuse a frame longer than the reader's limit before reading its body", () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(CONTROL_MESSAGE_BYTES_MAX + 1, 0);
    expect(() => new FrameReader().push(header)).toThrow(/exceeds/);
  });

  it("carry a list of every volume the fullest pool can hold in one reply", () => {
    expect(encode(largestVolumeInfo(VOLUMES_MAX)).length).toBeLessThanOrEqual(CONTROL_LIST_ENTRY_BYTES_MAX);
    const reply = frameMessage({ ok: true, result: Array.from({ length: VOLUMES_MAX }, (_, i) => largestVolumeInfo(i + 1)) });
    expect(reply.length).toBeGreaterThan(CONTROL_MESSAGE_BYTES_MAX);
    const reader = new FrameReader(CONTROL_REPLY_BYTES_MAX);
    let decoded: unknown[] = [];
    for (let at = 0; at < reply.length; at += 65536) decoded = decoded.concat(reader.push(reply.subarray(at, at + 65536)));
    expect((decoded[0] as { result: VolumeInfo[] }).result).toHaveLength(VOLUMES_MAX);
  });
});
