// Replies to NBD_CMD_BLOCK_STATUS for base:allocation. A thin volume's unmapped blocks read
// as zeros and have no data block behind them: HOLE|ZERO. A mapped block that a write would
// copy first (shared with a snapshot) is HOLE without ZERO: it holds data, but writing it
// needs a free block, and the spec lets only holes fail a write with ENOSPC. A block the
// volume owns is data (status 0): writes to it go in place and never fail for space.

import type { Extent, VolumeHandle } from "../thin/api.js";
import { BLOCK_STATUS_EXTENTS_MAX, BLOCK_STATUS_SCAN_BYTES_MAX } from "./limits.js";
import { mergedRuns } from "./extent-runs.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "./protocol.js";
import { encodeBlockStatusChunk, type StatusDescriptor } from "./transmission-messages.js";

export async function blockStatusReply(
  handle: VolumeHandle,
  cookie: bigint,
  contextId: number,
  offset: number,
  byteLength: number,
  requestOne: boolean,
): Promise<Buffer> {
  // The spec lets us describe less than was asked; the client asks again from where we stopped.
  const scanBytes = Math.min(byteLength, BLOCK_STATUS_SCAN_BYTES_MAX);
  const runs = mergedRuns(await handle.extents(offset, scanBytes), offset, scanBytes);
  const descriptors: StatusDescriptor[] = runs
    .slice(0, requestOne ? 1 : BLOCK_STATUS_EXTENTS_MAX)
    .map((run) => ({ byteLength: run.length, flags: allocationFlags(run) }));
  return encodeBlockStatusChunk(cookie, true, contextId, descriptors);
}

function allocationFlags(run: Extent): number {
  if (!run.mapped) return NBD_STATE_HOLE | NBD_STATE_ZERO;
  return run.copyOnWrite ? NBD_STATE_HOLE : 0;
}
