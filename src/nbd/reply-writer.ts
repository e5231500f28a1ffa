// Sends whole messages to a client. Each message is handed to the socket in one synchronous
// run of writes, so replies to requests served concurrently never interleave their bytes.
// A message may say when its bytes have left our memory (the kernel took them, or the
// connection is gone), which is when the in-flight budgets get them back.

import type { Socket } from "node:net";
import { assert } from "../io/assert.js";

interface QueuedMessage {
  frames: readonly Uint8Array[];
  onWritten: (() => void) | null;
}

export class ReplyWriter {
  private drainWaiters: (() => void)[] = [];
  /** onWritten callbacks of messages not yet taken by the kernel; all run when the socket closes, if not before. */
  private readonly unwritten = new Set<() => void>();

  constructor(
    private readonly socket: Socket,
    private readonly bufferBytesMax: number,
  ) {
    assert(bufferBytesMax > 0, "reply buffer limit must be positive");
    socket.on("drain", this.onDrain);
    socket.on("close", this.onClose);
  }

  private readonly onDrain = (): void => this.wakeDrainWaiters();
  private readonly onClose = (): void => {
    this.wakeDrainWaiters();
    // Node calls a write's callback when the socket is destroyed too; this makes sure no
    // message's bytes stay charged to a budget once its connection is gone.
    for (const written of [...this.unwritten]) written();
  };

  /** Lets go of the socket (for TLS to take it over); everything sent must have been written. */
  detach(): void {
    assert(this.pending.length === 0 && this.unwritten.size === 0, "every reply is written before the socket changes hands");
    this.socket.off("drain", this.onDrain);
    this.socket.off("close", this.onClose);
    this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  private pending: QueuedMessage[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;

  /**
   * Queues one message (one or more frames); dropped if the connection is already gone.
   * Messages queued in the same turn of the event loop go out in one corked batch (one
   * writev), in the order they were queued, whole. `onWritten` runs once, when the socket
   * has handed the message to the kernel or the message was dropped.
   */
  send(frames: readonly Uint8Array[], onWritten?: () => void): void {
    const written = onWritten === undefined ? null : this.once(onWritten);
    if (this.socket.destroyed || this.socket.writableEnded) {
      written?.();
      return;
    }
    this.pending.push({ frames, onWritten: written });
    for (const frame of frames) this.pendingBytes += frame.length;
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Hands every queued message to the socket now (before ending it, say). */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const messages = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.socket.destroyed || this.socket.writableEnded) {
      for (const message of messages) message.onWritten?.();
      return;
    }
    this.socket.cork();
    for (const { frames, onWritten } of messages) {
      frames.forEach((frame, index) => {
        // Writes complete in order, so the last frame's callback means the whole message is out.
        const last = index === frames.length - 1;
        this.socket.write(frame, last && onWritten !== null ? () => onWritten() : undefined);
      });
      if (frames.length === 0) onWritten?.();
    }
    this.socket.uncork();
    // Waiters blocked only on bytes queued here get no 'drain' if the socket took them all.
    if (!this.congested) this.wakeDrainWaiters();
  }

  /** True while so many reply bytes wait for the client that we should stop taking requests. */
  get congested(): boolean {
    return !this.socket.destroyed && this.socket.writableLength + this.pendingBytes >= this.bufferBytesMax;
  }

  /** `callback`, run at most once, and remembered until then so that closing the socket runs it. */
  private once(callback: () => void): () => void {
    const written = () => {
      if (!this.unwritten.delete(written)) return;
      callback();
    };
    this.unwritten.add(written);
    return written;
  }

  /** Resolves once the socket has flushed its queue (or closed). */
  whenDrained(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }
}
