// Sends whole messages to a client. Each message is handed to the socket in one synchronous
// run of writes, so replies to requests served concurrently never interleave their bytes.

import type { Socket } from "node:net";
import { assert } from "../io/assert.js";

export class ReplyWriter {
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly socket: Socket,
    private readonly bufferBytesMax: number,
  ) {
    assert(bufferBytesMax > 0, "reply buffer limit must be positive");
    socket.on("drain", () => this.wakeDrainWaiters());
    socket.on("close", () => this.wakeDrainWaiters());
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;

  /**
   * Queues one message (one or more frames); dropped if the connection is already gone.
   * Messages queued in the same turn of the event loop go out in one corked batch (one
   * writev), in the order they were queued, whole.
   */
  send(frames: readonly Uint8Array[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    for (const frame of frames) {
      this.pending.push(frame);
      this.pendingBytes += frame.length;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Hands every queued message to the socket now (before ending it, say). */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const frames = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.cork();
    for (const frame of frames) this.socket.write(frame);
    this.socket.uncork();
    // Waiters blocked only on bytes queued here get no 'drain' if the socket took them all.
    if (!this.congested) this.wakeDrainWaiters();
  }

  /** True while so many reply bytes wait for the client that we should stop taking requests. */
  get congested(): boolean {
    return !this.socket.destroyed && this.socket.writableLength + this.pendingBytes >= this.bufferBytesMax;
  }

  /** Resolves once the socket has flushed its queue (or closed). */
  whenDrained(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }
}
