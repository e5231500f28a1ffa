// Every limit the NBD server enforces, by name, with units last. The defaults are what
// `thinp serve` uses; tests pass smaller ones through `NbdServerOptions.limits`. How they
// relate, to each other and to the pool's limits, is asserted at the bottom when the module
// loads.

import { assert } from "../io/assert.js";
import { DATA_BLOCK_BYTES, NAME_BYTES_MAX as VOLUME_NAME_BYTES_MAX, VOLUMES_MAX } from "../thin/limits.js";
import { BLOCK_STATUS_DESCRIPTOR_BYTES, LENGTH_FIELD_MAX, REQUEST_HEADER_BYTES, STRUCTURED_REPLY_HEADER_BYTES } from "./protocol.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The protocol's limit on any string: export names, descriptions, queries, error messages. */
export const NAME_BYTES_MAX = 4096;

/**
 * The maximum block size we advertise: 32 MiB is the size the spec says no client should
 * exceed and no server should treat as an attack, and the largest request the kernel
 * client sends.
 */
export const BLOCK_SIZE_MAX_BYTES = 32 * MiB;
/**
 * Largest READ, WRITE or CACHE length accepted. Clients that never negotiate block sizes
 * (NBD_OPT_EXPORT_NAME) may send more than the advertised maximum; 64 MiB, as nbdkit takes.
 * TRIM, WRITE_ZEROES and BLOCK_STATUS carry no payload, so they may use the whole 32-bit
 * length field.
 */
export const REQUEST_BYTES_MAX = 64 * MiB;

/** Block sizes advertised in NBD_INFO_BLOCK_SIZE. Minimum 1: the engine handles any alignment. */
export const BLOCK_SIZE_MIN_BYTES = 1;
/** A pool data block (64 KiB): aligned requests of this size avoid read-modify-write in the engine. */
export const BLOCK_SIZE_PREFERRED_BYTES = DATA_BLOCK_BYTES;

/** Largest option payload. Fits SET_META_CONTEXT with a maximum-length name and several queries. */
export const OPTION_BYTES_MAX = 64 * KiB;

/** Longest human-readable error message we send; the protocol's string limit. */
export const MESSAGE_BYTES_MAX = NAME_BYTES_MAX;

/** Largest range one BLOCK_STATUS asks the engine about; the client asks again for the rest. */
export const BLOCK_STATUS_SCAN_BYTES_MAX = 1 * GiB;
/**
 * Most descriptors in one BLOCK_STATUS reply (8 bytes each), shared by its chunks: with
 * several contexts selected, each gets an equal part.
 */
export const BLOCK_STATUS_EXTENTS_MAX = 2048;
/**
 * Most metadata contexts one SET_META_CONTEXT selects; more is NBD_REP_ERR_TOO_BIG. Each
 * dirty bitmap costs a diff per BLOCK_STATUS. Backup tools select base:allocation and one bitmap.
 */
export const META_CONTEXTS_SELECTED_MAX = 8;
/**
 * Most qemu:dirty-bitmap: contexts one LIST_META_CONTEXT wildcard lists by name; past it the
 * wildcard `qemu:dirty-bitmap:` is listed instead (the spec allows that), so the answer for
 * an export in a pool of many volumes stays small. A named query is always answered.
 */
export const LISTED_DIRTY_BITMAPS_MAX = 256;

// Per-server limits. These are the defaults; NbdLimits lets a caller (or a test) change them.

/**
 * Options one client may send before entering transmission; more is treated as abuse.
 * nbdinfo --list sends two options per export on one connection, so a pool's largest
 * listing must fit; the handshake timeout is what bounds a client that abuses this.
 */
export const OPTIONS_PER_HANDSHAKE_MAX = 2 * VOLUMES_MAX + 64;
/** Time from accept to the end of option haggling. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Simultaneous client connections; more are refused by closing them at once. */
export const CONNECTIONS_MAX = 128;
/** Requests of one connection being served at once; reading pauses at this count. nbdcopy keeps 64 in flight, qemu 16. */
export const INFLIGHT_REQUESTS_MAX = 64;
/**
 * Payload and reply bytes of one connection's requests in flight: two requests of the
 * advertised maximum, or one of the largest accepted, so none ever waits for itself.
 */
export const INFLIGHT_BYTES_MAX = 2 * BLOCK_SIZE_MAX_BYTES;
/**
 * Payload and reply bytes of the requests in flight on all connections of one server
 * together (a WRITE's payload from just before it is read off the socket, a READ's data from
 * dispatch, each until its reply has been handed to the kernel). A connection whose next
 * READ or WRITE does not fit stops reading its socket, so TCP stops its client, until bytes
 * come back; connections are admitted first come, first served (see byte-budget.ts).
 * 256 MiB: four connections at INFLIGHT_BYTES_MAX, or eight 32 MiB requests in the engine
 * at once, which keeps a disk busy; and it holds all CONNECTIONS_MAX × INFLIGHT_REQUESTS_MAX
 * requests at 32 KiB each, so workloads of small requests never wait for it.
 */
