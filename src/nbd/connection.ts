// One client connection from accept to close: handshake, then transmission, then a clean
// close. Whatever the client does, only this socket is affected.

import type { Socket } from "node:net";
import type { ByteBudget } from "./byte-budget.js";
import type { ExportCatalog } from "./catalog.js";
import { negotiate, type HandshakeChannel, type HandshakeTls, type NegotiatedExport } from "./handshake.js";
import { READ_AHEAD_BYTES_MAX, SOCKET_CLOSE_TIMEOUT_MS, type NbdLimits } from "./limits.js";
import type { NbdLog } from "./nbd-log.js";
import type { NbdObserver } from "./nbd-observer.js";
import { ReplyWriter } from "./reply-writer.js";
import { isSessionEnding } from "./session-errors.js";
import { SocketReader } from "./socket-reader.js";
import type { NbdTls } from "./tls.js";
import { Transmission } from "./transmission.js";

export interface ConnectionEnvironment {
  catalog: ExportCatalog;
  serverReadOnly: boolean;
  limits: NbdLimits;
  /** The server's in-flight budget, shared by all its connections. */
  budget: ByteBudget;
  log: NbdLog;
  observer: NbdObserver;
  /** Null when the server does not offer TLS. */
  tls: NbdTls | null;
}

export class NbdConnection {
  // The accepted socket until STARTTLS succeeds, then the TLS socket over it.
  private socket: Socket;
  private reader: SocketReader;
  private writer: ReplyWriter;
  private socketClosed: Promise<void>;
  private readonly log: NbdLog;
  private transmission: Transmission | null = null;
  private shuttingDown = false;
  /** True while the TLS handshake runs: no reader is waiting then, so shutdown must close the socket. */
  private tlsHandshaking = false;

  constructor(
    socket: Socket,
    readonly connectionId: number,
    private readonly environment: ConnectionEnvironment,
  ) {
    const peer = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : "unix socket";
    const fields = { connection: connectionId, peer };
    this.log = (level, message) => environment.log(level, `nbd connection ${connectionId} (${peer}): ${message}`, fields);
    this.socket = socket;
    ({ reader: this.reader, writer: this.writer, closed: this.socketClosed } = this.useSocket(socket));
  }

  private useSocket(socket: Socket): HandshakeChannel & { closed: Promise<void> } {
    // Resets and write failures end up as 'close'; without a listener they would crash the server.
    socket.on("error", (error) => this.log("debug", `socket error: ${error.message}`));
    return {
      reader: new SocketReader(socket, READ_AHEAD_BYTES_MAX),
      writer: new ReplyWriter(socket, this.environment.limits.replyBufferBytesMax),
      closed: new Promise((resolve) => socket.once("close", () => resolve())),
    };
  }

  /** STARTTLS was acknowledged: from here on, every byte goes through TLS over the accepted socket. */
  private async upgradeToTls(tls: NbdTls): Promise<HandshakeChannel> {
    this.tlsHandshaking = true;
    let secure;
    try {
      secure = await tls.upgrade(this.socket, this.environment.limits.handshakeTimeoutMs);
    } finally {
      this.tlsHandshaking = false;
    }
    this.socket = secure;
    ({ reader: this.reader, writer: this.writer, closed: this.socketClosed } = this.useSocket(secure));
    this.log("info", `TLS started (${secure.getProtocol() ?? "unknown version"}, ${secure.getCipher().name})`);
    return { reader: this.reader, writer: this.writer };
  }

  /** Serves the connection to its end; resolves when the socket has closed. */
  async run(): Promise<void> {
    const negotiated = await this.handshake();
    if (negotiated !== null) {
      try {
        if (!this.shuttingDown) await this.transmit(negotiated);
      } finally {
        this.environment.catalog.detach?.(negotiated.exportName, negotiated.handle);
      }
    }
    await this.close();
  }

  /** Server shutdown: a client still in the handshake is dropped; one in transmission gets its in-flight replies first. */
  shutdown(): void {
    this.shuttingDown = true;
    if (this.transmission !== null) this.transmission.stop();
    else {
      this.reader.stop();
      // A handshake waiting for a client that reads nothing would hold close() for the whole drain timeout.
      if (this.writer.congested || this.tlsHandshaking) this.socket.destroy();
    }
  }

  /** Drops the connection at once; for when shutdown has waited long enough. */
  destroy(): void {
    this.socket.destroy();
  }

  private async handshake(): Promise<NegotiatedExport | null> {
    const { limits, catalog, serverReadOnly, tls } = this.environment;
    const handshakeTls: HandshakeTls | null = tls === null ? null : { mode: tls.mode, upgrade: () => this.upgradeToTls(tls) };
    const timer = setTimeout(() => {
      this.log("info", `handshake not finished within ${limits.handshakeTimeoutMs} ms; closing`);
      this.reader.stop();
      // The handshake may be waiting for a client that reads nothing to drain its replies;
      // only closing the socket ends that wait.
      this.socket.destroy();
    }, limits.handshakeTimeoutMs);
    try {
      return await negotiate(
        { reader: this.reader, writer: this.writer },
        {
          catalog,
          serverReadOnly,
          optionsPerHandshakeMax: limits.optionsPerHandshakeMax,
          isShuttingDown: () => this.shuttingDown,
          log: this.log,
          tls: handshakeTls,
        },
      );
    } catch (error) {
      if (!isSessionEnding(error)) throw error;
      this.log("info", `handshake ended: ${error.message}`);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  private async transmit(negotiated: NegotiatedExport): Promise<void> {
    this.log("info", `serving '${negotiated.exportName}' (${negotiated.exportBytes} bytes${negotiated.readOnly ? ", read-only" : ""})`);
    this.transmission = new Transmission(this.reader, this.writer, negotiated, this.environment);
    const end = await this.transmission.run();
    this.log("info", `transmission ended: ${end}`);
  }

  private async close(): Promise<void> {
    // Nothing more is read, but the socket keeps flowing (data dropped) so the client's own
    // hang-up is noticed. end() flushes queued replies first; a client that never hangs up
    // is dropped after a while.
    this.reader.stop();
    this.socket.resume();
    this.writer.flush();
    if (!this.socket.destroyed) this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), SOCKET_CLOSE_TIMEOUT_MS);
    await this.socketClosed;
    clearTimeout(timer);
  }
}
