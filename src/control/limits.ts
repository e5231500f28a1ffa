// Every limit of `thinp serve`'s control socket and background work, by name, units last.

import { assert } from "../io/assert.js";
import { NAME_BYTES_MAX, VOLUMES_MAX } from "../thin/limits.js";

/** Largest request a server reads from a client (formats/control-protocol.md). */
export const CONTROL_MESSAGE_BYTES_MAX = 2 ** 20;
/** The most one volume adds to a `list` reply: a name of NAME_BYTES_MAX, an origin's name, numbers. */
export const CONTROL_LIST_ENTRY_BYTES_MAX = 512;
/** Largest reply a client reads: a `list` of every volume the pool can hold fits. */
export const CONTROL_REPLY_BYTES_MAX = 40 * 2 ** 20;
/** How long the CLI waits for the answer to one control request. */
export const CONTROL_REQUEST_TIMEOUT_MS = 120_000;
/** Simultaneous control connections; more are refused. */
export const CONTROL_CONNECTIONS_MAX = 32;
/** Most stream bytes one `send-read` or `dump-read` reply carries; the client asks for less or the same. */
export const CONTROL_READ_BYTES_MAX = 4 * 2 ** 20;
/** Room a request keeps beside the stream bytes it carries: its op, id and MessagePack framing. */
export const CONTROL_REQUEST_OVERHEAD_BYTES = 4096;
/** Most stream bytes one `receive-data` request carries: what fits a request beside its fields. */
export const CONTROL_RECEIVE_DATA_BYTES_MAX = CONTROL_MESSAGE_BYTES_MAX - CONTROL_REQUEST_OVERHEAD_BYTES;
/** Most ranges one `diff-read` reply carries. */
export const CONTROL_DIFF_RANGES_MAX = 8192;
/** The most one diff range adds to a reply: its kind and two numbers. */
const CONTROL_DIFF_RANGE_BYTES_MAX = 64;
/** Diffs, sends, receives and dumps one control connection has open at once. */
export const CONTROL_SESSIONS_MAX = 8;
/** Chunks of a live receive waiting to be applied; a `receive-data` is answered once its chunk fits. */
export const RECEIVE_QUEUE_CHUNKS_MAX = 4;
/** Acknowledged writes become durable within this long even if no client flushes. */
export const BACKGROUND_COMMIT_INTERVAL_MS = 1000;

// A message's length travels as a u32.
assert(CONTROL_MESSAGE_BYTES_MAX < 2 ** 32 && CONTROL_REPLY_BYTES_MAX < 2 ** 32, "control message length fits its field");
// A listing of a full pool must reach the client (test/control-protocol.test.ts checks the entry size).
assert(
  VOLUMES_MAX * CONTROL_LIST_ENTRY_BYTES_MAX + CONTROL_MESSAGE_BYTES_MAX <= CONTROL_REPLY_BYTES_MAX,
  "a full pool's list fits one reply",
);
/** A volume's uuid as text. */
const UUID_TEXT_BYTES = 36;
assert(2 * NAME_BYTES_MAX + UUID_TEXT_BYTES + 128 <= CONTROL_LIST_ENTRY_BYTES_MAX, "a list entry's names, uuid and numbers fit its bound");
// A request may wait behind a background commit: its timeout must be far longer.
assert(CONTROL_REQUEST_TIMEOUT_MS > BACKGROUND_COMMIT_INTERVAL_MS, "requests outlast a commit interval");
// Replies that carry a stream or a page of a diff fit the reply limit with room to spare.
assert(CONTROL_READ_BYTES_MAX + CONTROL_MESSAGE_BYTES_MAX <= CONTROL_REPLY_BYTES_MAX, "a read reply fits");
assert(CONTROL_DIFF_RANGES_MAX * CONTROL_DIFF_RANGE_BYTES_MAX + CONTROL_MESSAGE_BYTES_MAX <= CONTROL_REPLY_BYTES_MAX, "a diff page fits");
assert(CONTROL_RECEIVE_DATA_BYTES_MAX > 0, "a receive-data request carries bytes");
