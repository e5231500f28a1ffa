// The control protocol between the `thinp` CLI and a running `thinp serve`
// (formats/control-protocol.md): over a Unix socket beside the metadata file, each message
// is a u32 big-endian length followed by that many bytes of MessagePack.

import { decode, encode } from "@msgpack/msgpack";
import type { ErrorCode } from "../errors.js";
import type { NbdServerAddress } from "../nbd/index.js";
import type { DiffRange, PoolDegradation } from "../thin/api.js";
import type { DumpedDevice } from "../thin/dm-thin-dump.js";
import type { ReceiveSummary } from "../thin/receive.js";
import type { SendHeader } from "../thin/send-stream.js";
import type { SendTotals } from "../thin/send.js";
import { CONTROL_MESSAGE_BYTES_MAX, CONTROL_REPLY_BYTES_MAX, CONTROL_REQUEST_TIMEOUT_MS } from "./limits.js";

export const CONTROL_PROTOCOL_VERSION = 1;
// Their home is limits.ts; the names stay here for the modules that import them from here.
export { CONTROL_MESSAGE_BYTES_MAX, CONTROL_REPLY_BYTES_MAX, CONTROL_REQUEST_TIMEOUT_MS };

export type ControlRequest =
  | { op: "hello"; version: number }
  | { op: "create"; name: string; sizeBytes: number }
  | { op: "snapshot"; origin: string; name: string; readOnly: boolean }
  | { op: "delete"; name: string; defer: boolean }
  | { op: "resize"; name: string; sizeBytes: number; force: boolean }
  | { op: "resize-pool"; sizeBytes: number }
  | { op: "list" }
  | { op: "usage"; name: string }
  | { op: "status" }
  // History while served (live-history.ts): sessions a connection opens, reads and ends.
  | { op: "diff-begin"; from: string; to: string; same: boolean }
  | { op: "diff-read"; id: number }
  | { op: "send-begin"; volume: string; from: string | null; resumeToken: string | null }
  | { op: "send-read"; id: number; maxBytes: number }
  | { op: "receive-begin"; name: string; resumable: boolean; resume: boolean }
  | { op: "receive-data"; id: number; bytes: Uint8Array }
  | { op: "receive-end"; id: number }
  | { op: "receive-token"; name: string }
  | { op: "receive-abort"; name: string }
  | { op: "dump-begin" }
  | { op: "dump-read"; id: number; maxBytes: number }
  | { op: "end"; id: number };

/** The answer to every `*-begin`: the session's id on this connection. */
export interface SessionReply {
  id: number;
}

/** A page of a diff: `done` once the last range has been sent. */
export interface DiffReadReply {
  ranges: DiffRange[];
  done: boolean;
}

/** The next bytes of a send stream; with `done`, the stream is whole and `totals` counts it. */
export interface SendReadReply {
  bytes: Uint8Array;
  done: boolean;
  totals: SendTotals | null;
}

/** The next text of a dump; with `done`, `devices` says which volume each dev_id is. */
export interface DumpReadReply {
  text: string;
  done: boolean;
  devices: DumpedDevice[] | null;
}

/** The answer to `receive-end`: the stream was whole and the volume is published (and exported). */
export type ReceiveEndReply = ReceiveSummary & { header: SendHeader };

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

export type ControlReply = { ok: true; result: unknown } | { ok: false; error: { code: ErrorCode | "INTERNAL"; message: string } };

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

/**
 * Accumulates socket data and yields whole messages; throws on a frame over `messageBytesMax`.
 * Chunks are joined once a frame is whole, so a large reply costs one copy, not one per chunk.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly messageBytesMax: number = CONTROL_MESSAGE_BYTES_MAX) {}

  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.pendingBytes += chunk.length;
    const messages: unknown[] = [];
    while (this.pendingBytes >= 4) {
      const head = this.joined(4);
      const length = head.readUInt32BE(0);
      if (length > this.messageBytesMax) throw new Error(`control message of ${length} bytes exceeds ${this.messageBytesMax}`);
      if (this.pendingBytes < 4 + length) break;
      const frame = this.joined(4 + length);
      messages.push(decode(frame.subarray(4, 4 + length)));
      this.take(4 + length);
    }
    return messages;
  }

  /** The first chunk, made at least `byteCount` long by joining what follows it. */
  private joined(byteCount: number): Buffer {
    let first = this.chunks[0];
    if (first === undefined || first.length < byteCount) {
      first = Buffer.concat(this.chunks);
      this.chunks = [first];
    }
    return first;
  }

  private take(byteCount: number): void {
    const first = this.joined(byteCount);
    const rest = first.subarray(byteCount);
    this.chunks = rest.length > 0 ? [rest, ...this.chunks.slice(1)] : this.chunks.slice(1);
    this.pendingBytes -= byteCount;
  }
}
