// Reads exact-length messages from a client socket. It holds at most `readAheadBytesMax`
// bytes (or one message, if larger) before pausing the socket, so a client that sends
// faster than we serve is slowed by TCP instead of filling our memory.

import type { Duplex } from "node:stream";
import { assert } from "../io/assert.js";
import { PeerClosedError, ReadingStoppedError } from "./session-errors.js";

interface PendingRead {
  byteLength: number;
  resolve: (bytes: Buffer) => void;
  reject: (error: Error) => void;
}

export class SocketReader {
  private readonly chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private pending: PendingRead | null = null;
  private endError: Error | null = null;

  constructor(
    private readonly socket: Duplex,
    private readonly readAheadBytesMax: number,
  ) {
    assert(readAheadBytesMax > 0, "read-ahead must be positive");
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.finish(new PeerClosedError("client closed its end of the connection")));
    socket.on("close", () => this.finish(new PeerClosedError("connection closed")));
  }

  /** The next `byteLength` bytes; rejects with PeerClosedError if the client leaves first. */
  readExact(byteLength: number): Promise<Buffer> {
    assert(this.pending === null, "only one read may wait at a time");
    assert(Number.isSafeInteger(byteLength) && byteLength >= 0, `read length ${byteLength}`);
    if (this.bufferedBytes >= byteLength) return Promise.resolve(this.take(byteLength));
    if (this.endError !== null) return Promise.reject(this.endError);
    return new Promise((resolve, reject) => {
      this.pending = { byteLength, resolve, reject };
      this.socket.resume();
    });
  }

  /** Reads nothing more: a waiting read fails with ReadingStoppedError, later data is dropped. */
  stop(): void {
    this.finish(new ReadingStoppedError("stopped reading from this client"));
    this.socket.pause();
  }

  private onData(chunk: Buffer): void {
    if (this.endError !== null) return;
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    const pending = this.pending;
    if (pending !== null && this.bufferedBytes >= pending.byteLength) {
      this.pending = null;
      pending.resolve(this.take(pending.byteLength));
    }
    // Keep reading while a message is incomplete; otherwise stop once enough is buffered.
    if (this.pending === null && this.bufferedBytes >= this.readAheadBytesMax) this.socket.pause();
  }

  private finish(error: Error): void {
    if (this.endError !== null) return;
    this.endError = error;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(error);
  }

  private take(byteLength: number): Buffer {
    assert(byteLength <= this.bufferedBytes, "take within buffered bytes");
    this.bufferedBytes -= byteLength;
    if (byteLength === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length >= byteLength) {
      if (first.length === byteLength) this.chunks.shift();
      else this.chunks[0] = first.subarray(byteLength);
      return first.subarray(0, byteLength);
    }
    const out = Buffer.allocUnsafe(byteLength);
    let filled = 0;
    // Bounded by the chunk count: each pass consumes at least one byte of one chunk.
    while (filled < byteLength) {
      const chunk = this.chunks[0]!;
      const wanted = byteLength - filled;
      if (chunk.length <= wanted) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        chunk.copy(out, filled, 0, wanted);
        filled += wanted;
        this.chunks[0] = chunk.subarray(wanted);
      }
    }
    return out;
  }
}
