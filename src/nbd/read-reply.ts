// Replies to NBD_CMD_READ. With structured replies, unmapped runs go out as hole chunks
// (12 bytes on the wire however long the hole), and only mapped runs carry data.

import type { VolumeHandle } from "../thin/api.js";
import { assert } from "../io/assert.js";
import { encodeDataChunk, encodeHoleChunk, encodeNoneChunk, encodeSimpleReply } from "./transmission-messages.js";

async function readExactly(handle: VolumeHandle, offset: number, byteLength: number): Promise<Buffer> {
  const data = await handle.read(offset, byteLength);
  assert(data.length === byteLength, `read of ${byteLength} bytes returned ${data.length}`);
  return data;
}

export async function simpleReadReply(handle: VolumeHandle, cookie: bigint, offset: number, byteLength: number): Promise<Buffer[]> {
  if (byteLength === 0) return [encodeSimpleReply(cookie, 0)];
  const data = await readExactly(handle, offset, byteLength);
  return [encodeSimpleReply(cookie, 0), data];
}

/**
 * Every engine call finishes before the first byte is sent, so no error can follow a chunk
 * and the last content chunk can carry the DONE flag. With `dontFragment` the client asked
 * for exactly one content chunk, holes included as zeros.
 */
export async function structuredReadReply(
  handle: VolumeHandle,
  cookie: bigint,
  offset: number,
  byteLength: number,
  dontFragment: boolean,
): Promise<Buffer[]> {
  if (byteLength === 0) return [encodeNoneChunk(cookie)];
  if (dontFragment) return encodeDataChunk(cookie, true, offset, await readExactly(handle, offset, byteLength));
  // One lookup gives both the bytes and where the holes are.
  const runs = await handle.readRuns(offset, byteLength);
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
