// The send stream (formats/send-stream.md): one volume's contents, whole or as the changes
// from a base, as a header, records of block runs and an end record, each checksummed. This
// file is its one encoder and one decoder; send.ts writes streams, receive.ts reads them.

import { crc32c } from "@node-rs/crc32";
import { StreamCorruptError } from "../errors.js";
import { assert } from "../io/assert.js";
import { defineLayout, fieldBytes, readUint, writeUint } from "../io/byte-layout.js";
import { DATA_BLOCK_BYTES, VOLUME_BYTES_MAX } from "./limits.js";
import { uuidBytes, uuidText } from "../io/uuid-bytes.js";
import { NIL_UUID } from "./volume-record.js";

export const SEND_STREAM_MAGIC = "THINSEND";
export const SEND_STREAM_VERSION = 1;
/** Feature bits a receiver must understand to read the stream: none are defined in version 1. */
export const SEND_FEATURES_REQUIRED_KNOWN = 0;
/** The most blocks one data record carries: records stay small enough to check before they are applied. */
export const SEND_RECORD_BLOCKS_MAX = 16;

export const SEND_HEADER_BYTES = 128;
export const SEND_HEADER_LAYOUT = defineLayout("send-stream header", SEND_HEADER_BYTES, {
  magic: { offset: 0, bytes: 8 },
  version: { offset: 8, bytes: 4 },
  headerBytes: { offset: 12, bytes: 4 },
  requiredFeatures: { offset: 16, bytes: 4 },
  optionalFeatures: { offset: 20, bytes: 4 },
  blockBytes: { offset: 24, bytes: 4 },
  reserved28: { offset: 28, bytes: 4 },
  sizeBytes: { offset: 32, bytes: 8 },
  volumeUuid: { offset: 40, bytes: 16 },
  volumeGeneration: { offset: 56, bytes: 8 },
  /** All zeros: a whole stream, with no base. */
  baseUuid: { offset: 64, bytes: 16 },
  baseGeneration: { offset: 80, bytes: 8 },
  firstBlock: { offset: 88, bytes: 8 },
  sentAt: { offset: 96, bytes: 8 },
  reserved104: { offset: 104, bytes: 20 },
  checksum: { offset: 124, bytes: 4 },
});

export const SEND_RECORD_HEADER_BYTES = 32;
export const SEND_RECORD_LAYOUT = defineLayout("send-stream record header", SEND_RECORD_HEADER_BYTES, {
  type: { offset: 0, bytes: 4 },
  reserved4: { offset: 4, bytes: 4 },
  firstBlock: { offset: 8, bytes: 8 },
  blockCount: { offset: 16, bytes: 8 },
  payloadBytes: { offset: 24, bytes: 4 },
  reserved28: { offset: 28, bytes: 4 },
});
/** The CRC32C after each record's payload. */
export const SEND_RECORD_TRAILER_BYTES = 4;

export const SEND_END_BYTES = 40;
export const SEND_END_LAYOUT = defineLayout("send-stream end payload", SEND_END_BYTES, {
  dataBlocks: { offset: 0, bytes: 8 },
  unmappedBlocks: { offset: 8, bytes: 8 },
  records: { offset: 16, bytes: 8 },
  streamBytes: { offset: 24, bytes: 8 },
  streamChecksum: { offset: 32, bytes: 4 },
  reserved36: { offset: 36, bytes: 4 },
});

export enum SendRecordType {
  Data = 1,
  Unmapped = 2,
  End = 3,
}

export const SEND_PAYLOAD_BYTES_MAX = SEND_RECORD_BLOCKS_MAX * DATA_BLOCK_BYTES;

export interface SendHeader {
  sizeBytes: number;
  volume: { uuid: string; generation: number };
  /** Null for a whole stream. */
  base: { uuid: string; generation: number } | null;
  /** No record starts below this block: 0, or where a resumed stream goes on. */
  firstBlock: number;
  sentAt: number;
  optionalFeatures: number;
}

export interface SendEnd {
  dataBlocks: number;
  unmappedBlocks: number;
  records: number;
  /** Bytes of the stream before the end record. */
  streamBytes: number;
  /** CRC32C of those bytes. */
  streamChecksum: number;
}

export type SendRecord =
  | { type: SendRecordType.Data; firstBlock: number; blockCount: number; data: Buffer }
  | { type: SendRecordType.Unmapped; firstBlock: number; blockCount: number }
  | { type: SendRecordType.End; end: SendEnd };

