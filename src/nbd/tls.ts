// TLS for NBD (NBD_OPT_STARTTLS): what the server needs to run the server side of a TLS
// session, and the upgrade of an accepted socket once the handshake has acknowledged
// STARTTLS. Credentials are X.509 (with or without client certificates) or pre-shared keys.

import type { Socket } from "node:net";
import tls from "node:tls";
import { assert } from "../io/assert.js";
import { TlsHandshakeError } from "./session-errors.js";

/**
 * "require" is the spec's FORCEDTLS: every option but STARTTLS and ABORT is refused with
 * NBD_REP_ERR_TLS_REQD until TLS is up. "allow" offers STARTTLS and serves plaintext clients
 * too (SELECTIVETLS with no TLS-only export).
 */
export type NbdTlsMode = "require" | "allow";

/** The oldest TLS the spec allows by default; older versions only by configuration, which we do not offer. */
export const TLS_VERSION_MIN = "TLSv1.2";

export type NbdTlsCredentials =
  | {
      kind: "x509";
      certificatePem: Buffer;
      keyPem: Buffer;
      /** When given, a client must present a certificate this CA signed. */
      clientCaPem?: Buffer;
    }
  | {
      kind: "psk";
      /** Identity (user name) → key. */
      keys: ReadonlyMap<string, Buffer>;
    };

export interface NbdTlsOptions {
  mode: NbdTlsMode;
  credentials: NbdTlsCredentials;
}

/** Built once per server from NbdTlsOptions; every connection's TLS session is made from it. */
export interface NbdTls {
  readonly mode: NbdTlsMode;
  /** Runs the server side of a TLS handshake over `socket`; resolves once it succeeded. */
  upgrade(socket: Socket, timeoutMs: number): Promise<tls.TLSSocket>;
}

/**
 * TLS 1.2 PSK suites with forward secrecy first. TLS 1.3 needs none of these: OpenSSL uses
 * the PSK callback with its own TLS 1.3 suites.
 */
const PSK_CIPHERS_TLS12 =
  "ECDHE-PSK-AES256-CBC-SHA384:ECDHE-PSK-AES128-CBC-SHA256:DHE-PSK-AES256-GCM-SHA384:DHE-PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256";

export function nbdTls(options: NbdTlsOptions): NbdTls {
  const { credentials } = options;
  let socketOptions: tls.TLSSocketOptions;
  if (credentials.kind === "x509") {
    const requireClientCertificate = credentials.clientCaPem !== undefined;
    socketOptions = {
      isServer: true,
      secureContext: tls.createSecureContext({
        cert: credentials.certificatePem,
        key: credentials.keyPem,
        ca: credentials.clientCaPem,
        minVersion: TLS_VERSION_MIN,
      }),
      requestCert: requireClientCertificate,
      rejectUnauthorized: requireClientCertificate,
    };
  } else {
    assert(credentials.keys.size > 0, "a PSK server has at least one key");
    const keys = credentials.keys;
    socketOptions = {
      isServer: true,
      secureContext: tls.createSecureContext({ minVersion: TLS_VERSION_MIN, ciphers: `${tls.DEFAULT_CIPHERS}:${PSK_CIPHERS_TLS12}` }),
      // An unknown identity gets no key, which fails the handshake.
      pskCallback: (_socket: tls.TLSSocket, identity: string) => keys.get(identity) ?? null,
    } as tls.TLSSocketOptions;
  }
  return { mode: options.mode, upgrade: (socket, timeoutMs) => upgradeSocket(socket, socketOptions, timeoutMs) };
}

function upgradeSocket(socket: Socket, options: tls.TLSSocketOptions, timeoutMs: number): Promise<tls.TLSSocket> {
  const secure = new tls.TLSSocket(socket, options);
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (failure: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      secure.off("close", onClose);
      secure.off("error", onError);
      if (failure === null) {
        resolve(secure);
        return;
      }
      // Errors while it is torn down must not reach the process as unhandled.
      secure.on("error", () => {});
      secure.destroy();
      reject(new TlsHandshakeError(`TLS handshake failed: ${failure}`));
    };
    const onError = (error: Error): void => settle(error.message);
    const onClose = (): void => settle("the client closed the connection");
    const timer = setTimeout(() => settle(`not finished within ${timeoutMs} ms`), timeoutMs);
    secure.on("error", onError);
    secure.once("close", onClose);
    secure.once("secure", () => {
      // A bare TLSSocket (unlike tls.Server's) neither refuses an unverified client
      // certificate nor sets `authorized`; its handle's verifyError() is where the verdict is.
      const verifyError = options.rejectUnauthorized ? peerVerifyError(secure) : null;
      settle(verifyError ? `client certificate refused: ${verifyError.message}` : null);
    });
  });
}

function peerVerifyError(secure: tls.TLSSocket): Error | null {
  const handle = (secure as unknown as { ssl?: { verifyError(): Error | null } | null }).ssl;
  assert(handle !== undefined && handle !== null, "a TLS socket that just finished its handshake has its handle");
  return handle.verifyError();
}
