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
 * The TLS 1.2 suites a PSK server offers, forward-secret ones first. Alone, not added to
 * tls.DEFAULT_CIPHERS: that list ends in !PSK, which would strike them again. TLS 1.3 keeps
 * OpenSSL's default suites, which take the key through the same callback.
 */
const PSK_CIPHERS_TLS12 =
  "ECDHE-PSK-AES256-CBC-SHA384:ECDHE-PSK-AES128-CBC-SHA256:DHE-PSK-AES256-GCM-SHA384:DHE-PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256";

/** Secure contexts are built here, once per server: every TLSSocket made from one shares the parsed certificates and keys. */
export function nbdTls(options: NbdTlsOptions): NbdTls {
  const { mode, credentials } = options;
  return credentials.kind === "x509" ? x509Tls(mode, credentials) : pskTls(mode, credentials.keys);
}

function x509Tls(mode: NbdTlsMode, credentials: Extract<NbdTlsCredentials, { kind: "x509" }>): NbdTls {
  const requireClientCertificate = credentials.clientCaPem !== undefined;
  const socketOptions: tls.TLSSocketOptions = {
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
  return { mode, upgrade: (socket, timeoutMs) => upgradeSocket(socket, socketOptions, timeoutMs, () => null) };
}

function pskTls(mode: NbdTlsMode, keys: ReadonlyMap<string, Buffer>): NbdTls {
  assert(keys.size > 0, "a PSK server has at least one key");
  const secureContext = tls.createSecureContext({ minVersion: TLS_VERSION_MIN, ciphers: PSK_CIPHERS_TLS12 });
  return {
    mode,
    upgrade: (socket, timeoutMs) => {
      // OpenSSL's own error for an unknown identity speaks of signature algorithms; this says what happened.
      let unknownIdentity: string | null = null;
      const pskOptions = {
        isServer: true,
        secureContext,
        // An unknown identity gets no key, which fails the handshake.
        pskCallback: (_socket: tls.TLSSocket, identity: string): Buffer | null => {
          const key = keys.get(identity) ?? null;
          if (key === null) unknownIdentity = identity;
          return key;
        },
      } as tls.TLSSocketOptions;
      return upgradeSocket(socket, pskOptions, timeoutMs, () =>
        unknownIdentity === null ? null : `unknown PSK identity ${JSON.stringify(unknownIdentity)}`,
      );
    },
  };
}

/** `explain` may name the cause of a failure better than OpenSSL's message does. */
function upgradeSocket(
  socket: Socket,
  options: tls.TLSSocketOptions,
  timeoutMs: number,
  explain: () => string | null,
): Promise<tls.TLSSocket> {
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
      reject(new TlsHandshakeError(`TLS handshake failed: ${explain() ?? failure}`));
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
