// Small page-aligned writes are done on the calling thread when that is cheap. A buffered
// 4 KiB write into the page cache costs a few microseconds; handing it to libuv's thread
// pool costs more than that on the event loop alone (the hand-off and its completion). But
// the kernel's cost varies: into a large page-cache folio (a file written in big chunks) a
// 4 KiB write costs several times more, and then the pool is the cheaper place, running the
// writes on another core. So the cost of inline writes is measured as they go, and writes go
// inline only while it stays below the hand-off's. Whole pages only, so the kernel never
// reads a page from disk to merge a partial write. Buffered writes have no RWF_NOWAIT on
// ext4, so a write can still be held up (dirty-page throttling, a journal commit): one that
// takes long sends writes to the pool for a while, which bounds how often the event loop waits.

import { writeSync } from "node:fs";
import {
  INLINE_WRITE_ALIGN_BYTES,
  INLINE_WRITE_BYTES_MAX,
  INLINE_WRITE_COST_MAX_US,
  INLINE_WRITE_PAUSE_MS,
  INLINE_WRITE_SAMPLE_EVERY,
  INLINE_WRITE_SLOW_MS,
} from "./limits.js";

/** performance.now() until which writes go to the thread pool. */
let pausedUntil = 0;
/** A moving average of what one inline 4 KiB of writing costs, in microseconds. */
let costPer4KiBUs = 0;
/** Writes the cost kept from going inline since the last sample. */
let skipped = 0;

/** Weight of the newest write in the moving average. */
const COST_WEIGHT = 1 / 16;

/** Whether a write of `length` bytes at `position` should be done inline now. */
export function writesInline(position: number, length: number): boolean {
  if (length === 0 || length > INLINE_WRITE_BYTES_MAX) return false;
  if (position % INLINE_WRITE_ALIGN_BYTES !== 0 || length % INLINE_WRITE_ALIGN_BYTES !== 0) return false;
  if (pausedUntil !== 0 && performance.now() < pausedUntil) return false;
  if (costPer4KiBUs <= INLINE_WRITE_COST_MAX_US) return true;
  if (++skipped < INLINE_WRITE_SAMPLE_EVERY) return false;
  skipped = 0;
  return true;
}

/** Writes all of `buf` at `position` on this thread; throws the system's error. */
export function writeInline(fd: number, buf: Uint8Array, position: number): void {
  const started = performance.now();
  for (let done = 0; done < buf.length;) {
    done += writeSync(fd, buf, done, buf.length - done, position + done);
  }
  const elapsedMs = performance.now() - started;
  pausedUntil = elapsedMs > INLINE_WRITE_SLOW_MS ? started + elapsedMs + INLINE_WRITE_PAUSE_MS : 0;
  // A held-up write says nothing of the usual cost; the pause deals with it.
  if (elapsedMs <= INLINE_WRITE_SLOW_MS) {
    const per4KiB = (elapsedMs * 1000 * 4096) / buf.length;
    costPer4KiBUs += (per4KiB - costPer4KiBUs) * COST_WEIGHT;
  }
}
