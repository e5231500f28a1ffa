// Encoders and decoders for the transmission phase: request headers, simple replies and
// structured reply chunks.

import { assert } from "../io/assert.js";
import { MESSAGE_BYTES_MAX } from "./limits.js";
import {
  BLOCK_STATUS_DESCRIPTOR_BYTES,
  LENGTH_FIELD_MAX,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  REQUEST_HEADER,
  REQUEST_HEADER_BYTES,
  SIMPLE_REPLY_HEADER,
  SIMPLE_REPLY_HEADER_BYTES,
  STRUCTURED_REPLY_HEADER,
  STRUCTURED_REPLY_HEADER_BYTES,
  type NbdErrno,
} from "./protocol.js";
import { encodeTruncatedString } from "./wire-strings.js";

export interface RequestHeader {
  magic: number;
  commandFlags: number;
  command: number;
  /** Opaque to us; echoed in every reply to the request. */
  cookie: bigint;
  /** Byte offset, or NaN when the 64-bit field holds more than 2^53 (past any export's end). */
  offset: number;
  byteLength: number;
}

const TWO_POW_53 = 2n ** 53n;

export function decodeRequestHeader(bytes: Buffer): RequestHeader {
  assert(bytes.length === REQUEST_HEADER_BYTES, "request header length");
  const offset = bytes.readBigUInt64BE(REQUEST_HEADER.offset.offset);
  return {
    magic: bytes.readUInt32BE(REQUEST_HEADER.magic.offset),
    commandFlags: bytes.readUInt16BE(REQUEST_HEADER.commandFlags.offset),
    command: bytes.readUInt16BE(REQUEST_HEADER.command.offset),
    cookie: bytes.readBigUInt64BE(REQUEST_HEADER.cookie.offset),
    offset: offset < TWO_POW_53 ? Number(offset) : Number.NaN,
    byteLength: bytes.readUInt32BE(REQUEST_HEADER.byteLength.offset),
  };
}

export function encodeSimpleReply(cookie: bigint, errno: NbdErrno | 0): Buffer {
  const out = Buffer.alloc(SIMPLE_REPLY_HEADER_BYTES);
  out.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, SIMPLE_REPLY_HEADER.magic.offset);
  out.writeUInt32BE(errno, SIMPLE_REPLY_HEADER.error.offset);
  out.writeBigUInt64BE(cookie, SIMPLE_REPLY_HEADER.cookie.offset);
  return out;
}

function chunkHeader(cookie: bigint, done: boolean, replyType: number, payloadBytes: number, extraBytes = 0): Buffer {
  assert(payloadBytes <= LENGTH_FIELD_MAX, `chunk payload of ${payloadBytes} bytes`);
  const out = Buffer.alloc(STRUCTURED_REPLY_HEADER_BYTES + extraBytes);
  out.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, STRUCTURED_REPLY_HEADER.magic.offset);
  out.writeUInt16BE(done ? NBD_REPLY_FLAG_DONE : 0, STRUCTURED_REPLY_HEADER.flags.offset);
  out.writeUInt16BE(replyType, STRUCTURED_REPLY_HEADER.replyType.offset);
  out.writeBigUInt64BE(cookie, STRUCTURED_REPLY_HEADER.cookie.offset);
  out.writeUInt32BE(payloadBytes, STRUCTURED_REPLY_HEADER.payloadBytes.offset);
  return out;
}

/** The final chunk of a structured reply that has nothing more to say. */
export function encodeNoneChunk(cookie: bigint): Buffer {
  return chunkHeader(cookie, true, NBD_REPLY_TYPE_NONE, 0);
}

