// What the server must answer to a request, written from formats/nbd-protocol.md ("Errors")
// rather than from the server's code, so the fuzzer checks the server against the document.

import { REQUEST_BYTES_MAX } from "../../src/nbd/limits.js";
import * as P from "../../src/nbd/protocol.js";
import type { ExportFacts } from "./fuzz-target.js";
import type { RequestSpec } from "./wire-encoding.js";

/** What a client knows after the handshake. */
export interface Session {
  facts: ExportFacts;
  structured: boolean;
  /** The id the server gave base:allocation, or null when it is not selected. */
  contextId: number | null;
  transmissionFlags: number;
}

export const KNOWN_COMMANDS = [
  P.NBD_CMD_READ,
  P.NBD_CMD_WRITE,
  P.NBD_CMD_FLUSH,
  P.NBD_CMD_TRIM,
  P.NBD_CMD_CACHE,
  P.NBD_CMD_WRITE_ZEROES,
  P.NBD_CMD_BLOCK_STATUS,
] as const;

/** The transmission flags the document promises for an export. */
export function expectedTransmissionFlags(readOnly: boolean, structured: boolean): number {
  let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_CACHE | P.NBD_FLAG_CAN_MULTI_CONN;
  flags |= readOnly ? P.NBD_FLAG_READ_ONLY : P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_FAST_ZERO;
  if (structured) flags |= P.NBD_FLAG_SEND_DF;
  return flags;
}

/** Command flags valid for a command given what was advertised. */
export function validCommandFlags(command: number, advertised: number): number {
  const fua = advertised & P.NBD_FLAG_SEND_FUA ? P.NBD_CMD_FLAG_FUA : 0;
  switch (command) {
    case P.NBD_CMD_READ:
      return fua | (advertised & P.NBD_FLAG_SEND_DF ? P.NBD_CMD_FLAG_DF : 0);
    case P.NBD_CMD_WRITE_ZEROES:
      return fua | P.NBD_CMD_FLAG_NO_HOLE | (advertised & P.NBD_FLAG_SEND_FAST_ZERO ? P.NBD_CMD_FLAG_FAST_ZERO : 0);
    case P.NBD_CMD_BLOCK_STATUS:
      return fua | P.NBD_CMD_FLAG_REQ_ONE;
    default:
      return fua;
  }
}

export function changesContents(command: number): boolean {
  return command === P.NBD_CMD_WRITE || command === P.NBD_CMD_TRIM || command === P.NBD_CMD_WRITE_ZEROES;
}

const TWO_POW_53 = 2n ** 53n;

/** The errno the document requires (0: the request must be served), in the document's order of checks. */
export function expectedErrno(session: Session, request: RequestSpec): number {
  const { command, flags, offset, byteLength } = request;
  if (!(KNOWN_COMMANDS as readonly number[]).includes(command)) return P.NBD_EINVAL;
  if ((flags & ~validCommandFlags(command, session.transmissionFlags)) !== 0) return P.NBD_EINVAL;
  if (changesContents(command) && session.facts.readOnly) return P.NBD_EPERM;
  if (command === P.NBD_CMD_BLOCK_STATUS && session.contextId === null) return P.NBD_EINVAL;
  if (command === P.NBD_CMD_FLUSH) return offset === 0n && byteLength === 0 ? 0 : P.NBD_EINVAL;
  const carriesData = command === P.NBD_CMD_READ || command === P.NBD_CMD_WRITE || command === P.NBD_CMD_CACHE;
  if (carriesData && byteLength > REQUEST_BYTES_MAX) return P.NBD_EINVAL;
  if (offset >= TWO_POW_53 || offset + BigInt(byteLength) > BigInt(session.facts.sizeBytes)) {
    return command === P.NBD_CMD_WRITE || command === P.NBD_CMD_WRITE_ZEROES ? P.NBD_ENOSPC : P.NBD_EINVAL;
  }
  if (command === P.NBD_CMD_BLOCK_STATUS && byteLength === 0) return P.NBD_EINVAL;
  const fastNoHole = P.NBD_CMD_FLAG_FAST_ZERO | P.NBD_CMD_FLAG_NO_HOLE;
  if (command === P.NBD_CMD_WRITE_ZEROES && (flags & fastNoHole) === fastNoHole) return P.NBD_ENOTSUP;
  return 0;
}

/** Commands that reach the engine (zero-length ones are answered without it). */
function reachesEngine(request: RequestSpec): boolean {
  const { command, byteLength } = request;
  return byteLength > 0 && (changesContents(command) || command === P.NBD_CMD_READ || command === P.NBD_CMD_BLOCK_STATUS);
}

/** Errors the engine itself may add to a request the rules admit. */
export function engineMayFail(session: Session, request: RequestSpec, errno: number): boolean {
  if (!reachesEngine(request)) return false;
  if (session.facts.flaky) return errno === P.NBD_EIO || errno === P.NBD_ENOSPC;
  return errno === P.NBD_ENOSPC && session.facts.mayRunOutOfSpace && changesContents(request.command);
}
