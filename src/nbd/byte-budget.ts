// The bytes of request payloads and replies one server holds for all of its connections
// together: a counting semaphore of bytes, taken first come, first served.
//
// Lifecycle of one reservation:
//   1. acquire(n): granted at once if nobody waits and n bytes are free; otherwise queued
//      behind the connections already waiting, even if n would fit now, so a large request
//      is never passed over forever by a stream of small ones;
//   2. while held, the bytes count in inUseBytes, which never exceeds capacityBytes;
//   3. release(n): the bytes return, and the waiters at the head are granted in order while
//      they fit.
// A wait ends either granted (true) or cancelled through its AbortSignal (false), in which
// case nothing is held. Every n must fit the capacity, so the head waiter is always granted
// once the bytes held by others come back: nobody waits for bytes that cannot exist.

import { assert } from "../io/assert.js";

interface Waiter {
  byteLength: number;
  grant: () => void;
}

export interface ByteBudgetReport {
  capacityBytes: number;
  /** Held right now. */
  inUseBytes: number;
  /** The most held at once since the budget was made. */
  peakBytes: number;
  /** Reservations waiting for bytes; each connection has at most one. */
  waiting: number;
  /** Reservations that had to wait, since the budget was made. */
  waitedCount: number;
}

export class ByteBudget {
  private inUse = 0;
  private peak = 0;
  private waitedTotal = 0;
  /** Oldest first. Bounded by the connections, each of which waits for one request at a time. */
  private readonly waiters: Waiter[] = [];

  constructor(readonly capacityBytes: number) {
    assert(Number.isSafeInteger(capacityBytes) && capacityBytes > 0, `byte budget ${capacityBytes}`);
  }

  /** Resolves true once `byteLength` bytes are held for the caller, or false if `signal` aborts first (nothing held). */
  acquire(byteLength: number, signal: AbortSignal): Promise<boolean> {
    assert(Number.isSafeInteger(byteLength) && byteLength > 0, `reservation of ${byteLength} bytes`);
    assert(byteLength <= this.capacityBytes, `reservation of ${byteLength} bytes exceeds the budget of ${this.capacityBytes}`);
    if (signal.aborted) return Promise.resolve(false);
    if (this.waiters.length === 0 && this.fits(byteLength)) {
      this.take(byteLength);
      return Promise.resolve(true);
    }
    this.waitedTotal++;
    return new Promise((resolve) => {
      const onAbort = () => {
        const index = this.waiters.indexOf(waiter);
        assert(index >= 0, "an aborted reservation is still waiting");
        this.waiters.splice(index, 1);
        // The one that left may have been what held back smaller reservations behind it.
        this.grantWaiters();
        resolve(false);
      };
      const waiter: Waiter = {
        byteLength,
        grant: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(true);
        },
      };
      this.waiters.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Whether acquire(byteLength) would wait now. */
  wouldWait(byteLength: number): boolean {
    return this.waiters.length > 0 || !this.fits(byteLength);
  }

  release(byteLength: number): void {
    assert(
      Number.isSafeInteger(byteLength) && byteLength > 0 && byteLength <= this.inUse,
      `release of ${byteLength} of ${this.inUse} bytes`,
    );
    this.inUse -= byteLength;
    this.grantWaiters();
  }

  report(): ByteBudgetReport {
    return {
      capacityBytes: this.capacityBytes,
      inUseBytes: this.inUse,
      peakBytes: this.peak,
      waiting: this.waiters.length,
      waitedCount: this.waitedTotal,
    };
  }

  private fits(byteLength: number): boolean {
    return this.inUse + byteLength <= this.capacityBytes;
  }

  private take(byteLength: number): void {
    this.inUse += byteLength;
    assert(this.inUse <= this.capacityBytes, `${this.inUse} bytes held of a budget of ${this.capacityBytes}`);
    this.peak = Math.max(this.peak, this.inUse);
  }

  private grantWaiters(): void {
    // Each pass grants and removes one waiter: bounded by the queue's length.
    for (;;) {
      const head = this.waiters[0];
      if (head === undefined || !this.fits(head.byteLength)) return;
      this.waiters.shift();
      this.take(head.byteLength);
      head.grant();
    }
  }
}
