// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
// Values only; the rules for using them live next to the code that applies them.
// Integers on the wire are big-endian.

import { defineLayout } from "../io/byte-layout.js";

// --- Handshake ---------------------------------------------------------------

/** ASCII "NBDMAGIC", the first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** ASCII "IHAVEOPT": the server's newstyle magic and the prefix of every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Prefix of every fixed-newstyle option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;

export const GREETING_BYTES = 18;
export const GREETING = defineLayout("NBD greeting", GREETING_BYTES, {
  initMagic: { offset: 0, bytes: 8 },
  optsMagic: { offset: 8, bytes: 8 },
  handshakeFlags: { offset: 16, bytes: 2 },
});

export const OPTION_HEADER_BYTES = 16;
export const OPTION_HEADER = defineLayout("NBD option header", OPTION_HEADER_BYTES, {
  magic: { offset: 0, bytes: 8 },
  option: { offset: 8, bytes: 4 },
  dataByteLength: { offset: 12, bytes: 4 },
});

export const OPTION_REPLY_HEADER_BYTES = 20;
export const OPTION_REPLY_HEADER = defineLayout("NBD option reply header", OPTION_REPLY_HEADER_BYTES, {
  magic: { offset: 0, bytes: 8 },
  option: { offset: 8, bytes: 4 },
  replyType: { offset: 12, bytes: 4 },
  dataByteLength: { offset: 16, bytes: 4 },
});

// Handshake flags (server → client, 16 bits).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;

// Client flags (client → server, 32 bits).
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Option types.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// Option reply types. Errors have bit 31 set.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const NBD_REP_FLAG_ERROR = 0x8000_0000;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

// Information types inside NBD_REP_INFO.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** The 124 reserved zero bytes after an NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was agreed. */
export const EXPORT_NAME_PADDING_BYTES = 124;

// --- Transmission ------------------------------------------------------------

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const REQUEST_HEADER_BYTES = 28;
export const REQUEST_HEADER = defineLayout("NBD request header", REQUEST_HEADER_BYTES, {
  magic: { offset: 0, bytes: 4 },
  commandFlags: { offset: 4, bytes: 2 },
  command: { offset: 6, bytes: 2 },
  cookie: { offset: 8, bytes: 8 },
  offset: { offset: 16, bytes: 8 },
  byteLength: { offset: 24, bytes: 4 },
});

export const SIMPLE_REPLY_HEADER_BYTES = 16;
export const SIMPLE_REPLY_HEADER = defineLayout("NBD simple reply header", SIMPLE_REPLY_HEADER_BYTES, {
  magic: { offset: 0, bytes: 4 },
  error: { offset: 4, bytes: 4 },
  cookie: { offset: 8, bytes: 8 },
});

export const STRUCTURED_REPLY_HEADER_BYTES = 20;
export const STRUCTURED_REPLY_HEADER = defineLayout("NBD structured reply header", STRUCTURED_REPLY_HEADER_BYTES, {
  magic: { offset: 0, bytes: 4 },
  flags: { offset: 4, bytes: 2 },
  replyType: { offset: 6, bytes: 2 },
  cookie: { offset: 8, bytes: 8 },
  payloadBytes: { offset: 16, bytes: 4 },
});

/** The most a 32-bit length field can say: a request's length, a chunk's, a descriptor's. */
export const LENGTH_FIELD_MAX = 0xffff_ffff;
/** A BLOCK_STATUS descriptor: u32 length, u32 status flags. */
export const BLOCK_STATUS_DESCRIPTOR_BYTES = 8;

// Transmission flags (16 bits, sent with the export's size).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Command types.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured reply chunk flags and types.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;

// base:allocation status flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

/** The spec's one context. */
export const BASE_ALLOCATION_CONTEXT = "base:allocation";
/** Our id for it; clients treat ids as opaque, so any value would do. Bitmaps take the ids after it. */
export const BASE_ALLOCATION_CONTEXT_ID = 1;

/** QEMU's contexts of changed blocks, one per bitmap: here, one per volume an export is compared with. */
export const DIRTY_BITMAP_CONTEXT_PREFIX = "qemu:dirty-bitmap:";
/** qemu:dirty-bitmap: status flag: the extent changed (differs from the base). Clear: clean. */
export const NBD_STATE_DIRTY = 1 << 0;

// Error values for the reply's error field. The spec defines these numbers, not the host's errno.
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export type NbdErrno =
  typeof NBD_EPERM | typeof NBD_EIO | typeof NBD_EINVAL | typeof NBD_ENOSPC | typeof NBD_ENOTSUP | typeof NBD_ESHUTDOWN;
