// The fuzzer's end of one connection: raw bytes out, exact-length reads in, and a deadline
// so that no case can wait on the server for ever. It records what it sent, so a failing
// case can be printed as hex and replayed byte for byte.

import net from "node:net";
import { ChunkQueue } from "../../src/io/chunk-queue.js";

/** How long one connection may live before the fuzzer gives up on the server. */
export const CONNECTION_DEADLINE_MS = 20_000;
/** Bytes of a connection's outgoing stream kept for printing; a longer stream is replayed by seed. */
const RECORDED_BYTES_MAX = 1024 * 1024;

export class ConnectionClosedError extends Error {
  override name = "ConnectionClosedError";
}

export class FuzzSocket {
  private readonly queue = new ChunkQueue();
  private wanted = 0;
  private waiter: (() => void) | null = null;
  private closedFlag = false;
  private timedOut = false;
  private readonly recorded: Buffer[] = [];
  private recordedBytes = 0;
  /** Bytes received and thrown away by `drainUntilClosed`. */
  discardedBytes = 0;
  readonly closed: Promise<void>;
  private readonly deadline: NodeJS.Timeout;

  private constructor(
    private readonly socket: net.Socket,
    deadlineMs: number,
  ) {
    socket.on("data", (chunk: Buffer) => {
      this.queue.push(chunk);
      if (this.waiter !== null && this.queue.byteLength >= this.wanted) this.waiter();
    });
    // Resets are expected: the fuzzer provokes the server into dropping connections.
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.closedFlag = true;
        clearTimeout(this.deadline);
        this.waiter?.();
        resolve();
      }),
    );
    this.deadline = setTimeout(() => {
      this.timedOut = true;
      socket.destroy();
    }, deadlineMs);
  }

  static connect(socketPath: string, deadlineMs = CONNECTION_DEADLINE_MS): Promise<FuzzSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ path: socketPath });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new FuzzSocket(socket, deadlineMs));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  get pendingBytes(): number {
    return this.queue.byteLength;
  }

  /** Everything sent so far (up to the recording limit), for printing a failing case. */
  sentBytes(): { bytes: Buffer; truncated: boolean } {
    const bytes = Buffer.concat(this.recorded);
    return { bytes, truncated: bytes.length >= RECORDED_BYTES_MAX };
  }

  send(bytes: Buffer): void {
    if (this.recordedBytes < RECORDED_BYTES_MAX) {
      const kept = bytes.subarray(0, RECORDED_BYTES_MAX - this.recordedBytes);
      this.recorded.push(kept);
      this.recordedBytes += kept.length;
    }
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(bytes);
  }

  /** Sends `bytes` as separate writes cut at `cuts` (sorted offsets), so the server sees them arrive in pieces. */
  sendInPieces(bytes: Buffer, cuts: readonly number[]): void {
    let start = 0;
    for (const cut of cuts) {
      if (cut <= start || cut >= bytes.length) continue;
      this.send(bytes.subarray(start, cut));
      start = cut;
    }
    this.send(bytes.subarray(start));
  }

  /** Half-closes: the server sees end of input but may still reply. */
  end(): void {
    if (!this.socket.destroyed) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Stops taking bytes from the kernel for a while, as a slow client would. */
  pauseReading(milliseconds: number): Promise<void> {
    this.socket.pause();
    return new Promise((resolve) =>
      setTimeout(() => {
        this.socket.resume();
        resolve();
      }, milliseconds),
    );
  }

  /** The next `byteLength` bytes; throws ConnectionClosedError if the server closes (or the deadline passes) first. */
  async read(byteLength: number): Promise<Buffer> {
    if (this.queue.byteLength < byteLength) await this.waitFor(byteLength);
    return this.queue.take(byteLength);
  }

  async peekU32(): Promise<number> {
    if (this.queue.byteLength < 4) await this.waitFor(4);
    return this.queue.peek(4).readUInt32BE(0);
  }

  /** Reads and discards until the server closes; false if the deadline passed instead. */
  async drainUntilClosed(): Promise<boolean> {
    // Bounded by the deadline, which destroys the socket and so ends the wait.
    while (!this.closedFlag) {
      this.discardedBytes += this.queue.clear();
      await new Promise<void>((resolve) => {
        this.wanted = 1;
        this.waiter = resolve;
      });
      this.waiter = null;
    }
    this.discardedBytes += this.queue.clear();
    return !this.timedOut;
  }

  private async waitFor(byteLength: number): Promise<void> {
    // Each pass waits for more data or the close; the deadline bounds the total.
    while (this.queue.byteLength < byteLength) {
      if (this.closedFlag) {
        const why = this.timedOut ? "the fuzzer's deadline passed" : "the server closed the connection";
        throw new ConnectionClosedError(`${why} with ${this.queue.byteLength} of ${byteLength} expected bytes received`);
      }
      await new Promise<void>((resolve) => {
        this.wanted = byteLength;
        this.waiter = resolve;
      });
      this.waiter = null;
    }
  }
}
