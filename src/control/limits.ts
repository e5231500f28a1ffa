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
