// Receiving a send stream (formats/send-stream.md). Every record is checked before it is
// applied, and everything is applied to a hidden volume that is published under its name,
// in one commit, only once the end record has verified the whole stream: a stream cut or
// damaged anywhere leaves no volume behind. A resumable receive keeps the hidden volume and
// how far it got instead, so a later stream can go on from there.

import { crc32c } from "@node-rs/crc32";
import { StreamCorruptError } from "../errors.js";
import { DATA_BLOCK_BYTES } from "./limits.js";
import {
  SEND_HEADER_BYTES,
  SEND_RECORD_HEADER_BYTES,
  SEND_RECORD_TRAILER_BYTES,
  SendRecordType,
  decodeSendEnd,
  decodeSendHeader,
  decodeSendRecordHeader,
  verifySendRecord,
  type SendHeader,
} from "./send-stream.js";

/** Where a stream's records are applied: a pool's hidden volume, here or behind a server. */
export interface ReceiveTarget {
  /** Checks the header against the pool and makes (or, resuming, finds) the hidden volume; returns the block from which records are still needed. */
  begin(header: SendHeader): Promise<{ resumeFrom: number }>;
  writeData(firstBlock: number, data: Buffer): Promise<void>;
  unmap(firstBlock: number, blockCount: number): Promise<void>;
  /** Every block below `nextBlock` is in: a resumable receive may record that, durably. */
  progress(nextBlock: number): Promise<void>;
  /** The stream verified: the volume appears under its name, sealed, in one commit. */
  publish(): Promise<void>;
  /** The stream failed: the hidden volume goes (or, resumable, is kept with its progress). */
  abort(reachedBlock: number): Promise<void>;
}

export interface ReceiveSummary {
  bytes: number;
  dataBlocks: number;
  unmappedBlocks: number;
  records: number;
  incremental: boolean;
  /** Blocks below this were taken from an earlier, interrupted receive. */
  resumedFrom: number;
}

/** Exact reads from a stream of chunks, counting the bytes and their running CRC32C. */
class StreamReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  /** Bytes handed out so far. */
  offset = 0;
  checksum = 0;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    const iterator = source[Symbol.asyncIterator]();
    this.chunks = {
      next: async () => {
        const step = await iterator.next();
        if (step.done) return step;
        const value = step.value;
        return {
          done: false,
          value: typeof value === "string" ? Buffer.from(value) : Buffer.from(value.buffer, value.byteOffset, value.byteLength),
        };
      },
    };
  }

  /** `byteCount` bytes, or a StreamCorruptError saying where the stream was cut. */
  async read(byteCount: number, what: string): Promise<Buffer> {
    while (this.bufferedBytes < byteCount) {
      const step = await this.chunks.next();
      if (step.done) {
        throw new StreamCorruptError(
          this.offset + this.bufferedBytes,
          `it ends there, in the middle of ${what}: the stream was cut short (an interrupted send, a full disk, a dropped connection)`,
        );
      }
      this.buffered.push(step.value);
      this.bufferedBytes += step.value.length;
    }
    const joined = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    const taken = joined.subarray(0, byteCount);
    const rest = joined.subarray(byteCount);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
    this.offset += byteCount;
    this.checksum = crc32c(taken, this.checksum);
    return taken;
  }

  /** True when nothing follows what was read. */
  async atEnd(): Promise<boolean> {
    if (this.bufferedBytes > 0) return false;
    for (;;) {
      const step = await this.chunks.next();
      if (step.done) return true;
      if (step.value.length === 0) continue;
      this.buffered.push(step.value);
      this.bufferedBytes += step.value.length;
      return false;
    }
  }
}

/**
 * Reads a whole stream from `source` into `target`. Any failure (a cut, a damaged record, a
 * refused header, an error of the pool) aborts the target and is rethrown.
 */
export async function receiveStream(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  target: ReceiveTarget,
  onProgress?: (received: ReceiveSummary, header: SendHeader) => void,
): Promise<ReceiveSummary & { header: SendHeader }> {
  const reader = new StreamReader(source);
  const header = decodeSendHeader(await reader.read(SEND_HEADER_BYTES, "the header"));
  const { resumeFrom } = await target.begin(header);
  const summary: ReceiveSummary = {
    bytes: 0,
    dataBlocks: 0,
    unmappedBlocks: 0,
    records: 0,
    incremental: header.base !== null,
    resumedFrom: resumeFrom,
  };
  const blockEnd = Math.ceil(header.sizeBytes / DATA_BLOCK_BYTES);
  // Blocks below this have been applied (or were, by the receive this one resumes).
  let applied = header.firstBlock;
  try {
    for (;;) {
      const recordOffset = reader.offset;
      const streamChecksum = reader.checksum;
      const head = await reader.read(SEND_RECORD_HEADER_BYTES, "a record header");
      const record = decodeSendRecordHeader(head, recordOffset);
      const payload = record.payloadBytes > 0 ? await reader.read(record.payloadBytes, "a record's data") : Buffer.alloc(0);
      const trailer = await reader.read(SEND_RECORD_TRAILER_BYTES, "a record's checksum");
      verifySendRecord(head, payload, trailer, recordOffset);
      if (record.type === SendRecordType.End) {
        const end = decodeSendEnd(payload);
        if (end.streamBytes !== recordOffset || end.streamChecksum !== streamChecksum) {
          throw new StreamCorruptError(recordOffset, "the end record's checksum over the whole stream does not match what came before it");
        }
        if (end.records !== summary.records || end.dataBlocks !== summary.dataBlocks || end.unmappedBlocks !== summary.unmappedBlocks) {
          throw new StreamCorruptError(
            recordOffset,
            `the end record counts ${end.records} records (${end.dataBlocks} data blocks, ${end.unmappedBlocks} unmapped), ` +
              `but ${summary.records} came (${summary.dataBlocks}, ${summary.unmappedBlocks})`,
          );
        }
        if (!(await reader.atEnd())) throw new StreamCorruptError(reader.offset, "bytes follow the end record");
        summary.bytes = reader.offset;
        await target.progress(blockEnd);
        await target.publish();
        return { ...summary, header };
      }
      const recordEnd = record.firstBlock + record.blockCount;
      if (record.firstBlock < applied || recordEnd > blockEnd) {
        throw new StreamCorruptError(
          recordOffset,
          `the record at byte ${recordOffset} covers blocks ${record.firstBlock}..${recordEnd - 1}, out of order or past the volume's ${blockEnd} blocks`,
        );
      }
      if (record.type === SendRecordType.Data) {
        const expected = Math.min(header.sizeBytes, recordEnd * DATA_BLOCK_BYTES) - record.firstBlock * DATA_BLOCK_BYTES;
        if (record.payloadBytes !== expected) {
          throw new StreamCorruptError(
            recordOffset,
            `the record at byte ${recordOffset} has ${record.payloadBytes} bytes where its blocks hold ${expected}`,
          );
        }
      }
      summary.records++;
      // Records below where a resumed receive stopped are in already.
      if (recordEnd > resumeFrom) {
        if (record.type === SendRecordType.Data) await target.writeData(record.firstBlock, payload);
        else await target.unmap(record.firstBlock, record.blockCount);
      }
      if (record.type === SendRecordType.Data) summary.dataBlocks += record.blockCount;
      else summary.unmappedBlocks += record.blockCount;
      applied = recordEnd;
      summary.bytes = reader.offset;
      await target.progress(applied);
      onProgress?.(summary, header);
    }
  } catch (error) {
    await target.abort(Math.max(applied, resumeFrom)).catch(() => undefined);
    throw error;
  }
}
