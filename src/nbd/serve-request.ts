// Serves one validated request against the export and returns the reply to send.

import { assert } from "../io/assert.js";
import type { ExportCatalog } from "./catalog.js";
import { blockStatusReply } from "./block-status-reply.js";
import { errnoForEngineError } from "./errno.js";
import type { NegotiatedExport } from "./handshake.js";
import type { NbdLog } from "./nbd-log.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  type NbdErrno,
} from "./protocol.js";
import { simpleReadReply, structuredReadReply } from "./read-reply.js";
import { commandName } from "./request-validation.js";
import { encodeErrorChunk, encodeSimpleReply, type RequestHeader } from "./transmission-messages.js";

/** An error reply in the form the client negotiated; structured ones carry the message. */
export function errorReply(session: NegotiatedExport, cookie: bigint, errno: NbdErrno, message: string): Buffer[] {
  return session.structuredReplies ? [encodeErrorChunk(cookie, errno, message)] : [encodeSimpleReply(cookie, errno)];
}

/**
 * The reply frames for a request that passed validateRequest: at once when the engine can
 * answer without waiting (a READ of cached data, a WRITE over blocks the volume owns), else
 * later. Engine failures become error replies and the connection carries on; a failed
 * assertion propagates (it is a bug).
 */
export function serveRequest(
  request: RequestHeader,
  payload: Buffer | null,
  session: NegotiatedExport,
  catalog: ExportCatalog,
  log: NbdLog,
): Buffer[] | Promise<Buffer[]> {
  const failed = (error: unknown) => failureReply(request, session, log, error);
  try {
    const reply =
      request.command === NBD_CMD_READ
        ? readReply(request, session)
        : request.command === NBD_CMD_WRITE
          ? writeReply(request, payload, session, catalog)
          : perform(request, session, catalog);
    return reply instanceof Promise ? reply.catch(failed) : reply;
  } catch (error) {
    // Through a promise, so a failed assertion rejects as it would have from the engine.
    return Promise.resolve(error).then(failed);
  }
}

function failureReply(request: RequestHeader, session: NegotiatedExport, log: NbdLog, error: unknown): Buffer[] {
  const errno = errnoForEngineError(error);
  const message = error instanceof Error ? error.message : String(error);
  log(
    "warn",
    `${commandName(request.command)} of ${request.byteLength} bytes at ${request.offset} on '${session.exportName}' failed: ${message}`,
  );
  return errorReply(session, request.cookie, errno, message);
}

/** The reply to a WRITE: at once when the engine took it on the calling thread and no FUA waits. */
function writeReply(
  request: RequestHeader,
  payload: Buffer | null,
  session: NegotiatedExport,
  catalog: ExportCatalog,
): Buffer[] | Promise<Buffer[]> {
  const { cookie, offset, byteLength, commandFlags } = request;
  assert(payload !== null && payload.length === byteLength, "WRITE payload matches its length");
  const done = [encodeSimpleReply(cookie, 0)];
  if (byteLength === 0) return done;
  const { handle } = session;
  const writing = handle.writeSoon ? handle.writeSoon(offset, payload) : handle.write(offset, payload);
  // FUA: the reply must not go out before this command's writes are durable.
  const forceUnitAccess = (commandFlags & NBD_CMD_FLAG_FUA) !== 0;
  if (writing === undefined && !forceUnitAccess) return done;
  return (async () => {
    await writing;
    if (forceUnitAccess) await catalog.flush();
    return done;
  })();
}

function readReply(request: RequestHeader, session: NegotiatedExport): Buffer[] | Promise<Buffer[]> {
  const { handle } = session;
  const { cookie, offset, byteLength, commandFlags } = request;
  return session.structuredReplies
    ? structuredReadReply(handle, cookie, offset, byteLength, (commandFlags & NBD_CMD_FLAG_DF) !== 0)
    : simpleReadReply(handle, cookie, offset, byteLength);
}

async function perform(request: RequestHeader, session: NegotiatedExport, catalog: ExportCatalog): Promise<Buffer[]> {
  const { handle } = session;
  const { cookie, offset, byteLength, commandFlags } = request;
  const done = [encodeSimpleReply(cookie, 0)];
  // FUA: the reply must not go out before this command's writes are durable.
  const forceUnitAccess = async () => {
    if (commandFlags & NBD_CMD_FLAG_FUA) await catalog.flush();
  };
  switch (request.command) {
    case NBD_CMD_FLUSH:
      await catalog.flush();
      return done;
    case NBD_CMD_TRIM:
      if (byteLength === 0) return done;
      await handle.discard(offset, byteLength);
      await forceUnitAccess();
      return done;
    case NBD_CMD_CACHE:
      // A hint only. The engine has no cache to warm beyond what the OS already keeps.
      return done;
    case NBD_CMD_WRITE_ZEROES:
      if (byteLength === 0) return done;
      // The whole range in one call, however long: a server that zeroed only a prefix of a
      // long request and reported success is a known bug elsewhere.
      await handle.writeZeroes(offset, byteLength, (commandFlags & NBD_CMD_FLAG_NO_HOLE) !== 0);
      await forceUnitAccess();
      return done;
    case NBD_CMD_BLOCK_STATUS:
      return blockStatusReply(handle, cookie, session.contexts, offset, byteLength, (commandFlags & NBD_CMD_FLAG_REQ_ONE) !== 0);
    default:
      assert(false, `validation admitted unknown command ${request.command}`);
  }
}
