// The transmission phase of one connection: read requests, serve them concurrently, reply as
// each completes. Reading pauses while too many requests or bytes are in flight or the
// client is slow to take its replies, so one client cannot make us buffer without bound.

import type { ExportCatalog } from "./catalog.js";
import type { NegotiatedExport } from "./handshake.js";
import type { NbdLimits } from "./limits.js";
import { REQUEST_BYTES_MAX } from "./limits.js";
import type { NbdLog } from "./nbd-log.js";
import { NBD_CMD_DISC, NBD_CMD_READ, NBD_CMD_WRITE, NBD_REQUEST_MAGIC, REQUEST_HEADER_BYTES } from "./protocol.js";
import type { ReplyWriter } from "./reply-writer.js";
import { validateRequest, commandName } from "./request-validation.js";
import { errorReply, serveRequest } from "./serve-request.js";
import { isSessionEnding, ProtocolViolationError } from "./session-errors.js";
import type { SocketReader } from "./socket-reader.js";
import { decodeRequestHeader, type RequestHeader } from "./transmission-messages.js";

export interface TransmissionEnvironment {
  catalog: ExportCatalog;
  limits: NbdLimits;
  log: NbdLog;
}

/** Why transmission ended; the connection closes in every case. */
export type TransmissionEnd = "disconnect" | "peer-closed" | "violation" | "stopped";

export class Transmission {
  private inflightRequests = 0;
  private inflightBytes = 0;
  private stopped = false;
  /** Woken when a request completes, the socket drains, or we are stopped. */
  private wakeReader: (() => void) | null = null;
  private wakeDrained: (() => void) | null = null;
  private watchingDrain = false;

  constructor(
    private readonly reader: SocketReader,
    private readonly writer: ReplyWriter,
    private readonly session: NegotiatedExport,
    private readonly environment: TransmissionEnvironment,
  ) {}

  /** Serves requests until the client disconnects or we stop; resolves once nothing is in flight. */
  async run(): Promise<TransmissionEnd> {
    let end: TransmissionEnd;
    try {
      end = await this.readRequests();
    } catch (error) {
      if (!isSessionEnding(error)) throw error;
      end = error instanceof ProtocolViolationError ? "violation" : this.stopped ? "stopped" : "peer-closed";
      if (error instanceof ProtocolViolationError) this.environment.log("warn", `closing connection: ${error.message}`);
    }
    // NBD_CMD_DISC and shutdown both require finishing what is in flight before closing.
    await this.allServed();
    return end;
  }

  /** Reads no further requests; those in flight still get their replies. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.reader.stop();
    this.wake();
  }

  private async readRequests(): Promise<TransmissionEnd> {
    // One request per pass; each pass waits for the client, so the loop is bounded by its requests.
    for (;;) {
      await this.admission();
      if (this.stopped) return "stopped";
      const request = decodeRequestHeader(await this.reader.readExact(REQUEST_HEADER_BYTES));
      if (request.magic !== NBD_REQUEST_MAGIC) {
        throw new ProtocolViolationError(`bad request magic 0x${request.magic.toString(16)}`);
      }
      if (request.command === NBD_CMD_DISC) return "disconnect";
      const payload = request.command === NBD_CMD_WRITE ? await this.readPayload(request) : null;
      this.dispatch(request, payload);
    }
  }

  /** A WRITE's data is read even when the request will be refused, to stay in step with the client. */
  private async readPayload(request: RequestHeader): Promise<Buffer> {
    if (request.byteLength > REQUEST_BYTES_MAX) {
      // Too large to swallow safely; the spec lets a server hang up on such a payload.
      throw new ProtocolViolationError(`WRITE of ${request.byteLength} bytes exceeds the maximum of ${REQUEST_BYTES_MAX}`);
    }
    return this.reader.readExact(request.byteLength);
  }

  private dispatch(request: RequestHeader, payload: Buffer | null): void {
    const costBytes = request.command === NBD_CMD_READ || request.command === NBD_CMD_WRITE ? request.byteLength : 0;
    this.inflightRequests++;
    this.inflightBytes += costBytes;
    const release = () => {
      this.inflightRequests--;
      this.inflightBytes -= costBytes;
      this.wake();
    };
    const validation = validateRequest(request, this.session);
    if (!validation.ok) {
      this.environment.log("debug", `${commandName(request.command)} refused: ${validation.message}`);
      this.writer.send(errorReply(this.session, request.cookie, validation.errno, validation.message));
      release();
      return;
    }
    // serveRequest turns every operating error into a reply; if it rejects, an assertion
    // failed, and the rejection is left unhandled on purpose so the process stops.
    const reply = serveRequest(request, payload, this.session, this.environment.catalog, this.environment.log);
    if (!(reply instanceof Promise)) {
      this.writer.send(reply);
      release();
      return;
    }
    void reply.then(
      (frames) => {
        this.writer.send(frames);
        release();
      },
      (error: unknown) => {
        release();
        throw error;
      },
    );
  }

  private admission(): Promise<void> {
    const { inflightRequestsMax, inflightBytesMax } = this.environment.limits;
    const full = () => this.inflightRequests >= inflightRequestsMax || this.inflightBytes >= inflightBytesMax || this.writer.congested;
    if (this.stopped || !full()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.stopped || !full()) {
          this.wakeReader = null;
          resolve();
          return;
        }
        this.wakeReader = check;
        if (this.writer.congested && !this.watchingDrain) {
          this.watchingDrain = true;
          void this.writer.whenDrained().then(() => {
            this.watchingDrain = false;
            this.wake();
          });
        }
      };
      check();
    });
  }

  private allServed(): Promise<void> {
    if (this.inflightRequests === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeDrained = () => {
        if (this.inflightRequests === 0) {
          this.wakeDrained = null;
          resolve();
        }
      };
    });
  }

  private wake(): void {
    this.wakeReader?.();
    this.wakeDrained?.();
  }
}
