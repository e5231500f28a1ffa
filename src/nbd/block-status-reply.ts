// Replies to NBD_CMD_BLOCK_STATUS: one BLOCK_STATUS chunk per selected context.
//
// base:allocation: a thin volume's unmapped blocks read as zeros and have no data block
// behind them: HOLE|ZERO. A mapped block that a write would copy first (shared with a
// snapshot) is HOLE without ZERO: it holds data, but writing it needs a free block, and the
// spec lets only holes fail a write with ENOSPC. A block the volume owns is data (status 0):
// writes to it go in place and never fail for space.
//
// qemu:dirty-bitmap:BASE: DIRTY (1) where the export differs from volume BASE, 0 where the
// two are alike, as QEMU's interop document defines the context.

import type { ByteRange, ChangeTracker } from "./catalog.js";
import type { Extent, VolumeHandle } from "../thin/api.js";
import { assert } from "../io/assert.js";
import { BLOCK_STATUS_EXTENTS_MAX, BLOCK_STATUS_SCAN_BYTES_MAX } from "./limits.js";
import { mergedRuns } from "./extent-runs.js";
import type { SelectedContext } from "./meta-context.js";
import { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO } from "./protocol.js";
import { encodeBlockStatusChunk, type StatusDescriptor } from "./transmission-messages.js";

export async function blockStatusReply(
  handle: VolumeHandle,
  cookie: bigint,
  contexts: readonly SelectedContext[],
  offset: number,
  byteLength: number,
  requestOne: boolean,
): Promise<Buffer[]> {
  assert(contexts.length > 0, "validation admits BLOCK_STATUS only with a context");
  // The spec lets us describe less than was asked; the client asks again from where we stopped.
  const scanBytes = Math.min(byteLength, BLOCK_STATUS_SCAN_BYTES_MAX);
  // The contexts share one reply's descriptors, so a reply's size does not grow with them.
  const descriptorsMax = requestOne ? 1 : Math.floor(BLOCK_STATUS_EXTENTS_MAX / contexts.length);
  // All or nothing: if one context cannot be answered the request fails, with no chunk sent.
  const answers = await Promise.all(
    contexts.map(async (context) => {
      const descriptors =
        context.kind === "allocation"
          ? await allocationDescriptors(handle, offset, scanBytes)
          : await dirtyDescriptors(context.tracker, offset, scanBytes);
      return { id: context.id, descriptors: descriptors.slice(0, descriptorsMax) };
    }),
  );
  return answers.map((answer, index) => encodeBlockStatusChunk(cookie, index === answers.length - 1, answer.id, answer.descriptors));
}

async function allocationDescriptors(handle: VolumeHandle, offset: number, scanBytes: number): Promise<StatusDescriptor[]> {
  const runs = mergedRuns(await handle.extents(offset, scanBytes), offset, scanBytes);
  return runs.map((run) => ({ byteLength: run.length, flags: allocationFlags(run) }));
}

function allocationFlags(run: Extent): number {
  if (!run.mapped) return NBD_STATE_HOLE | NBD_STATE_ZERO;
  return run.copyOnWrite ? NBD_STATE_HOLE : 0;
}

async function dirtyDescriptors(tracker: ChangeTracker, offset: number, scanBytes: number): Promise<StatusDescriptor[]> {
  return dirtyRuns(await tracker.changedRanges(offset, scanBytes), offset, scanBytes);
}

/**
 * Clean and dirty runs tiling [offset, offset + byteLength) from the changed ranges inside it.
 * Asserts the ranges keep ChangeTracker's promise: in order, inside the range, not overlapping.
 */
export function dirtyRuns(changed: readonly ByteRange[], offset: number, byteLength: number): StatusDescriptor[] {
  const end = offset + byteLength;
  const descriptors: StatusDescriptor[] = [];
  const push = (length: number, flags: number) => {
    const last = descriptors[descriptors.length - 1];
    if (last !== undefined && last.flags === flags) last.byteLength += length;
    else descriptors.push({ byteLength: length, flags });
  };
  let cursor = offset;
  for (const range of changed) {
    assert(
      range.length > 0 && range.offset >= cursor && range.offset + range.length <= end,
      `changed range ${range.offset}+${range.length}`,
    );
    if (range.offset > cursor) push(range.offset - cursor, 0);
    push(range.length, NBD_STATE_DIRTY);
    cursor = range.offset + range.length;
  }
  if (cursor < end) push(end - cursor, 0);
  return descriptors;
}
