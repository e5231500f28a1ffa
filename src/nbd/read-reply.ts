// Replies to NBD_CMD_READ. With structured replies, unmapped runs go out as hole chunks
// (12 bytes on the wire however long the hole), and only mapped runs carry data.

import type { ReadRun, VolumeHandle } from "../thin/api.js";
import { assert } from "../io/assert.js";
import { encodeDataChunk, encodeHoleChunk, encodeNoneChunk, encodeSimpleReply } from "./transmission-messages.js";

/** The reply frames to a READ: on the calling thread when the engine can answer at once, else later. */
export type ReadReply = Buffer[] | Promise<Buffer[]>;

function checkLength(data: Buffer, byteLength: number): Buffer {
  assert(data.length === byteLength, `read of ${byteLength} bytes returned ${data.length}`);
  return data;
}

/** The bytes, at once if the handle can give them without waiting. */
function readExactly(handle: VolumeHandle, offset: number, byteLength: number): Buffer | Promise<Buffer> {
  const data = handle.readSoon ? handle.readSoon(offset, byteLength) : handle.read(offset, byteLength);
  return data instanceof Promise ? data.then((bytes) => checkLength(bytes, byteLength)) : checkLength(data, byteLength);
}

export function simpleReadReply(handle: VolumeHandle, cookie: bigint, offset: number, byteLength: number): ReadReply {
  if (byteLength === 0) return [encodeSimpleReply(cookie, 0)];
  const data = readExactly(handle, offset, byteLength);
  if (data instanceof Promise) return data.then((bytes) => [encodeSimpleReply(cookie, 0), bytes]);
  return [encodeSimpleReply(cookie, 0), data];
}

/**
 * Every engine call finishes before the first byte is sent, so no error can follow a chunk
 * and the last content chunk can carry the DONE flag. With `dontFragment` the client asked
 * for exactly one content chunk, holes included as zeros.
 */
export function structuredReadReply(
  handle: VolumeHandle,
  cookie: bigint,
  offset: number,
  byteLength: number,
  dontFragment: boolean,
): ReadReply {
  if (byteLength === 0) return [encodeNoneChunk(cookie)];
  if (dontFragment) {
    const data = readExactly(handle, offset, byteLength);
    if (data instanceof Promise) return data.then((bytes) => encodeDataChunk(cookie, true, offset, bytes));
    return encodeDataChunk(cookie, true, offset, data);
  }
  // One lookup gives both the bytes and where the holes are.
  const runs = handle.readRunsSoon ? handle.readRunsSoon(offset, byteLength) : handle.readRuns(offset, byteLength);
  if (runs instanceof Promise) return runs.then((later) => chunksFor(cookie, offset, byteLength, later));
  return chunksFor(cookie, offset, byteLength, runs);
}

function chunksFor(cookie: bigint, offset: number, byteLength: number, runs: ReadRun[]): Buffer[] {
  let cursor = offset;
  const frames: Buffer[] = [];
  runs.forEach((run, index) => {
    assert(
      run.offset === cursor && run.length > 0 && (run.data === null || run.data.length === run.length),
      `read run ${run.offset}+${run.length} does not continue at ${cursor}`,
    );
    cursor += run.length;
    const done = index === runs.length - 1;
    if (run.data === null) frames.push(encodeHoleChunk(cookie, done, run.offset, run.length));
    else frames.push(...encodeDataChunk(cookie, done, run.offset, run.data));
  });
  assert(cursor === offset + byteLength, `read runs end at ${cursor}, not ${offset + byteLength}`);
  return frames;
}
