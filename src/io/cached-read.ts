// A read the page cache can answer at once is answered on the calling thread: preadv2 with
// RWF_NOWAIT copies cached pages or fails with EAGAIN instead of waiting for the disk. A 4 KiB
// read then costs a few microseconds of the event loop instead of a round trip through
// libuv's thread pool, which on a loaded two-core machine costs more than the copy itself.
// Anything the cache cannot answer (and any error, which the usual path then reports) goes
// the usual way.

import { EAGAIN, EIO, libc, RWF_NOWAIT } from "./libc.js";

/** Off for good once the kernel or the file system says it has no non-blocking reads. */
let nonBlockingReads = true;

/**
 * Reads into `target` from `position` if the page cache holds it: the bytes read (0 at the
 * end of the file, fewer than asked where the cache holds only the start), or -1 when the
 * cache could not answer and the caller must read the usual way.
 */
export function readFromPageCache(fd: number, target: Uint8Array, position: number): number {
  if (!nonBlockingReads || target.length === 0) return -1;
  const bytesRead = libc().preadv2(fd, target, position, RWF_NOWAIT);
  if (bytesRead >= 0) return bytesRead;
  // EAGAIN: not cached. Anything else (EOPNOTSUPP on a file system without it, ENOSYS on an
  // old kernel, an I/O error) is left to the usual path, which reports real errors; only the
  // first two mean no read will ever succeed here.
  const errno = libc().errno();
  if (errno !== EAGAIN && errno !== EIO) nonBlockingReads = false;
  return -1;
}
