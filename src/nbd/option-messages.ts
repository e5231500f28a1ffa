// Encoders and decoders for the handshake: the greeting, option payloads and option replies.

import { assert } from "../io/assert.js";
import {
  EXPORT_NAME_PADDING_BYTES,
  GREETING,
  GREETING_BYTES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REP_INFO,
  OPTION_HEADER,
  OPTION_HEADER_BYTES,
  OPTION_REPLY_HEADER,
  OPTION_REPLY_HEADER_BYTES,
} from "./protocol.js";
import { MESSAGE_BYTES_MAX } from "./limits.js";
import { decodeWireString, encodeTruncatedString } from "./wire-strings.js";

// Its home is protocol.ts; the name stays here for the modules that import it from here.
export { OPTION_HEADER_BYTES };

export function encodeGreeting(): Buffer {
  const out = Buffer.alloc(GREETING_BYTES);
  out.writeBigUInt64BE(NBD_INIT_MAGIC, GREETING.initMagic.offset);
  out.writeBigUInt64BE(NBD_OPTS_MAGIC, GREETING.optsMagic.offset);
  out.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, GREETING.handshakeFlags.offset);
  return out;
}

export interface OptionHeader {
  magic: bigint;
  option: number;
  dataByteLength: number;
}

export function decodeOptionHeader(bytes: Buffer): OptionHeader {
  assert(bytes.length === OPTION_HEADER_BYTES, "option header length");
  return {
    magic: bytes.readBigUInt64BE(OPTION_HEADER.magic.offset),
    option: bytes.readUInt32BE(OPTION_HEADER.option.offset),
    dataByteLength: bytes.readUInt32BE(OPTION_HEADER.dataByteLength.offset),
  };
}

export function encodeOptionReply(option: number, replyType: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(OPTION_REPLY_HEADER_BYTES + data.length);
  out.writeBigUInt64BE(NBD_REP_MAGIC, OPTION_REPLY_HEADER.magic.offset);
  out.writeUInt32BE(option, OPTION_REPLY_HEADER.option.offset);
  out.writeUInt32BE(replyType, OPTION_REPLY_HEADER.replyType.offset);
  out.writeUInt32BE(data.length, OPTION_REPLY_HEADER.dataByteLength.offset);
  out.set(data, OPTION_REPLY_HEADER_BYTES);
  return out;
}

/** An error reply; the message is for a human and is cut to the protocol's string limit. */
export function encodeOptionError(option: number, errorType: number, message: string): Buffer {
  assert(errorType >= 0x8000_0000, "option error types have bit 31 set");
  return encodeOptionReply(option, errorType, encodeTruncatedString(message, MESSAGE_BYTES_MAX));
}

/** NBD_REP_SERVER: name length, name, then the description as free text. */
export function encodeServerReply(option: number, name: string, description: string): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const descriptionBytes = encodeTruncatedString(description, MESSAGE_BYTES_MAX);
  const data = Buffer.alloc(4 + nameBytes.length + descriptionBytes.length);
  data.writeUInt32BE(nameBytes.length, 0);
  data.set(nameBytes, 4);
  data.set(descriptionBytes, 4 + nameBytes.length);
  return encodeOptionReply(option, NBD_REP_SERVER, data);
}

export function encodeInfoExport(option: number, exportBytes: number, transmissionFlags: number): Buffer {
  const data = Buffer.alloc(12);
  data.writeUInt16BE(NBD_INFO_EXPORT, 0);
  data.writeBigUInt64BE(BigInt(exportBytes), 2);
  data.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

export function encodeInfoText(option: number, infoType: typeof NBD_INFO_NAME | typeof NBD_INFO_DESCRIPTION, text: string): Buffer {
  const textBytes = encodeTruncatedString(text, MESSAGE_BYTES_MAX);
  const data = Buffer.alloc(2 + textBytes.length);
  data.writeUInt16BE(infoType, 0);
  data.set(textBytes, 2);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

export function encodeInfoBlockSize(option: number, minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const data = Buffer.alloc(14);
  data.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  data.writeUInt32BE(minimumBytes, 2);
  data.writeUInt32BE(preferredBytes, 6);
  data.writeUInt32BE(maximumBytes, 10);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

export function encodeMetaContextReply(option: number, contextId: number, contextName: string): Buffer {
  const nameBytes = Buffer.from(contextName, "utf8");
  const data = Buffer.alloc(4 + nameBytes.length);
  data.writeUInt32BE(contextId, 0);
  data.set(nameBytes, 4);
  return encodeOptionReply(option, NBD_REP_META_CONTEXT, data);
}

/** The reply that ends an NBD_OPT_EXPORT_NAME: size, flags, and the legacy zero padding. */
export function encodeExportNameReply(exportBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const out = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_PADDING_BYTES));
  out.writeBigUInt64BE(BigInt(exportBytes), 0);
  out.writeUInt16BE(transmissionFlags, 8);
  return out;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

export interface InfoRequest {
  exportName: string;
  infoTypes: number[];
}

/** NBD_OPT_INFO / NBD_OPT_GO: name length, name, request count, 16-bit requests. */
export function decodeInfoRequest(data: Buffer): Decoded<InfoRequest> {
  if (data.length < 6) return { ok: false, reason: `option data of ${data.length} bytes is too short` };
  const nameByteLength = data.readUInt32BE(0);
  if (nameByteLength > data.length - 6) return { ok: false, reason: "export name runs past the option data" };
  const name = decodeWireString(data.subarray(4, 4 + nameByteLength));
  if (!name.ok) return { ok: false, reason: `export name: ${name.reason}` };
  const requestCount = data.readUInt16BE(4 + nameByteLength);
  const listStart = 6 + nameByteLength;
  if (data.length !== listStart + 2 * requestCount) {
    return { ok: false, reason: `${requestCount} information requests do not fill the option data` };
  }
  const infoTypes: number[] = [];
  for (let i = 0; i < requestCount; i++) infoTypes.push(data.readUInt16BE(listStart + 2 * i));
  return { ok: true, value: { exportName: name.value, infoTypes } };
}

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: name, query count, queries. */
export function decodeMetaContextRequest(data: Buffer): Decoded<MetaContextRequest> {
  let cursor = 0;
  const readString = (what: string): Decoded<string> => {
    if (data.length - cursor < 4) return { ok: false, reason: `${what} length runs past the option data` };
    const byteLength = data.readUInt32BE(cursor);
    cursor += 4;
    if (byteLength > data.length - cursor) return { ok: false, reason: `${what} runs past the option data` };
    const decoded = decodeWireString(data.subarray(cursor, cursor + byteLength));
    cursor += byteLength;
    return decoded.ok ? decoded : { ok: false, reason: `${what}: ${decoded.reason}` };
  };
  const name = readString("export name");
  if (!name.ok) return name;
  if (data.length - cursor < 4) return { ok: false, reason: "query count runs past the option data" };
  const queryCount = data.readUInt32BE(cursor);
  cursor += 4;
  // Each query takes at least its 4-byte length, so the data length bounds the count.
  if (queryCount > (data.length - cursor) / 4) return { ok: false, reason: `${queryCount} queries cannot fit the option data` };
  const queries: string[] = [];
  for (let i = 0; i < queryCount; i++) {
    const query = readString(`query ${i}`);
    if (!query.ok) return query;
    queries.push(query.value);
  }
  if (cursor !== data.length) return { ok: false, reason: "trailing bytes after the last query" };
  return { ok: true, value: { exportName: name.value, queries } };
}
