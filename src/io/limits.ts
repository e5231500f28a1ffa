// Every limit of the I/O layer, by name, units last.

/** Pages of an in-memory file: the unit shared copy-on-write between clones. */
export const SPARSE_PAGE_BYTES = 4096;
/** Largest extended-attribute value thinp reads or writes. */
export const XATTR_VALUE_BYTES_MAX = 1024;
/** Characters of a lock holder's command line shown in a message. */
export const HOLDER_COMMAND_CHARS_MAX = 120;
/**
 * Largest read first tried straight from the page cache on the calling thread (cached-read.ts);
 * larger reads go to libuv's thread pool, where copying them does not hold up the event loop.
 */
export const CACHED_READ_BYTES_MAX = 128 * 1024;
/** Attempts at a lock call the kernel interrupted before giving up. */
export const LOCK_EINTR_RETRIES_MAX = 8;
/**
 * Largest write done on the calling thread (inline-write.ts), and the alignment it needs: a
 * whole-page write never makes the kernel read the page first.
 */
export const INLINE_WRITE_BYTES_MAX = 128 * 1024;
export const INLINE_WRITE_ALIGN_BYTES = 4096;
/**
 * An inline write slower than this was held up (dirty-page throttling, a journal commit):
 * writes then go to the thread pool for INLINE_WRITE_PAUSE_MS, so the event loop is not
 * held up again while the kernel catches up.
 */
export const INLINE_WRITE_SLOW_MS = 5;
export const INLINE_WRITE_PAUSE_MS = 1000;
