// The ways a path given to import or export can name the wrong kind of thing. Each is
// refused before the pool is touched, saying what it is and what to give instead.

import { ThinpError, type ErrorCode } from "../src/errors.js";

/** What a command does with the file it is given, for messages: "read" or "write". */
export type TransferVerb = "read" | "write";

/** A directory where a file was wanted: `thinp export vol out/` or `thinp import vol .`. */
export class DirectoryGivenError extends ThinpError {
  // Not one of the usage errors (a number or name mistyped): the same status as other refused files.
  readonly code: ErrorCode = "IO_ERROR";
  constructor(
    readonly path: string,
    verb: TransferVerb,
  ) {
    super(`${path} is a directory; name a file to ${verb}`);
  }
}

/** A socket, or anything else that is neither a file, a device nor a pipe. */
export class UnusableFileError extends ThinpError {
  readonly code: ErrorCode = "IO_ERROR";
  constructor(
    readonly path: string,
    kind: string,
    verb: TransferVerb,
  ) {
    super(`${path} is ${kind}; name a file, a block device or - (${verb === "read" ? "stdin" : "stdout"}) to ${verb}`);
  }
}

/** Raw image bytes to or from a terminal: a mistake, and unreadable or unwritable by anyone. */
export class TerminalGivenError extends ThinpError {
  readonly code: ErrorCode = "IO_ERROR";
  constructor(stream: "stdin" | "stdout") {
    super(
      stream === "stdin"
        ? "stdin is a terminal; pipe the image in (thinp import NAME - < FILE) or name the file"
        : "stdout is a terminal; redirect it to a file or a pipe (thinp export NAME - > FILE) or name the file",
    );
  }
}