export function encodeSendHeader(header: SendHeader): Buffer {
  const bytes = Buffer.alloc(SEND_HEADER_BYTES);
  const F = SEND_HEADER_LAYOUT;
  fieldBytes(bytes, F.magic).write(SEND_STREAM_MAGIC, "latin1");
  writeUint(bytes, F.version, SEND_STREAM_VERSION);
  writeUint(bytes, F.headerBytes, SEND_HEADER_BYTES);
  writeUint(bytes, F.requiredFeatures, 0);
  writeUint(bytes, F.optionalFeatures, header.optionalFeatures);
  writeUint(bytes, F.blockBytes, DATA_BLOCK_BYTES);
  writeUint(bytes, F.sizeBytes, header.sizeBytes);
  fieldBytes(bytes, F.volumeUuid).set(uuidBytes(header.volume.uuid));
  writeUint(bytes, F.volumeGeneration, header.volume.generation);
  fieldBytes(bytes, F.baseUuid).set(uuidBytes(header.base?.uuid ?? NIL_UUID));
  writeUint(bytes, F.baseGeneration, header.base?.generation ?? 0);
  writeUint(bytes, F.firstBlock, header.firstBlock);
  writeUint(bytes, F.sentAt, header.sentAt);
  writeUint(bytes, F.checksum, crc32c(bytes.subarray(0, F.checksum.offset)));
  return bytes;
}

/** `bytes` holds at least SEND_HEADER_BYTES. Throws StreamCorruptError naming what is wrong. */
export function decodeSendHeader(bytes: Buffer): SendHeader {
  const F = SEND_HEADER_LAYOUT;
  if (fieldBytes(bytes, F.magic).toString("latin1") !== SEND_STREAM_MAGIC) {
    throw new StreamCorruptError(0, "it does not start with a thinp send stream's magic: it is not a stream 'thinp send' wrote");
  }
  const version = readUint(bytes, F.version);
  if (version !== SEND_STREAM_VERSION) {
    throw new StreamCorruptError(
      8,
      `it is a version ${version} send stream; this thinp reads version ${SEND_STREAM_VERSION}: receive it with the thinp that sent it, or a newer one`,
    );
  }
  if (readUint(bytes, F.checksum) !== crc32c(bytes.subarray(0, F.checksum.offset))) {
    throw new StreamCorruptError(0, "the header's checksum does not match: the stream was damaged");
  }
  if (readUint(bytes, F.headerBytes) !== SEND_HEADER_BYTES)
    throw new StreamCorruptError(12, `header of ${readUint(bytes, F.headerBytes)} bytes`);
  const required = readUint(bytes, F.requiredFeatures);
  if ((required & ~SEND_FEATURES_REQUIRED_KNOWN) !== 0) {
    throw new StreamCorruptError(
      16,
      `it needs features this thinp does not have (bits 0x${required.toString(16)}): receive it with a newer thinp`,
    );
  }
  const blockBytes = readUint(bytes, F.blockBytes);
  if (blockBytes !== DATA_BLOCK_BYTES) {
    throw new StreamCorruptError(24, `its blocks are ${blockBytes} bytes; thinp pools use ${DATA_BLOCK_BYTES}-byte blocks`);
  }
  const baseUuid = uuidText(fieldBytes(bytes, F.baseUuid));
  const sizeBytes = readUint(bytes, F.sizeBytes);
  const firstBlock = readUint(bytes, F.firstBlock);
  if (sizeBytes === 0 || sizeBytes % 512 !== 0 || sizeBytes > VOLUME_BYTES_MAX) {
    throw new StreamCorruptError(32, `a volume size of ${sizeBytes} bytes, which no thinp volume can have`);
  }
  if (firstBlock > Math.ceil(sizeBytes / DATA_BLOCK_BYTES))
    throw new StreamCorruptError(88, `first block ${firstBlock} is past the volume's end`);
  return {
    sizeBytes,
    volume: { uuid: uuidText(fieldBytes(bytes, F.volumeUuid)), generation: readUint(bytes, F.volumeGeneration) },
    base: baseUuid === NIL_UUID ? null : { uuid: baseUuid, generation: readUint(bytes, F.baseGeneration) },
    firstBlock,
    sentAt: readUint(bytes, F.sentAt),
    optionalFeatures: readUint(bytes, F.optionalFeatures),
  };
}

