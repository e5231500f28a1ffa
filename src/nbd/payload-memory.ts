// Gives a WRITE payload's memory back as soon as the engine is done with it.
//
// V8 frees an ArrayBuffer's memory only when a garbage collection finds the buffer
// unreachable. A payload that lives through a slow write has been promoted to the old
// generation by then, and old-generation collections are driven by JavaScript allocation,
// of which an I/O-bound server does little: with 64 clients each sending 32 MiB WRITEs,
// the in-flight budget held 256 MiB while dead payloads waiting for a collection took the
// process past 2 GiB (bench/memory/connection-memory.ts). So the server frees a large
// payload itself once the engine has written it, by transferring its ArrayBuffer in a
// message to a closed port: the transfer detaches the buffer and moves its memory into the
// message, which a closed port drops, freeing the memory at once. (That is what
// ArrayBuffer.prototype.transfer(0) does in newer Node; Node 20 lacks it. structuredClone
// with a transfer would move the memory to a new ArrayBuffer, freed only by a later
// collection.)
//
// Freeing is safe only once nothing can still use the memory: a native write still reading
// it would read freed memory, and anything holding the buffer would see it empty. So only
// a buffer the server allocated for this one message is freed, and only when its WRITE
// was refused before the engine saw it, or succeeded: VolumeHandle.write has then finished
// every write of `bytes` and keeps no reference to them (the engine copies what it
// keeps). A failed WRITE's payload is left to the collector, since the engine answers at
// the first failure while other writes of it may still be running.

import { MessageChannel, type MessagePort } from "node:worker_threads";
import { assert } from "../io/assert.js";
import { FREED_PAYLOAD_BYTES_MIN } from "./limits.js";

/** Never entangled with anything again: a message posted here is dropped, with whatever it carried. */
let discardPort: MessagePort | null = null;

/** Made on first use, so a process that never frees a buffer never opens a port. */
function discard(): MessagePort {
  if (discardPort === null) {
    discardPort = new MessageChannel().port1;
    discardPort.close();
  }
  return discardPort;
}

/**
 * Frees a chunk the socket delivered once its bytes have been copied into a message: it has
 * done its work, and left to the collector the chunks of a stream of large payloads pile up
 * as fast as the payloads did. Node gives every socket read a buffer of its own; one that
 * is not is left alone.
 */
export function freeSocketChunk(chunk: Buffer): void {
  const memory = chunk.buffer;
  if (!(memory instanceof ArrayBuffer) || chunk.byteOffset !== 0 || chunk.length !== memory.byteLength) return;
  discard().postMessage(null, [memory]);
}

/** Frees `payload`'s memory now if it is large; it must not be used afterwards. */
export function freePayload(payload: Buffer): void {
  if (payload.length < FREED_PAYLOAD_BYTES_MIN) return;
  const memory = payload.buffer;
  // SocketReader gives a message this large a buffer of its own (it is larger than the
  // read-ahead, so it is always read into one); a view of memory shared with other messages
  // would take them with it.
  assert(
    memory instanceof ArrayBuffer && payload.byteOffset === 0 && payload.length === memory.byteLength,
    `a ${payload.length}-byte payload owns its ${memory.byteLength}-byte buffer`,
  );
  discard().postMessage(null, [memory]);
  assert(payload.length === 0, "the payload's memory was handed back");
}

/**
 * Frees the data of a READ's reply once the kernel has taken it (or the socket closed):
 * the engine reads into a buffer of the request's own, which nothing else references once
 * the reply is written, and a stream of large reads piles those up as WRITEs did their
 * payloads. Only memory of FREED_PAYLOAD_BYTES_MIN or more is freed; the small headers and
 * chunks beside it, which may share a slab with other messages, are left alone.
 */
export function freeReadReply(frames: readonly Uint8Array[]): void {
  let freed: ArrayBufferLike | null = null;
  for (const frame of frames) {
    const memory = frame.buffer;
    if (memory === freed || !(memory instanceof ArrayBuffer) || memory.byteLength < FREED_PAYLOAD_BYTES_MIN) continue;
    discard().postMessage(null, [memory]);
    freed = memory;
  }
}
