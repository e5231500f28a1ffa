// The transmission phase of one connection: read requests, serve them concurrently, reply as
// each completes. Reading pauses while too many requests or bytes are in flight or the
// client is slow to take its replies, so one client cannot make us buffer without bound;
// and while the server's shared budget has no room for the next request's bytes, so all
// clients together cannot either.
//
// A READ or WRITE's bytes are charged, to this connection and to the server's budget, after
// its header is read and before its payload is, and come back once its reply has left our
// memory. A request waits only for bytes held by requests already in flight, never by
// itself, and each of those finishes and releases (or its connection closes, which releases
// too): so the wait always ends.

import type { ByteBudget } from "./byte-budget.js";
import type { ExportCatalog } from "./catalog.js";
import type { NegotiatedExport } from "./handshake.js";
import type { NbdLimits } from "./limits.js";
import { assert } from "../io/assert.js";
import { REQUEST_BYTES_MAX } from "./limits.js";
import type { NbdLog } from "./nbd-log.js";
import { silentRequests, type NbdObserver, type NbdRequestObserver } from "./nbd-observer.js";
import {
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  REQUEST_HEADER_BYTES,
  SIMPLE_REPLY_HEADER,
  SIMPLE_REPLY_HEADER_BYTES,
} from "./protocol.js";
import type { ReplyWriter } from "./reply-writer.js";
import { validateRequest, commandName, type Validation } from "./request-validation.js";
import { freePayload, freeReadReply } from "./payload-memory.js";
import { errorReply, serveRequest } from "./serve-request.js";
import { isSessionEnding, ProtocolViolationError } from "./session-errors.js";
import type { SocketReader } from "./socket-reader.js";
import { decodeRequestHeader, replyErrno, type RequestHeader } from "./transmission-messages.js";

export interface TransmissionEnvironment {
  catalog: ExportCatalog;
  limits: NbdLimits;
  /** Shared by every connection of the server; holds at most limits.serverInflightBytesMax. */
  budget: ByteBudget;
  log: NbdLog;
  observer: NbdObserver;
}

/** Why transmission ended; the connection closes in every case. */
export type TransmissionEnd = "disconnect" | "peer-closed" | "violation" | "stopped";

/**
 * Whether a WRITE's reply says it succeeded: then every write of its payload has completed
 * and nothing reads the payload any more. A failed WRITE may have left some of them in
 * flight (the engine answers at the first failure), so its payload is left to the collector.
 */
function isSuccessReply(frames: readonly Uint8Array[]): boolean {
  const first = frames[0];
  if (frames.length !== 1 || first === undefined || first.length !== SIMPLE_REPLY_HEADER_BYTES) return false;
  const view = new DataView(first.buffer, first.byteOffset, first.length);
  return (
    view.getUint32(SIMPLE_REPLY_HEADER.magic.offset) === NBD_SIMPLE_REPLY_MAGIC && view.getUint32(SIMPLE_REPLY_HEADER.error.offset) === 0
  );
}

/** Bytes a request holds while in flight: a WRITE's payload (read even when refused), a served READ's data. */
function inflightCost(request: RequestHeader, validation: Validation): number {
  if (request.command === NBD_CMD_WRITE) return request.byteLength;
  if (request.command === NBD_CMD_READ && validation.ok) return request.byteLength;
  return 0;
}

export class Transmission {
  /** Read and not yet answered. */
  private inflightRequests = 0;
  /** Charged and not yet released: requests in flight, and replies the kernel has not taken yet. */
  private inflightBytes = 0;
  private stopped = false;
  /** Aborted by stop(), to end a wait for the server's budget. */
  private readonly stopping = new AbortController();
  /** Woken when a request completes, the socket drains, or we are stopped. */
  private wakeReader: (() => void) | null = null;
  private wakeDrained: (() => void) | null = null;
  private watchingDrain = false;
  /** This export's request reports, found once for the whole transmission. */
  private readonly requests: NbdRequestObserver;

