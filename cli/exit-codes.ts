// The one place an operating error becomes a process exit status. Scripts may
// rely on these numbers, so a code keeps its number once released.

import type { ErrorCode } from "../src/errors.js";

export const EXIT_OK = 0;
/** Failures without a class of their own: I/O errors, read-only targets, busy volumes. */
export const EXIT_OTHER = 1;
/** The command line was wrong: unknown option, bad size, bad name, a size the volume cannot take. */
export const EXIT_USAGE = 2;
export const EXIT_NO_SUCH_VOLUME = 3;
export const EXIT_EXISTS = 4;
export const EXIT_NO_SPACE = 5;
/** The metadata failed verification, or the file is not a pool at all. */
export const EXIT_CORRUPT = 6;
export const EXIT_LOCKED = 7;
export const EXIT_FILE_MISSING = 8;
/** A send stream failed verification (cut, damaged), or its base is not here as it was sent from. */
export const EXIT_STREAM = 9;
/** A bug in thinp (an assertion or an error it did not expect): sysexits' EX_SOFTWARE. */
export const EXIT_INTERNAL = 70;

// A Record over ErrorCode so that adding a code to src/errors.ts fails the
// build until it is given an exit status here.
const EXIT_CODE_BY_ERROR: Readonly<Record<ErrorCode, number>> = {
  INVALID_NAME: EXIT_USAGE,
  INVALID_SIZE: EXIT_USAGE,
  SHRINK_BELOW_MAPPED: EXIT_USAGE,
  LIMIT_EXCEEDED: EXIT_USAGE,
  OUT_OF_RANGE: EXIT_USAGE,
  NO_SUCH_VOLUME: EXIT_NO_SUCH_VOLUME,
  VOLUME_EXISTS: EXIT_EXISTS,
  FILE_EXISTS: EXIT_EXISTS,
  POOL_FULL: EXIT_NO_SPACE,
  METADATA_FULL: EXIT_NO_SPACE,
  CORRUPT: EXIT_CORRUPT,
  NOT_A_POOL: EXIT_CORRUPT,
  POOL_LOCKED: EXIT_LOCKED,
  FILE_MISSING: EXIT_FILE_MISSING,
  READ_ONLY: EXIT_OTHER,
  VOLUME_BUSY: EXIT_OTHER,
  IO_ERROR: EXIT_OTHER,
  SERVER_UNREACHABLE: EXIT_OTHER,
  INVALID_ARGUMENT: EXIT_USAGE,
  STREAM_CORRUPT: EXIT_STREAM,
  BASE_MISMATCH: EXIT_STREAM,
};

export function exitCodeFor(code: ErrorCode): number {
  return EXIT_CODE_BY_ERROR[code];
}
