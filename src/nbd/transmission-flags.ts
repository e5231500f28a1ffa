// The transmission flags we advertise for an export, and so the features a client may use.

import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from "./protocol.js";

export function transmissionFlags(readOnly: boolean, structuredReplies: boolean): number {
  // FLUSH commits the whole pool, so a flush on any connection covers every connection's
  // acknowledged writes: that is exactly what CAN_MULTI_CONN promises.
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
  if (readOnly) flags |= NBD_FLAG_READ_ONLY;
  // Our write-zeroes unmaps whole blocks, which is always faster than writing them, so
  // FAST_ZERO can be honoured (NO_HOLE excepted; see request validation).
  else flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  // DF needs structured replies, and the spec requires the flag to be clear without them.
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  return flags;
}
