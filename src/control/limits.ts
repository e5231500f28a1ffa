// Every limit of `thinp serve`'s control socket and background work, by name, units last.

import { assert } from "../io/assert.js";

/** Largest control message, either way (formats/control-protocol.md). */
export const CONTROL_MESSAGE_BYTES_MAX = 2 ** 20;
/** How long the CLI waits for the answer to one control request. */
export const CONTROL_REQUEST_TIMEOUT_MS = 120_000;
/** Simultaneous control connections; more are refused. */
export const CONTROL_CONNECTIONS_MAX = 32;
/** Acknowledged writes become durable within this long even if no client flushes. */
export const BACKGROUND_COMMIT_INTERVAL_MS = 1000;

// A message's length travels as a u32.
assert(CONTROL_MESSAGE_BYTES_MAX < 2 ** 32, "control message length fits its field");
// A request may wait behind a background commit: its timeout must be far longer.
assert(CONTROL_REQUEST_TIMEOUT_MS > BACKGROUND_COMMIT_INTERVAL_MS, "requests outlast a commit interval");
