// The one table from an engine error's `code` to the NBD error value a client sees.

import { AssertionError } from "../io/assert.js";
import { ThinpError, type ErrorCode } from "../errors.js";
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM, NBD_ESHUTDOWN, type NbdErrno } from "./protocol.js";

const ERRNO_BY_CODE: Partial<Record<ErrorCode, NbdErrno>> = {
  POOL_FULL: NBD_ENOSPC,
  METADATA_FULL: NBD_ENOSPC,
  OUT_OF_RANGE: NBD_EINVAL,
  // A served export is never deleted under its clients; what can vanish is the base of a
  // qemu:dirty-bitmap: context, and then the request names something that is no longer there.
  NO_SUCH_VOLUME: NBD_EINVAL,
  READ_ONLY: NBD_EPERM,
  CORRUPT: NBD_EIO,
  IO_ERROR: NBD_EIO,
  INVALID_ARGUMENT: NBD_EINVAL,
  STREAM_CORRUPT: NBD_EIO,
  BASE_MISMATCH: NBD_EINVAL,
};

/**
 * The NBD error for an engine failure. Operating errors map by code, anything unlisted to EIO
 * (the client can only retry or give up, and EIO says exactly that). A failed assertion is a
 * bug in thinp, not something to report to a client: it is rethrown so the process stops
 * before it can write anything else.
 */
export function errnoForEngineError(error: unknown): NbdErrno {
  if (error instanceof AssertionError) throw error;
  if (error instanceof ThinpError) return ERRNO_BY_CODE[error.code] ?? NBD_EIO;
  return NBD_EIO;
}

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map([
  [NBD_EPERM, "EPERM"],
  [NBD_EIO, "EIO"],
  [NBD_EINVAL, "EINVAL"],
  [NBD_ENOSPC, "ENOSPC"],
  [NBD_ENOTSUP, "ENOTSUP"],
  [NBD_ESHUTDOWN, "ESHUTDOWN"],
]);

/** The symbolic name of an NBD errno, as logs and metrics show it. */
export function nbdErrnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}
