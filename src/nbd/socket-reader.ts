// Reads exact-length messages from a client socket. It holds at most `readAheadBytesMax`
// bytes (or one message, if larger) before pausing the socket, so a client that sends
// faster than we serve is slowed by TCP instead of filling our memory. A message that has
// not arrived yet is copied into its own buffer as it comes, so a 32 MiB WRITE payload costs
// 32 MiB, not its chunks and then a copy of them; and each chunk copied whole is freed at
// once (payload-memory.ts), so this reader must be the socket's only reader.

import type { Duplex } from "node:stream";
import { assert } from "../io/assert.js";
import { ChunkQueue } from "../io/chunk-queue.js";
import { FREED_PAYLOAD_BYTES_MIN } from "./limits.js";
import { freeSocketChunk } from "./payload-memory.js";
import { PeerClosedError, ReadingStoppedError } from "./session-errors.js";

interface PendingRead {
  /** The message being filled; its whole length is what was asked for. */
  target: Buffer;
  filledBytes: number;
  resolve: (bytes: Buffer) => void;
  reject: (error: Error) => void;
}

export class SocketReader {
  private readonly queue = new ChunkQueue();
  private pending: PendingRead | null = null;
  private endError: Error | null = null;
  private readonly onDataListener = (chunk: Buffer): void => this.onData(chunk);
  private readonly onEndListener = (): void => this.finish(new PeerClosedError("client closed its end of the connection"));
  private readonly onCloseListener = (): void => this.finish(new PeerClosedError("connection closed"));

  constructor(
    private readonly socket: Duplex,
    private readonly readAheadBytesMax: number,
  ) {
    assert(readAheadBytesMax > 0, "read-ahead must be positive");
    socket.on("data", this.onDataListener);
    socket.on("end", this.onEndListener);
    socket.on("close", this.onCloseListener);
  }

  /** The next `byteLength` bytes; rejects with PeerClosedError if the client leaves first. */
  readExact(byteLength: number): Promise<Buffer> {
    assert(this.pending === null, "only one read may wait at a time");
    assert(Number.isSafeInteger(byteLength) && byteLength >= 0, `read length ${byteLength}`);
    if (this.queue.byteLength >= byteLength) return Promise.resolve(this.queue.take(byteLength));
    if (this.endError !== null) return Promise.reject(this.endError);
    // A payload large enough to be freed gets memory of its own, never a slice of Node's
    // shared pool, so that payload-memory.ts may free it.
    const target = byteLength >= FREED_PAYLOAD_BYTES_MIN ? Buffer.allocUnsafeSlow(byteLength) : Buffer.allocUnsafe(byteLength);
    const queuedBytes = this.queue.byteLength;
    target.set(this.queue.take(queuedBytes), 0);
    return new Promise((resolve, reject) => {
      this.pending = { target, filledBytes: queuedBytes, resolve, reject };
      this.socket.resume();
    });
  }

  /** Reads nothing more: a waiting read fails with ReadingStoppedError, later data is dropped. */
  stop(): void {
    this.finish(new ReadingStoppedError("stopped reading from this client"));
    this.socket.pause();
  }

  /**
   * Lets go of the socket so that another reader (TLS) can take it over: pauses it, stops
   * listening, and returns how many bytes were read ahead and are now dropped. Bytes that
   * arrive later stay in the socket for its next reader.
   */
  detach(): number {
    assert(this.pending === null, "no read waits when the socket changes hands");
    this.socket.pause();
    this.socket.off("data", this.onDataListener);
    this.socket.off("end", this.onEndListener);
    this.socket.off("close", this.onCloseListener);
    const droppedBytes = this.queue.byteLength;
    this.queue.take(droppedBytes);
    this.finish(new ReadingStoppedError("the socket was handed to another reader"));
    return droppedBytes;
  }

  private onData(chunk: Buffer): void {
    if (this.endError !== null) return;
    const pending = this.pending;
    if (pending === null) this.queue.push(chunk);
    else {
      // Nothing is queued while a read waits: it took the queue when it started.
      const wantedBytes = pending.target.length - pending.filledBytes;
      const usedBytes = Math.min(wantedBytes, chunk.length);
      pending.target.set(chunk.subarray(0, usedBytes), pending.filledBytes);
      pending.filledBytes += usedBytes;
      if (usedBytes < chunk.length) this.queue.push(chunk.subarray(usedBytes));
      else freeSocketChunk(chunk);
      if (pending.filledBytes === pending.target.length) {
        this.pending = null;
        pending.resolve(pending.target);
      }
    }
    // Keep reading while a message is incomplete; otherwise stop once enough is buffered.
    if (this.pending === null && this.queue.byteLength >= this.readAheadBytesMax) this.socket.pause();
  }

  private finish(error: Error): void {
    if (this.endError !== null) return;
    this.endError = error;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(error);
  }
}
