// The engine's extents, checked and tidied for the wire.

import type { Extent } from "../thin/api.js";
import { assert } from "../io/assert.js";

/**
 * `extents` with neighbours of the same kind merged. Asserts that they tile
 * [offset, offset + byteLength) exactly, in order, as VolumeHandle.extents promises.
 */
export function mergedRuns(extents: readonly Extent[], offset: number, byteLength: number): Extent[] {
  const runs: Extent[] = [];
  let cursor = offset;
  for (const extent of extents) {
    assert(extent.offset === cursor && extent.length > 0, `extent ${extent.offset}+${extent.length} does not continue at ${cursor}`);
    cursor += extent.length;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.mapped === extent.mapped && last.copyOnWrite === extent.copyOnWrite) last.length += extent.length;
    else runs.push({ offset: extent.offset, length: extent.length, mapped: extent.mapped, copyOnWrite: extent.copyOnWrite });
  }
  assert(cursor === offset + byteLength, `extents end at ${cursor}, not ${offset + byteLength}`);
  return runs;
}