/** One record as it goes on the wire: header, payload, checksum. */
export function encodeSendRecord(record: SendRecord): Buffer[] {
  const header = Buffer.alloc(SEND_RECORD_HEADER_BYTES);
  const F = SEND_RECORD_LAYOUT;
  let payload: Buffer;
  writeUint(header, F.type, record.type);
  if (record.type === SendRecordType.End) {
    payload = Buffer.alloc(SEND_END_BYTES);
    const E = SEND_END_LAYOUT;
    writeUint(payload, E.dataBlocks, record.end.dataBlocks);
    writeUint(payload, E.unmappedBlocks, record.end.unmappedBlocks);
    writeUint(payload, E.records, record.end.records);
    writeUint(payload, E.streamBytes, record.end.streamBytes);
    writeUint(payload, E.streamChecksum, record.end.streamChecksum);
  } else {
    assert(record.blockCount > 0, "a record covers at least one block");
    writeUint(header, F.firstBlock, record.firstBlock);
    writeUint(header, F.blockCount, record.blockCount);
    payload = record.type === SendRecordType.Data ? record.data : Buffer.alloc(0);
    if (record.type === SendRecordType.Data) {
      assert(record.blockCount <= SEND_RECORD_BLOCKS_MAX, `data record of ${record.blockCount} blocks`);
      assert(
        payload.length > (record.blockCount - 1) * DATA_BLOCK_BYTES && payload.length <= record.blockCount * DATA_BLOCK_BYTES,
        "payload spans its blocks",
      );
    }
  }
  writeUint(header, F.payloadBytes, payload.length);
  const trailer = Buffer.alloc(SEND_RECORD_TRAILER_BYTES);
  trailer.writeUInt32LE(crc32c(payload, crc32c(header)), 0);
  return payload.length === 0 ? [header, trailer] : [header, payload, trailer];
}

/** What a record header says, before its payload is read: how many payload bytes follow. */
export function decodeSendRecordHeader(
  bytes: Buffer,
  streamOffset: number,
): { type: SendRecordType; firstBlock: number; blockCount: number; payloadBytes: number } {
  const F = SEND_RECORD_LAYOUT;
  const type = readUint(bytes, F.type);
  const firstBlock = readUint(bytes, F.firstBlock);
  const blockCount = readUint(bytes, F.blockCount);
  const payloadBytes = readUint(bytes, F.payloadBytes);
  const where = `the record at byte ${streamOffset}`;
  if (type === SendRecordType.End) {
    if (payloadBytes !== SEND_END_BYTES) throw new StreamCorruptError(streamOffset, `${where} is an end record of ${payloadBytes} bytes`);
  } else if (type === SendRecordType.Data) {
    if (blockCount === 0 || blockCount > SEND_RECORD_BLOCKS_MAX)
      throw new StreamCorruptError(streamOffset, `${where} carries ${blockCount} blocks`);
    if (payloadBytes <= (blockCount - 1) * DATA_BLOCK_BYTES || payloadBytes > blockCount * DATA_BLOCK_BYTES) {
      throw new StreamCorruptError(streamOffset, `${where} has ${payloadBytes} bytes for ${blockCount} blocks`);
    }
  } else if (type === SendRecordType.Unmapped) {
    if (blockCount === 0 || payloadBytes !== 0)
      throw new StreamCorruptError(streamOffset, `${where} is an unmapped run of ${blockCount} blocks with ${payloadBytes} bytes`);
  } else {
    throw new StreamCorruptError(streamOffset, `${where} has unknown type ${type}: the stream is damaged, or needs a newer thinp`);
  }
  return { type, firstBlock, blockCount, payloadBytes };
}

/** Checks a whole record's checksum; `payload` may be empty. */
export function verifySendRecord(header: Buffer, payload: Buffer, trailer: Buffer, streamOffset: number): void {
  if (trailer.readUInt32LE(0) !== crc32c(payload, crc32c(header))) {
    throw new StreamCorruptError(streamOffset, `the record at byte ${streamOffset} fails its checksum: the stream was damaged`);
  }
}

export function decodeSendEnd(payload: Buffer): SendEnd {
  const E = SEND_END_LAYOUT;
  return {
    dataBlocks: readUint(payload, E.dataBlocks),
    unmappedBlocks: readUint(payload, E.unmappedBlocks),
    records: readUint(payload, E.records),
    streamBytes: readUint(payload, E.streamBytes),
    streamChecksum: readUint(payload, E.streamChecksum),
  };
}