/** Two frames, header+offset then the data itself, so the data is never copied. */
export function encodeDataChunk(cookie: bigint, done: boolean, offset: number, data: Uint8Array): Buffer[] {
  assert(data.length > 0, "a data chunk describes at least one byte");
  const header = chunkHeader(cookie, done, NBD_REPLY_TYPE_OFFSET_DATA, 8 + data.length, 8);
  header.writeBigUInt64BE(BigInt(offset), STRUCTURED_REPLY_HEADER_BYTES);
  return [header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
}

export function encodeHoleChunk(cookie: bigint, done: boolean, offset: number, holeBytes: number): Buffer {
  assert(holeBytes > 0 && holeBytes <= LENGTH_FIELD_MAX, `hole of ${holeBytes} bytes`);
  const out = chunkHeader(cookie, done, NBD_REPLY_TYPE_OFFSET_HOLE, 12, 12);
  out.writeBigUInt64BE(BigInt(offset), STRUCTURED_REPLY_HEADER_BYTES);
  out.writeUInt32BE(holeBytes, STRUCTURED_REPLY_HEADER_BYTES + 8);
  return out;
}

export interface StatusDescriptor {
  byteLength: number;
  flags: number;
}

export function encodeBlockStatusChunk(cookie: bigint, done: boolean, contextId: number, descriptors: readonly StatusDescriptor[]): Buffer {
  assert(descriptors.length > 0, "block status needs at least one descriptor");
  const payloadBytes = 4 + BLOCK_STATUS_DESCRIPTOR_BYTES * descriptors.length;
  const out = chunkHeader(cookie, done, NBD_REPLY_TYPE_BLOCK_STATUS, payloadBytes, payloadBytes);
  let cursor = STRUCTURED_REPLY_HEADER_BYTES;
  out.writeUInt32BE(contextId, cursor);
  cursor += 4;
  for (const descriptor of descriptors) {
    assert(descriptor.byteLength > 0 && descriptor.byteLength <= LENGTH_FIELD_MAX, `descriptor of ${descriptor.byteLength} bytes`);
    out.writeUInt32BE(descriptor.byteLength, cursor);
    out.writeUInt32BE(descriptor.flags, cursor + 4);
    cursor += BLOCK_STATUS_DESCRIPTOR_BYTES;
  }
  return out;
}

/** NBD_REPLY_TYPE_ERROR, always final: error, message length, message. */
export function encodeErrorChunk(cookie: bigint, errno: NbdErrno, message: string): Buffer {
  const messageBytes = encodeTruncatedString(message, MESSAGE_BYTES_MAX);
  const out = chunkHeader(cookie, true, NBD_REPLY_TYPE_ERROR, 6 + messageBytes.length, 6 + messageBytes.length);
  out.writeUInt32BE(errno, STRUCTURED_REPLY_HEADER_BYTES);
  out.writeUInt16BE(messageBytes.length, STRUCTURED_REPLY_HEADER_BYTES + 4);
  out.set(messageBytes, STRUCTURED_REPLY_HEADER_BYTES + 6);
  return out;
}

/**
 * The errno a reply carries, 0 for success. Every error reply is one frame: a simple reply
 * with its error field set, or one NBD_REPLY_TYPE_ERROR chunk (see errorReply).
 */
export function replyErrno(frames: readonly Uint8Array[]): number {
  const first = frames[0];
  if (frames.length !== 1 || first === undefined) return 0;
  const view = new DataView(first.buffer, first.byteOffset, first.length);
  if (first.length === SIMPLE_REPLY_HEADER_BYTES && view.getUint32(SIMPLE_REPLY_HEADER.magic.offset) === NBD_SIMPLE_REPLY_MAGIC) {
    return view.getUint32(SIMPLE_REPLY_HEADER.error.offset);
  }
  const isErrorChunk =
    first.length >= STRUCTURED_REPLY_HEADER_BYTES + 4 &&
    view.getUint32(STRUCTURED_REPLY_HEADER.magic.offset) === NBD_STRUCTURED_REPLY_MAGIC &&
    view.getUint16(STRUCTURED_REPLY_HEADER.replyType.offset) === NBD_REPLY_TYPE_ERROR;
  return isErrorChunk ? view.getUint32(STRUCTURED_REPLY_HEADER_BYTES) : 0;
}
