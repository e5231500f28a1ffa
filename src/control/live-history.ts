// Diff, send, receive and dump while `thinp serve` owns the pool (formats/control-protocol.md,
// "History while served"). Readers go through holds (Pool.hold, holds.ts), so NBD clients
// write on meanwhile and nothing they write changes what is read; a connection's holds go
// when its operation ends or the connection closes. A receive is applied by the server to
// its own pool, fed by the client a chunk per request, and exported once it is published.
// Every operation is pulled by the client, a page or a chunk per request, so the client's
// pace is the stream's and no reply outgrows the frame limits.

import { InvalidArgumentError, LimitExceededError, StreamCorruptError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { DiffRange } from "../thin/api.js";
import { dmThinXml, heldDumpPlan, restingDumpPlan, type DumpedDevice } from "../thin/dm-thin-dump.js";
import type { Pool } from "../thin/pool.js";
import { receiveStream } from "../thin/receive.js";
import { PoolReceiveTarget, abandonReceive, interruptedReceive } from "../thin/receive-target.js";
import { decodeResumeToken } from "../thin/resume-token.js";
import { encodeSendStream, openHeldSendSource, type SendSide, type SendTotals } from "../thin/send.js";
import type { ControlRequest, DiffReadReply, DumpReadReply, ReceiveEndReply, SendReadReply, SessionReply } from "./control-protocol.js";
import type { ConnectionOperations } from "./control-server.js";
import {
  CONTROL_DIFF_RANGES_MAX,
  CONTROL_READ_BYTES_MAX,
  CONTROL_RECEIVE_DATA_BYTES_MAX,
  CONTROL_SESSIONS_MAX,
  RECEIVE_QUEUE_CHUNKS_MAX,
} from "./limits.js";

const HISTORY_OPS = new Set([
  "diff-begin",
  "diff-read",
  "send-begin",
  "send-read",
  "receive-begin",
  "receive-data",
  "receive-end",
  "receive-token",
  "receive-abort",
  "dump-begin",
  "dump-read",
  "end",
]);

/** An open diff, send, receive or dump of one connection. */
interface Session {
  /** Ends it: its holds released, an unfinished receive aborted. Safe to call again. */
  close(): Promise<void>;
}

export class LiveHistory {
  private readonly connections = new Set<HistoryConnection>();

  private constructor(
    readonly pool: Pool,
    /** After a receive is published: makes the new volume an export. */
    readonly published: () => Promise<void>,
  ) {}

  /** Releases the holds a server that stopped without releasing them left (a crash), then serves. */
  static async start(pool: Pool, published: () => Promise<void>, log: (message: string) => void): Promise<LiveHistory> {
    if (!pool.readOnly) {
      const released = await pool.releaseLeftoverHolds();
      if (released > 0) log(`released ${released} hold${released === 1 ? "" : "s"} left by a server that stopped while reading`);
    }
    return new LiveHistory(pool, published);
  }

  connect(): ConnectionOperations {
    const connection = new HistoryConnection(this, () => this.connections.delete(connection));
    this.connections.add(connection);
    return connection;
  }

  /** Ends every connection's sessions: for the server's stop, before its last commit. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.connections].map((connection) => connection.close()));
  }
}

class HistoryConnection implements ConnectionOperations {
  private readonly sessions = new Map<number, Session>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly history: LiveHistory,
    private readonly onClosed: () => void,
  ) {}

  private get pool(): Pool {
    return this.history.pool;
  }

  handles(op: string): boolean {
    return HISTORY_OPS.has(op);
  }

  async dispatch(request: ControlRequest): Promise<unknown> {
    // Only the server's stop closes a connection with requests still queued on it.
    if (this.closing !== null) throw new Error("the server is stopping");
    switch (request.op) {
      case "diff-begin":
        return this.open(await this.diffBegin(text(request.from), text(request.to), request.same === true));
      case "send-begin":
        return this.open(await this.sendBegin(text(request.volume), optionalText(request.from), optionalText(request.resumeToken)));
      case "receive-begin":
        return this.open(this.receiveBegin(text(request.name), request.resumable === true, request.resume === true));
      case "dump-begin":
        return this.open(await this.dumpBegin());
      case "diff-read":
        return this.session(request.id, DiffSession).read();
      case "send-read":
        return this.session(request.id, SendSession).read(readLimit(request.maxBytes));
      case "dump-read":
        return this.session(request.id, DumpSession).read(readLimit(request.maxBytes));
      case "receive-data":
        return this.session(request.id, ReceiveSession).push(receiveBytes(request.bytes));
      case "receive-end":
        return this.finishReceive(request.id);
      case "receive-token": {
        const kept = await interruptedReceive(this.pool, text(request.name));
        return { token: kept?.token ?? null };
      }
      case "receive-abort": {
        const dropped = await abandonReceive(this.pool, text(request.name));
        if (dropped) await this.pool.commit();
        return { dropped };
      }
      case "end":
        await this.end(request.id);
        return {};
      default:
        throw new Error(`unknown control operation '${request.op}'`);
    }
  }

  /** Every session ends; requests already queued on the connection have been answered first. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const sessions = [...this.sessions.values()];
      this.sessions.clear();
      await Promise.allSettled(sessions.map((session) => session.close()));
      this.onClosed();
    })();
    return this.closing;
  }

  // ---- sessions --------------------------------------------------------------------------

  private open(session: Session): SessionReply {
    const id = this.nextId++;
    this.sessions.set(id, session);
    return { id };
  }

  /** Refused before anything is held, so a connection cannot pile up holds without end. */
  private checkRoom(): void {
    if (this.sessions.size >= CONTROL_SESSIONS_MAX) {
      throw new LimitExceededError(`a control connection may have ${CONTROL_SESSIONS_MAX} diffs, sends, receives and dumps open at once`);
    }
  }

  private session<T extends Session>(id: unknown, kind: abstract new (...args: never[]) => T): T {
    const session = typeof id === "number" ? this.sessions.get(id) : undefined;
    if (!(session instanceof kind))
      throw new InvalidArgumentError(`no ${kind.name.replace("Session", "").toLowerCase()} ${String(id)} is open on this connection`);
    return session;
  }

  private async end(id: unknown): Promise<void> {
    if (typeof id !== "number") return;
    const session = this.sessions.get(id);
    this.sessions.delete(id);
    await session?.close();
  }

  private async finishReceive(id: unknown): Promise<ReceiveEndReply> {
    const session = this.session(id, ReceiveSession);
    try {
      const result = await session.finish();
      await this.history.published();
      return result;
    } finally {
      await this.end(id);
    }
  }

  // ---- what each begins ------------------------------------------------------------------

  /**
   * Each volume held in turn, all or none. A read-only pool takes no writes, so its volumes
   * are read as they are (and cannot be held: a hold is a change).
   */
  private async hold(names: readonly string[], seal: boolean): Promise<{ sides: SendSide[]; release: () => Promise<void> }> {
    this.checkRoom();
    const pool = this.pool;
    if (pool.readOnly) {
      const sides: SendSide[] = [];
      for (const name of names) {
        const identity = seal
          ? await pool.seal(name)
          : await pool.transactions.read(async (metadata) => {
              const { record } = await metadata.requireVolume(name);
              return { uuid: record.uuid, generation: record.generation };
            });
        sides.push({ name, readName: name, identity });
      }
      return { sides, release: async () => undefined };
    }
    const holds: string[] = [];
    const release = async () => pool.releaseHolds(holds.splice(0));
    try {
      const sides: SendSide[] = [];
      for (const name of names) {
        const held = await pool.hold(name, { seal });
        holds.push(held.holdName);
        sides.push({ name, readName: held.holdName, identity: held.identity });
      }
      return { sides, release };
    } catch (failure) {
      await release().catch(() => undefined);
      throw failure;
    }
  }

  private async diffBegin(from: string, to: string, includeSame: boolean): Promise<DiffSession> {
    const { sides, release } = await this.hold([from, to], false);
    const [left, right] = sides as [SendSide, SendSide];
    return new DiffSession(this.pool.diff(left.readName, right.readName, { includeSame }), release);
  }

  private async sendBegin(volume: string, from: string | null, resumeToken: string | null): Promise<SendSession> {
    const resume = resumeToken === null ? undefined : decodeResumeToken(resumeToken);
    const { sides, release } = await this.hold(from === null ? [volume] : [volume, from], true);
    try {
      const source = await openHeldSendSource(this.pool, { volume: sides[0]!, base: sides[1] ?? null, resume, release });
      return new SendSession(source.close, (totals) => encodeSendStream(source, totals));
    } catch (failure) {
      await release().catch(() => undefined);
      throw failure;
    }
  }

  private receiveBegin(name: string, resumable: boolean, resume: boolean): ReceiveSession {
    this.checkRoom();
    const target = new PoolReceiveTarget(this.pool, name, { resumable, resume });
    return new ReceiveSession(this.pool, target);
  }

  private async dumpBegin(): Promise<DumpSession> {
    this.checkRoom();
    const pool = this.pool;
    const holds = pool.readOnly ? [] : await pool.holdAll();
    const release = () => pool.releaseHolds(holds.splice(0).map((hold) => hold.holdName));
    try {
      const plan = pool.readOnly ? await restingDumpPlan(pool) : await heldDumpPlan(pool, holds);
      return new DumpSession(release, (onDevice) => dmThinXml(pool, onDevice, plan));
    } catch (failure) {
      await release().catch(() => undefined);
      throw failure;
    }
  }
}

// ---- the sessions ------------------------------------------------------------------------

class DiffSession implements Session {
  private readonly ranges: AsyncIterator<DiffRange>;

  constructor(
    ranges: AsyncIterable<DiffRange>,
    private readonly release: () => Promise<void>,
  ) {
    this.ranges = ranges[Symbol.asyncIterator]();
  }

  async read(): Promise<DiffReadReply> {
    const ranges: DiffRange[] = [];
    try {
      while (ranges.length < CONTROL_DIFF_RANGES_MAX) {
        const step = await this.ranges.next();
        if (step.done) {
          await this.close();
          return { ranges, done: true };
        }
        ranges.push(step.value);
      }
      return { ranges, done: false };
    } catch (failure) {
      await this.close();
      throw failure;
    }
  }

  async close(): Promise<void> {
    await this.ranges.return?.();
    await this.release();
  }
}

/** Pieces of a stream handed out in replies of at most `maxBytes`, the rest of a piece kept for the next. */
class PieceReader<T extends Buffer | string> {
  private leftover: T | null = null;

  constructor(
    private readonly pieces: AsyncIterator<T>,
    /** The piece's first `at` bytes and the rest. */
    private readonly split: (piece: T, at: number) => [T, T],
  ) {}

  /** At least one piece unless the stream is done; at most `maxBytes` bytes (or characters). */
  async take(maxBytes: number): Promise<{ pieces: T[]; done: boolean }> {
    const pieces: T[] = [];
    let taken = 0;
    while (taken < maxBytes) {
      let piece = this.leftover;
      this.leftover = null;
      if (piece === null) {
        const step = await this.pieces.next();
        if (step.done) return { pieces, done: true };
        piece = step.value;
      }
      const room = maxBytes - taken;
      if (piece.length > room) [piece, this.leftover] = this.split(piece, room);
      pieces.push(piece);
      taken += piece.length;
    }
    return { pieces, done: false };
  }

  async close(): Promise<void> {
    await this.pieces.return?.(undefined);
  }
}

/**
 * A session whose output the client pulls a reply at a time: its holds go as soon as the last
 * piece is out (not when the client ends the session), or when a read fails.
 */
abstract class PulledSession<T extends Buffer | string> implements Session {
  protected abstract readonly reader: PieceReader<T>;

  constructor(private readonly release: () => Promise<void>) {}

  protected async take(maxBytes: number): Promise<{ pieces: T[]; done: boolean }> {
    try {
      const taken = await this.reader.take(maxBytes);
      if (taken.done) await this.close();
      return taken;
    } catch (failure) {
      await this.close();
      throw failure;
    }
  }

  async close(): Promise<void> {
    await this.reader.close();
    await this.release();
  }
}

class SendSession extends PulledSession<Buffer> {
  private readonly totals: SendTotals = { bytes: 0, dataBlocks: 0, unmappedBlocks: 0, records: 0 };
  protected readonly reader: PieceReader<Buffer>;

  constructor(release: () => Promise<void>, stream: (totals: SendTotals) => AsyncGenerator<Buffer>) {
    super(release);
    this.reader = new PieceReader(stream(this.totals), (piece, at) => [piece.subarray(0, at), piece.subarray(at)]);
  }

  async read(maxBytes: number): Promise<SendReadReply> {
    const { pieces, done } = await this.take(maxBytes);
    return { bytes: Buffer.concat(pieces), done, totals: done ? { ...this.totals } : null };
  }
}

class DumpSession extends PulledSession<string> {
  private readonly devices: DumpedDevice[] = [];
  protected readonly reader: PieceReader<string>;

  constructor(release: () => Promise<void>, xml: (onDevice: (device: DumpedDevice) => void) => AsyncGenerator<string>) {
    super(release);
    this.reader = new PieceReader(
      xml((device) => this.devices.push(device)),
      (piece, at) => [piece.slice(0, at), piece.slice(at)],
    );
  }

  /** `maxBytes` counts characters, which are bytes: the XML is ASCII (volume names are not in it). */
  async read(maxBytes: number): Promise<DumpReadReply> {
    const { pieces, done } = await this.take(maxBytes);
    return { text: pieces.join(""), done, devices: done ? [...this.devices] : null };
  }
}

/**
 * A receive fed by requests: each chunk waits in a short queue for receiveStream, and a
 * `receive-data` is answered once its chunk is queued, so a client cannot run ahead of the
 * pool by more than the queue.
 */
class ReceiveSession implements Session {
  private readonly queue: Buffer[] = [];
  private inputEnded = false;
  /** Why the stream stops early: the receive failed, or the connection closed under it. */
  private failure: unknown = null;
  private bytesIn = 0;
  private wakeReceiver: (() => void) | null = null;
  private readonly wakeSenders: Array<() => void> = [];
  private readonly receiving: Promise<ReceiveEndReply>;

  constructor(
    private readonly pool: Pool,
    target: PoolReceiveTarget,
  ) {
    this.receiving = receiveStream(this.chunks(), target);
    this.receiving.catch((failure: unknown) => this.stop(failure));
  }

  async push(bytes: Buffer): Promise<Record<string, never>> {
    while (this.failure === null && this.queue.length >= RECEIVE_QUEUE_CHUNKS_MAX) {
      await new Promise<void>((resolve) => this.wakeSenders.push(resolve));
    }
    // The receive's own error, as the local path reports it.
    if (this.failure !== null) await this.receiving;
    assert(!this.inputEnded, "no data after the end of a receive's input");
    this.queue.push(bytes);
    this.bytesIn += bytes.length;
    this.wake();
    return {};
  }

  /** The input is whole: the receive verifies it and publishes, or fails. */
  async finish(): Promise<ReceiveEndReply> {
    this.inputEnded = true;
    this.wake();
    try {
      return await this.receiving;
    } finally {
      await this.commitAbort();
    }
  }

  /** Before `finish`: the stream is cut, so nothing is published; a resumable receive keeps its progress. */
  async close(): Promise<void> {
    if (!this.inputEnded) this.stop(new StreamCorruptError(this.bytesIn, "the control connection closed before the stream ended"));
    await this.receiving.catch(() => undefined);
    await this.commitAbort();
  }

  /** A failed receive deleted its hidden volume in a transaction of its own: made durable now. */
  private async commitAbort(): Promise<void> {
    if (this.failure !== null && !this.pool.readOnly) await this.pool.commit().catch(() => undefined);
  }

  private stop(failure: unknown): void {
    this.failure ??= failure;
    this.wake();
  }

  private wake(): void {
    this.wakeReceiver?.();
    this.wakeReceiver = null;
    for (const wake of this.wakeSenders.splice(0)) wake();
  }

  private async *chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk !== undefined) {
        this.wake();
        yield chunk;
        continue;
      }
      if (this.failure !== null) throw this.failure;
      if (this.inputEnded) return;
      await new Promise<void>((resolve) => (this.wakeReceiver = resolve));
    }
  }
}

// ---- validating requests -----------------------------------------------------------------

function text(value: unknown): string {
  if (typeof value !== "string") throw new InvalidArgumentError("a name must be a string");
  return value;
}

function optionalText(value: unknown): string | null {
  return value === null || value === undefined ? null : text(value);
}

function readLimit(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) return CONTROL_READ_BYTES_MAX;
  return Math.min(value, CONTROL_READ_BYTES_MAX);
}

function receiveBytes(value: unknown): Buffer {
  if (!(value instanceof Uint8Array)) throw new InvalidArgumentError("receive-data carries its bytes as binary");
  if (value.length > CONTROL_RECEIVE_DATA_BYTES_MAX) {
    throw new LimitExceededError(`receive-data carries at most ${CONTROL_RECEIVE_DATA_BYTES_MAX} bytes`);
  }
  // A copy: the chunk waits in the queue after the request's frame is gone.
  return Buffer.from(value);
}
