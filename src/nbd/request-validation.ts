// Checks a request against the export and what was negotiated, before the engine sees it.
// The engine only ever receives in-range requests with flags it understands.

import type { NegotiatedExport } from "./handshake.js";
import { REQUEST_BYTES_MAX } from "./limits.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  type NbdErrno,
} from "./protocol.js";
import type { RequestHeader } from "./transmission-messages.js";

export type Validation = { ok: true } | { ok: false; errno: NbdErrno; message: string };

const COMMAND_NAMES: ReadonlyMap<number, string> = new Map([
  [NBD_CMD_READ, "READ"],
  [NBD_CMD_WRITE, "WRITE"],
  [NBD_CMD_FLUSH, "FLUSH"],
  [NBD_CMD_TRIM, "TRIM"],
  [NBD_CMD_CACHE, "CACHE"],
  [NBD_CMD_WRITE_ZEROES, "WRITE_ZEROES"],
  [NBD_CMD_BLOCK_STATUS, "BLOCK_STATUS"],
]);

export function commandName(command: number): string {
  return COMMAND_NAMES.get(command) ?? `command ${command}`;
}

/** Command flags a command may carry, given the transmission flags we advertised. */
function allowedFlags(command: number, advertised: number): number {
  // FUA is valid on every command once advertised; on commands that write nothing it is ignored.
  const fua = advertised & NBD_FLAG_SEND_FUA ? NBD_CMD_FLAG_FUA : 0;
  switch (command) {
    case NBD_CMD_READ:
      return fua | (advertised & NBD_FLAG_SEND_DF ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
      return fua | NBD_CMD_FLAG_NO_HOLE | (advertised & NBD_FLAG_SEND_FAST_ZERO ? NBD_CMD_FLAG_FAST_ZERO : 0);
    case NBD_CMD_BLOCK_STATUS:
      return fua | NBD_CMD_FLAG_REQ_ONE;
    default:
      return fua;
  }
}

function isWrite(command: number): boolean {
  return command === NBD_CMD_WRITE || command === NBD_CMD_TRIM || command === NBD_CMD_WRITE_ZEROES;
}

function refuse(errno: NbdErrno, message: string): Validation {
  return { ok: false, errno, message };
}

/**
 * Whether to serve a request (NBD_CMD_DISC never reaches here). Checked in this order:
 * unknown command, flags not valid for the command (EINVAL); a write to a read-only export
 * (EPERM); a command we did not advertise (EINVAL); reserved fields, length limits and the
 * export's end (EINVAL, or ENOSPC for writes); FAST_ZERO that cannot be fast (ENOTSUP).
 */
export function validateRequest(request: RequestHeader, session: NegotiatedExport): Validation {
  const { command, commandFlags, offset, byteLength } = request;
  const name = commandName(command);
  if (!COMMAND_NAMES.has(command)) return refuse(NBD_EINVAL, `unknown command ${command}`);
  const invalidFlags = commandFlags & ~allowedFlags(command, session.transmissionFlags);
  if (invalidFlags !== 0) return refuse(NBD_EINVAL, `flags 0x${invalidFlags.toString(16)} are not valid for ${name}`);
  if (isWrite(command) && session.readOnly) return refuse(NBD_EPERM, `export '${session.exportName}' is read-only`);
  if (command === NBD_CMD_TRIM && !(session.transmissionFlags & NBD_FLAG_SEND_TRIM)) {
    return refuse(NBD_EINVAL, "TRIM was not advertised");
  }
  if (command === NBD_CMD_WRITE_ZEROES && !(session.transmissionFlags & NBD_FLAG_SEND_WRITE_ZEROES)) {
    return refuse(NBD_EINVAL, "WRITE_ZEROES was not advertised");
  }
  if (command === NBD_CMD_BLOCK_STATUS && session.contexts.length === 0) {
    return refuse(NBD_EINVAL, "BLOCK_STATUS needs a metadata context selected for this export");
  }
  if (command === NBD_CMD_FLUSH) {
    return offset === 0 && byteLength === 0 ? { ok: true } : refuse(NBD_EINVAL, "FLUSH offset and length must be zero");
  }
  const payloadCommand = command === NBD_CMD_READ || command === NBD_CMD_WRITE || command === NBD_CMD_CACHE;
  if (payloadCommand && byteLength > REQUEST_BYTES_MAX) {
    return refuse(NBD_EINVAL, `${name} of ${byteLength} bytes exceeds the maximum of ${REQUEST_BYTES_MAX}`);
  }
  // offset is NaN when it did not fit 2^53; such an offset lies past the end of any export.
  if (!Number.isSafeInteger(offset) || offset + byteLength > session.exportBytes) {
    const errno = command === NBD_CMD_WRITE || command === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    return refuse(
      errno,
      `${name} of ${byteLength} bytes at offset ${request.offset} passes the end of the export (${session.exportBytes} bytes)`,
    );
  }
  if (command === NBD_CMD_BLOCK_STATUS && byteLength === 0) {
    // Every descriptor must be nonzero and, with REQ_ONE, no longer than the request.
    return refuse(NBD_EINVAL, "BLOCK_STATUS of zero bytes");
  }
  if (command === NBD_CMD_WRITE_ZEROES && commandFlags & NBD_CMD_FLAG_FAST_ZERO && commandFlags & NBD_CMD_FLAG_NO_HOLE) {
    // Keeping blocks allocated means writing them, which is no faster than a WRITE.
    return refuse(NBD_ENOTSUP, "WRITE_ZEROES with NO_HOLE cannot be fast");
  }
  return { ok: true };
}
