// Every limit the NBD server enforces, by name, with units last. The defaults are what
// `thinp serve` uses; tests pass smaller ones through `NbdServerOptions.limits`.

import { VOLUMES_MAX } from "../thin/limits.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The protocol's limit on any string: export names, descriptions, queries, error messages. */
export const NAME_BYTES_MAX = 4096;

/**
 * Largest READ, WRITE or CACHE length, and the maximum block size we advertise. 32 MiB is the
 * size the spec says no client should exceed and no server should treat as an attack, and
 * the largest request the kernel client sends.
 */
export const REQUEST_BYTES_MAX = 32 * MiB;

/**
 * Largest TRIM, WRITE_ZEROES or BLOCK_STATUS length: the whole 32-bit length field. These
 * carry no payload, so their length costs us nothing to receive.
 */
export const RANGE_BYTES_MAX = 0xffff_ffff;

/** Block sizes advertised in NBD_INFO_BLOCK_SIZE. Minimum 1: the engine handles any alignment. */
export const BLOCK_SIZE_MIN_BYTES = 1;
/** A pool data block: aligned requests of this size avoid read-modify-write in the engine. */
export const BLOCK_SIZE_PREFERRED_BYTES = 64 * KiB;

/** Largest option payload. Fits SET_META_CONTEXT with a maximum-length name and several queries. */
export const OPTION_BYTES_MAX = 64 * KiB;

/** Longest human-readable error message we send; the protocol's string limit. */
export const MESSAGE_BYTES_MAX = NAME_BYTES_MAX;

/** Largest range one BLOCK_STATUS asks the engine about; the client asks again for the rest. */
export const BLOCK_STATUS_SCAN_BYTES_MAX = 1 * GiB;
/** Most descriptors in one BLOCK_STATUS reply (8 bytes each). */
export const BLOCK_STATUS_EXTENTS_MAX = 2048;

export interface NbdLimits {
  /** Options one client may send before entering transmission; more is treated as abuse. */
  optionsPerHandshakeMax: number;
  /** Time from accept to the end of option haggling. */
  handshakeTimeoutMs: number;
  /** Simultaneous client connections; more are refused by closing them at once. */
  connectionsMax: number;
  /** Requests of one connection being served at once; reading pauses at this count. */
  inflightRequestsMax: number;
  /** Payload and reply bytes of one connection's requests in flight; reading pauses past it. */
  inflightBytesMax: number;
  /** Reply bytes queued on one socket beyond which reading pauses until the socket drains. */
  replyBufferBytesMax: number;
  /** How long close() waits for in-flight requests before dropping connections. */
  drainTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<NbdLimits> = Object.freeze({
  // nbdinfo --list sends two options per export on one connection; a pool's largest
  // listing must fit. The handshake timeout is what bounds a client that abuses this.
  optionsPerHandshakeMax: 2 * VOLUMES_MAX + 64,
  handshakeTimeoutMs: 30_000,
  connectionsMax: 128,
  // nbdcopy keeps 64 requests in flight per connection; qemu 16.
  inflightRequestsMax: 64,
  // Two maximum-size requests, so one large request never waits for itself.
  inflightBytesMax: 2 * REQUEST_BYTES_MAX,
  replyBufferBytesMax: 4 * MiB,
  drainTimeoutMs: 30_000,
});

/** Bytes a connection buffers ahead of the message it is reading before pausing the socket. */
export const READ_AHEAD_BYTES_MAX = 256 * KiB;

/** How long a closing connection waits for the client to hang up before dropping it. */
export const SOCKET_CLOSE_TIMEOUT_MS = 5_000;
