import { assert } from "./assert.js";

/**
 * Bytes received in chunks, taken out in messages of exact lengths. A message that lies
 * within one chunk is returned as a view of it; one that spans chunks is copied once.
 */
export class ChunkQueue {
  private readonly chunks: Buffer[] = [];
  private queuedBytes = 0;

  get byteLength(): number {
    return this.queuedBytes;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.queuedBytes += chunk.length;
  }

  take(byteLength: number): Buffer {
    assert(byteLength >= 0 && byteLength <= this.queuedBytes, `take ${byteLength} of ${this.queuedBytes} queued bytes`);
    this.queuedBytes -= byteLength;
    if (byteLength === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    assert(first !== undefined, "bytes are queued, so a chunk is");
    if (first.length >= byteLength) {
      if (first.length === byteLength) this.chunks.shift();
      else this.chunks[0] = first.subarray(byteLength);
      return first.subarray(0, byteLength);
    }
    const out = Buffer.allocUnsafe(byteLength);
    let filled = 0;
    // Each pass empties a chunk or finishes: bounded by the chunk count.
    while (filled < byteLength) {
      const chunk = this.chunks[0];
      assert(chunk !== undefined, "bytes still wanted are queued, so a chunk is");
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

  /** The first `byteLength` queued bytes, left in the queue. */
  peek(byteLength: number): Buffer {
    assert(byteLength <= this.queuedBytes, `peek ${byteLength} of ${this.queuedBytes} queued bytes`);
    const first = this.chunks[0];
    if (first === undefined) return Buffer.alloc(0); // nothing queued: only a peek of 0 bytes gets here
    return first.length >= byteLength ? first.subarray(0, byteLength) : Buffer.concat(this.chunks).subarray(0, byteLength);
  }

  /** Drops everything queued; returns how many bytes that was. */
  clear(): number {
    const dropped = this.queuedBytes;
    this.chunks.length = 0;
    this.queuedBytes = 0;
    return dropped;
  }
}
