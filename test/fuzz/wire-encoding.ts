// Byte builders for what a fuzzing client sends. Unlike the server's encoders, every field
// can be given a value that contradicts the others (a length that does not match the data,
// a count larger than the list), because that is what the fuzzer is for.

import * as P from "../../src/nbd/protocol.js";

export function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value & 0xffff, 0);
  return out;
}

export function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

/** An option: magic, type, the declared data length (by default the real one), then the data. */
export function optionBytes(option: number, data: Buffer, overrides: { magic?: bigint; declaredBytes?: number } = {}): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(overrides.magic ?? P.NBD_OPTS_MAGIC, 0);
  header.writeUInt32BE(option >>> 0, 8);
  header.writeUInt32BE((overrides.declaredBytes ?? data.length) >>> 0, 12);
  return Buffer.concat([header, data]);
}

/** NBD_OPT_INFO / NBD_OPT_GO data. `nameLengthField` and `countField` may lie. */
export function infoRequestData(
  name: Buffer,
  infoTypes: readonly number[],
  overrides: { nameLengthField?: number; countField?: number; trailing?: Buffer } = {},
): Buffer {
  return Buffer.concat([
    u32(overrides.nameLengthField ?? name.length),
    name,
    u16(overrides.countField ?? infoTypes.length),
    ...infoTypes.map(u16),
    overrides.trailing ?? Buffer.alloc(0),
  ]);
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. `countField` may lie. */
export function metaContextData(
  name: Buffer,
  queries: readonly Buffer[],
  overrides: { countField?: number; trailing?: Buffer } = {},
): Buffer {
  const parts: Buffer[] = [u32(name.length), name, u32(overrides.countField ?? queries.length)];
  for (const query of queries) parts.push(u32(query.length), query);
  if (overrides.trailing) parts.push(overrides.trailing);
  return Buffer.concat(parts);
}

export interface RequestSpec {
  command: number;
  flags: number;
  cookie: bigint;
  /** 64 bits on the wire, so a bigint: offsets past 2^53 are part of the game. */
  offset: bigint;
  byteLength: number;
  /** WRITE data actually sent; may be shorter than byteLength for a disconnect mid-payload. */
  payload?: Buffer;
  magic?: number;
}

export function requestHeader(request: RequestSpec): Buffer {
  const out = Buffer.alloc(P.REQUEST_HEADER_BYTES);
  out.writeUInt32BE((request.magic ?? P.NBD_REQUEST_MAGIC) >>> 0, 0);
  out.writeUInt16BE(request.flags & 0xffff, 4);
  out.writeUInt16BE(request.command & 0xffff, 6);
  out.writeBigUInt64BE(request.cookie, 8);
  out.writeBigUInt64BE(request.offset, 16);
  out.writeUInt32BE(request.byteLength >>> 0, 24);
  return out;
}

export function requestBytes(request: RequestSpec): Buffer {
  const header = requestHeader(request);
  return request.payload ? Buffer.concat([header, request.payload]) : header;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}
