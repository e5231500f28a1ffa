// Why a connection stops before its client asked it to. These never leave src/nbd: the
// connection logs them and closes that one socket; the server and other clients carry on.

/** The client closed or reset the connection, possibly in the middle of a message. */
export class PeerClosedError extends Error {
  override name = "PeerClosedError";
}

/** The client broke a rule of the protocol badly enough that we cannot stay in sync with it. */
export class ProtocolViolationError extends Error {
  override name = "ProtocolViolationError";
}

/** We stopped reading from this client (server shutdown or handshake timeout). */
export class ReadingStoppedError extends Error {
  override name = "ReadingStoppedError";
}

/** The TLS handshake after NBD_OPT_STARTTLS failed: bad credentials, an untrusted certificate, a client that went silent. */
export class TlsHandshakeError extends Error {
  override name = "TlsHandshakeError";
}

/** True for the errors that end one connection without being a bug. */
export function isSessionEnding(
  error: unknown,
): error is PeerClosedError | ProtocolViolationError | ReadingStoppedError | TlsHandshakeError {
  return (
    error instanceof PeerClosedError ||
    error instanceof ProtocolViolationError ||
    error instanceof ReadingStoppedError ||
    error instanceof TlsHandshakeError
  );
}