export const SERVER_INFLIGHT_BYTES_MAX = 256 * MiB;
/** Reply bytes queued on one socket beyond which reading pauses until the socket drains. */
export const REPLY_BUFFER_BYTES_MAX = 4 * MiB;
/** How long close() waits for in-flight requests before dropping connections. */
export const DRAIN_TIMEOUT_MS = 30_000;

export interface NbdLimits {
  optionsPerHandshakeMax: number;
  handshakeTimeoutMs: number;
  connectionsMax: number;
  inflightRequestsMax: number;
  inflightBytesMax: number;
  serverInflightBytesMax: number;
  replyBufferBytesMax: number;
  drainTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<NbdLimits> = Object.freeze({
  optionsPerHandshakeMax: OPTIONS_PER_HANDSHAKE_MAX,
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  connectionsMax: CONNECTIONS_MAX,
  inflightRequestsMax: INFLIGHT_REQUESTS_MAX,
  inflightBytesMax: INFLIGHT_BYTES_MAX,
  serverInflightBytesMax: SERVER_INFLIGHT_BYTES_MAX,
  replyBufferBytesMax: REPLY_BUFFER_BYTES_MAX,
  drainTimeoutMs: DRAIN_TIMEOUT_MS,
});

/** Bytes a connection buffers ahead of the message it is reading before pausing the socket. */
export const READ_AHEAD_BYTES_MAX = 256 * KiB;

/**
 * WRITE payloads of at least this many bytes are freed as soon as the engine has written
 * them (payload-memory.ts); smaller ones are left to the garbage collector, for which they
 * are cheap, since a transfer would cost more than it saves.
 */
export const FREED_PAYLOAD_BYTES_MIN = 1 * MiB;

/** How long a closing connection waits for the client to hang up before dropping it. */
export const SOCKET_CLOSE_TIMEOUT_MS = 5_000;

/** The most Node reads from a socket at once (libuv's read buffer): the read that crosses READ_AHEAD_BYTES_MAX. */
export const SOCKET_READ_CHUNK_BYTES_MAX = 64 * KiB;
/**
 * The largest reply that is not charged to the in-flight budgets: a BLOCK_STATUS of the most
 * contexts and descriptors. (An error chunk with the longest message is smaller; asserted below.)
 */
export const UNCHARGED_REPLY_BYTES_MAX =
  META_CONTEXTS_SELECTED_MAX * (STRUCTURED_REPLY_HEADER_BYTES + 4) + BLOCK_STATUS_EXTENTS_MAX * BLOCK_STATUS_DESCRIPTOR_BYTES;

/**
 * Bytes one connection may hold beyond its share of the server's in-flight budget, whatever
 * its client does: what it has read ahead, and the socket read that crossed that; the option
 * it is reading in the handshake; unsent replies up to the reply buffer limit, and the
 * uncharged replies of the requests in flight that land after reading paused.
 */
export function connectionBufferBytesMax(limits: Pick<NbdLimits, "inflightRequestsMax" | "replyBufferBytesMax">): number {
  return (
    READ_AHEAD_BYTES_MAX +
    SOCKET_READ_CHUNK_BYTES_MAX +
    OPTION_BYTES_MAX +
    limits.replyBufferBytesMax +
    limits.inflightRequestsMax * UNCHARGED_REPLY_BYTES_MAX
  );
}

/** Memory one server holds in I/O buffers in the worst case: the shared budget, plus every connection's own buffers. */
export function serverBufferBytesMax(limits: NbdLimits): number {
  return limits.serverInflightBytesMax + limits.connectionsMax * connectionBufferBytesMax(limits);
}

/**
 * The documented ceiling on one server's I/O buffers with the default limits, whatever its
 * clients do (945.5 MiB by serverBufferBytesMax; most of it is reply buffers of clients that
 * stop reading their replies).
 */
export const SERVER_BUFFER_BYTES_MAX = 1 * GiB;

// Every volume name is a valid export name.
assert(VOLUME_NAME_BYTES_MAX <= NAME_BYTES_MAX, "volume names fit export names");
assert(MESSAGE_BYTES_MAX <= NAME_BYTES_MAX, "error messages are protocol strings");
// The block sizes we advertise obey the spec: powers of two, min <= preferred <= max, and
// the maximum a multiple of the minimum.
const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
assert(isPowerOfTwo(BLOCK_SIZE_MIN_BYTES) && isPowerOfTwo(BLOCK_SIZE_PREFERRED_BYTES), "block sizes are powers of two");
assert(BLOCK_SIZE_MIN_BYTES <= BLOCK_SIZE_PREFERRED_BYTES && BLOCK_SIZE_PREFERRED_BYTES <= BLOCK_SIZE_MAX_BYTES, "block sizes ordered");
assert(
  BLOCK_SIZE_MAX_BYTES % BLOCK_SIZE_MIN_BYTES === 0 && BLOCK_SIZE_MAX_BYTES % BLOCK_SIZE_PREFERRED_BYTES === 0,
  "maximum block size whole blocks",
);
// What is accepted is at least what is advertised.
assert(BLOCK_SIZE_MAX_BYTES <= REQUEST_BYTES_MAX, "the advertised maximum is accepted");
assert(REQUEST_BYTES_MAX <= LENGTH_FIELD_MAX, "request length fits its field");
// One request of the largest size is always admitted once its own connection, and then
// the whole server, has nothing else in flight: no request waits for bytes it could never get.
assert(INFLIGHT_BYTES_MAX >= REQUEST_BYTES_MAX, "a maximum-size request fits in flight");
assert(SERVER_INFLIGHT_BYTES_MAX >= REQUEST_BYTES_MAX, "a maximum-size request fits the server's budget");
// One connection alone can use all it is allowed; a budget below that would make the
// per-connection limit a fiction.
assert(SERVER_INFLIGHT_BYTES_MAX >= INFLIGHT_BYTES_MAX, "one connection's limit fits the server's budget");
// Small requests never wait for the budget: every connection's every request fits at 32 KiB.
assert(SERVER_INFLIGHT_BYTES_MAX >= CONNECTIONS_MAX * INFLIGHT_REQUESTS_MAX * 32 * KiB, "small requests never wait for the budget");
// The budget binds before the connections' own limits add up; otherwise it would bound nothing.
assert(SERVER_INFLIGHT_BYTES_MAX < CONNECTIONS_MAX * INFLIGHT_BYTES_MAX, "the server's budget binds before the connections' limits");
// The replies left out of the budgets are small: the largest is a full BLOCK_STATUS, larger
// than an error chunk with the longest message.
assert(
  UNCHARGED_REPLY_BYTES_MAX >= STRUCTURED_REPLY_HEADER_BYTES + 6 + MESSAGE_BYTES_MAX,
  "an error chunk is not the largest uncharged reply",
);
assert(UNCHARGED_REPLY_BYTES_MAX <= REPLY_BUFFER_BYTES_MAX, "an uncharged reply fits the reply buffer");
// The worst case the documents state holds with the defaults.
assert(serverBufferBytesMax(DEFAULT_LIMITS) <= SERVER_BUFFER_BYTES_MAX, "a server's I/O buffers stay under the documented ceiling");
// SET_META_CONTEXT with a maximum-length export name and a maximum-length query fits.
assert(OPTION_BYTES_MAX >= 4 + NAME_BYTES_MAX + 4 + 4 + NAME_BYTES_MAX, "meta-context option fits");
// nbdinfo --list: two options per export of the largest pool.
assert(OPTIONS_PER_HANDSHAKE_MAX >= 2 * VOLUMES_MAX, "a whole pool can be listed");
// A BLOCK_STATUS reply of the most descriptors is one message the reply buffer holds, and
// its scan is whole data blocks whose length fits a descriptor.
assert(UNCHARGED_REPLY_BYTES_MAX <= REPLY_BUFFER_BYTES_MAX, "block status reply fits the reply buffer");
// Every selected context gets at least one descriptor of a reply's share.
assert(BLOCK_STATUS_EXTENTS_MAX >= META_CONTEXTS_SELECTED_MAX, "each context has a descriptor");
// A listing of every bitmap by name fits the reply buffer, with the longest volume names.
assert(
  (LISTED_DIRTY_BITMAPS_MAX + 1) * (20 + 4 + 18 + VOLUME_NAME_BYTES_MAX) <= REPLY_BUFFER_BYTES_MAX,
  "a listing of the bitmaps fits the reply buffer",
);
assert(BLOCK_STATUS_SCAN_BYTES_MAX % DATA_BLOCK_BYTES === 0 && BLOCK_STATUS_SCAN_BYTES_MAX <= LENGTH_FIELD_MAX, "block status scan");
// A payload large enough to be freed is never taken whole from the read-ahead (at most
// READ_AHEAD_BYTES_MAX and one socket read), so it always has a buffer of its own.
assert(FREED_PAYLOAD_BYTES_MIN > READ_AHEAD_BYTES_MAX + SOCKET_READ_CHUNK_BYTES_MAX, "freed payloads are never views of socket reads");
// Reading ahead always takes in a whole request header.
assert(READ_AHEAD_BYTES_MAX >= REQUEST_HEADER_BYTES, "read-ahead holds a request header");
