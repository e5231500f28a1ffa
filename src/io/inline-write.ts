// Small page-aligned writes are done on the calling thread. A buffered 4 KiB write into the
// page cache costs a few microseconds (the engine keeps page-cache folios within a data
// block, where such a write is cheapest: bench/page-cache-folios.ts); handing it to libuv's
// thread pool costs the event loop about as much (the hand-off and its completion), and on a
// two-core machine the pool's threads compete with the client for the other core. Whole
// pages only, so the kernel never reads a page from disk to merge a partial write. Buffered
// writes have no RWF_NOWAIT on ext4, so a write can still be held up (dirty-page throttling,
// a journal commit): one that takes long sends writes to the thread pool for a while, which
// bounds how often the event loop waits.

import { writeSync } from "node:fs";
import { INLINE_WRITE_ALIGN_BYTES, INLINE_WRITE_BYTES_MAX, INLINE_WRITE_PAUSE_MS, INLINE_WRITE_SLOW_MS } from "./limits.js";

/** performance.now() until which writes go to the thread pool. */
let pausedUntil = 0;

/** Whether a write of `length` bytes at `position` should be done inline now. */
export function writesInline(position: number, length: number): boolean {
  if (length === 0 || length > INLINE_WRITE_BYTES_MAX) return false;
  if (position % INLINE_WRITE_ALIGN_BYTES !== 0 || length % INLINE_WRITE_ALIGN_BYTES !== 0) return false;
  return pausedUntil === 0 || performance.now() >= pausedUntil;
}

/** Writes all of `buf` at `position` on this thread; throws the system's error. */
export function writeInline(fd: number, buf: Uint8Array, position: number): void {
  const started = performance.now();
  for (let done = 0; done < buf.length;) {
    done += writeSync(fd, buf, done, buf.length - done, position + done);
  }
  const finished = performance.now();
  pausedUntil = finished - started > INLINE_WRITE_SLOW_MS ? finished + INLINE_WRITE_PAUSE_MS : 0;
}
