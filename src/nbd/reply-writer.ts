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
    const wakeAll = () => {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const wake of waiters) wake();
    };
    socket.on("drain", wakeAll);
    socket.on("close", wakeAll);
  }

  /** Queues one message (one or more frames); dropped if the connection is already gone. */
  send(frames: readonly Uint8Array[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.cork();
    for (const frame of frames) this.socket.write(frame);
    this.socket.uncork();
  }

  /** True while so many reply bytes wait for the client that we should stop taking requests. */
  get congested(): boolean {
    return !this.socket.destroyed && this.socket.writableLength >= this.bufferBytesMax;
  }

  /** Resolves once the socket has flushed its queue (or closed). */
  whenDrained(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }
}
