// The control protocol between the `thinp` CLI and a running `thinp serve`
// (formats/control-protocol.md): over a Unix socket beside the metadata file, each message
// is a u32 big-endian length followed by that many bytes of MessagePack.

import { decode, encode } from "@msgpack/msgpack";
import type { ErrorCode } from "../errors.js";
import type { NbdServerAddress } from "../nbd/index.js";
import type { PoolDegradation } from "../thin/api.js";
import { CONTROL_MESSAGE_BYTES_MAX, CONTROL_REQUEST_TIMEOUT_MS } from "./limits.js";

export const CONTROL_PROTOCOL_VERSION = 1;
// Their home is limits.ts; the names stay here for the modules that import them from here.
export { CONTROL_MESSAGE_BYTES_MAX, CONTROL_REQUEST_TIMEOUT_MS };

export type ControlRequest =
  | { op: "hello"; version: number }
  | { op: "create"; name: string; sizeBytes: number }
  | { op: "snapshot"; origin: string; name: string; readOnly: boolean }
  | { op: "delete"; name: string; defer: boolean }
  | { op: "resize"; name: string; sizeBytes: number; force: boolean }
  | { op: "resize-pool"; sizeBytes: number }
  | { op: "list" }
  | { op: "usage"; name: string }
  | { op: "status" };

/** The answer to `hello`: who serves the pool and where its NBD exports are, for messages that name them. */
export interface HelloReply {
  version: number;
  pid: number;
  nbd: NbdServerAddress[];
  /** The served pool's space map is damaged: it is read-only until `thinp repair` (older servers omit it). */
  degraded?: PoolDegradation | null;
  /**
   * Set when the process holding the pool is not `thinp serve` but a long command that
   * answers only the read-only requests meanwhile: what it is doing, for messages
   * ("an import into 'base'").
   */
  busyWith?: string;
}

export type ControlReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: ErrorCode | "INTERNAL"; message: string } };

export function controlSocketPath(metaPath: string): string {
  return `${metaPath}.sock`;
}

export function frameMessage(message: unknown): Buffer {
  const body = encode(message);
  const frame = Buffer.alloc(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  frame.set(body, 4);
  return frame;
}

/** Accumulates socket data and yields whole messages; throws on an oversized frame. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const messages: unknown[] = [];
    while (this.pending.length >= 4) {
      const length = this.pending.readUInt32BE(0);
      if (length > CONTROL_MESSAGE_BYTES_MAX) throw new Error(`control message of ${length} bytes exceeds ${CONTROL_MESSAGE_BYTES_MAX}`);
      if (this.pending.length < 4 + length) break;
      messages.push(decode(this.pending.subarray(4, 4 + length)));
      this.pending = this.pending.subarray(4 + length);
    }
    return messages;
  }
}