  constructor(
    private readonly reader: SocketReader,
    private readonly writer: ReplyWriter,
    private readonly session: NegotiatedExport,
    private readonly environment: TransmissionEnvironment,
  ) {
    this.requests = environment.observer.exportServed(session.exportName);
  }

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
    this.stopping.abort();
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
      if (request.command === NBD_CMD_WRITE && request.byteLength > REQUEST_BYTES_MAX) {
        // Too large to swallow safely; the spec lets a server hang up on such a payload.
        throw new ProtocolViolationError(`WRITE of ${request.byteLength} bytes exceeds the maximum of ${REQUEST_BYTES_MAX}`);
      }
      const validation = validateRequest(request, this.session);
      const costBytes = inflightCost(request, validation);
      if (!(await this.charge(costBytes))) return "stopped";
      let payload: Buffer | null = null;
      try {
        // A WRITE's data is read even when the request will be refused, to stay in step with the client.
        if (request.command === NBD_CMD_WRITE) payload = await this.reader.readExact(request.byteLength);
      } catch (error) {
        this.uncharge(costBytes);
        throw error;
      }
      this.dispatch(request, validation, payload, costBytes);
    }
  }

  /**
   * Waits until `costBytes` fit this connection's limit and then the server's budget, and
   * takes them from both; false if stopped first (nothing taken).
   */
  private async charge(costBytes: number): Promise<boolean> {
    if (costBytes === 0) return true;
    const { inflightBytesMax, serverInflightBytesMax } = this.environment.limits;
    // The cost fits both limits, so with nothing else in flight it is always admitted.
    assert(costBytes <= inflightBytesMax && costBytes <= serverInflightBytesMax, `request of ${costBytes} bytes exceeds a limit`);
    await this.until(() => this.inflightBytes + costBytes <= inflightBytesMax);
    if (this.stopped) return false;
    const { budget } = this.environment;
    if (budget.wouldWait(costBytes)) {
      const { inUseBytes, waiting } = budget.report();
      this.environment.log(
        "debug",
        `waiting for ${costBytes} bytes of the server's in-flight budget (${inUseBytes} held, ${waiting} waiting)`,
      );
    }
    if (!(await budget.acquire(costBytes, this.stopping.signal))) return false;
    this.inflightBytes += costBytes;
    return true;
  }

  private uncharge(costBytes: number): void {
    if (costBytes === 0) return;
    assert(costBytes <= this.inflightBytes, `release of ${costBytes} of ${this.inflightBytes} bytes in flight`);
    this.inflightBytes -= costBytes;
    this.environment.budget.release(costBytes);
    this.wake();
  }

  private dispatch(request: RequestHeader, validation: Validation, payload: Buffer | null, costBytes: number): void {
    this.inflightRequests++;
    // Without a watcher (no --metrics) a request pays neither the clock nor reading its reply.
    const observed = this.requests !== silentRequests;
    const startedMs = observed ? performance.now() : 0;
    // The request is answered once its reply is queued; its bytes come back once the kernel
    // has taken the reply, since until then the reply (a READ's data) is still in our memory.
    const isRead = request.command === NBD_CMD_READ;
    const answer = (frames: readonly Uint8Array[]) => {
      this.inflightRequests--;
      if (observed) this.requests.answered(request.command, request.byteLength, replyErrno(frames), (performance.now() - startedMs) / 1000);
      this.writer.send(frames, () => {
        this.uncharge(costBytes);
        if (isRead) freeReadReply(frames);
      });
      this.wake();
    };
    if (!validation.ok) {
      this.environment.log("debug", `${commandName(request.command)} refused: ${validation.message}`);
      if (payload !== null) freePayload(payload);
      answer(errorReply(this.session, request.cookie, validation.errno, validation.message));
      return;
    }
    // serveRequest turns every operating error into a reply; if it rejects, an assertion
    // failed, and the rejection is left unhandled on purpose so the process stops.
    const served = (frames: readonly Uint8Array[]) => {
      if (payload !== null && isSuccessReply(frames)) freePayload(payload);
      answer(frames);
    };
    const reply = serveRequest(request, payload, this.session, this.environment.catalog, this.environment.log);
    if (!(reply instanceof Promise)) {
      served(reply);
      return;
    }
    void reply.then(served, (error: unknown) => {
      this.inflightRequests--;
      this.uncharge(costBytes);
      throw error;
    });
  }

  private admission(): Promise<void> {
    const { inflightRequestsMax } = this.environment.limits;
    return this.until(() => this.inflightRequests < inflightRequestsMax && !this.writer.congested);
  }

  /** Resolves once `ready()` holds or we are stopped, checking again whenever something completes or the socket drains. */
  private until(ready: () => boolean): Promise<void> {
    if (this.stopped || ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.stopped || ready()) {
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
