// Sending a volume (formats/send-stream.md): whole, every mapped block; or incremental, the
// blocks where it differs from a base volume, found by the diff that skips shared subtrees.
// Both volumes are sealed first, so the identities in the header name exactly the contents
// sent: a later change to either raises its generation, and a receiver holding the old one
// can tell.

import { crc32c } from "@node-rs/crc32";
import { BaseMismatchError } from "../errors.js";
import type { VolumeIdentity } from "./api.js";
import { DATA_BLOCK_BYTES } from "./limits.js";
import type { Pool } from "./pool.js";
import type { ResumeToken } from "./resume-token.js";
import {
  SEND_RECORD_BLOCKS_MAX,
  SendRecordType,
  encodeSendHeader,
  encodeSendRecord,
  type SendEnd,
  type SendHeader,
} from "./send-stream.js";
import { diffBlockRuns, mappedBlockRuns, resolveDiffSides, type BlockRun } from "./volume-diff.js";

/** A run of the stream: blocks whose data is sent, or blocks the receiver must leave unmapped. */
export interface SendRun {
  kind: "data" | "unmapped";
  firstBlock: number;
  blockCount: number;
}

/** What a stream is made from: the header, the runs in block order, and the sent volume's bytes. */
export interface SendSource {
  readonly header: SendHeader;
  runs(): AsyncIterable<SendRun>;
  read(offset: number, length: number): Promise<Buffer>;
  /** Lets go of what the source holds (a hold on a served pool's volumes); called once, last. */
  close(): Promise<void>;
}

export interface SendOptions {
  /** Send only what changed since this volume (a snapshot the receiver holds). */
  from?: string;
  /** Go on from where an interrupted receive stopped. */
  resume?: ResumeToken;
}

export interface SendTotals {
  bytes: number;
  dataBlocks: number;
  unmappedBlocks: number;
  records: number;
}

/**
 * A send source over a pool this process holds: seals `name` (and `from`), then reads them
 * directly. Where other writers share the pool (a served pool), use openHeldSendSource
 * instead, so the volumes read cannot change under the stream.
 */
export async function openSendSource(pool: Pool, name: string, options: SendOptions = {}): Promise<SendSource> {
  const volume: SendSide = { name, readName: name, identity: await pool.seal(name) };
  const base: SendSide | null =
    options.from === undefined ? null : { name: options.from, readName: options.from, identity: await pool.seal(options.from) };
  return openHeldSendSource(pool, { volume, base, resume: options.resume });
}

/** A volume a stream is made from: named `name` in messages and the header's identity, read from `readName`. */
export interface SendSide {
  name: string;
  /** The volume whose blocks are read: `name` itself, or a hold on it (holds.ts) with exactly the contents `identity` names. */
  readName: string;
  identity: VolumeIdentity;
}

export interface HeldSendOptions {
  volume: SendSide;
  base: SendSide | null;
  resume?: ResumeToken;
  /** Lets go of the holds; the source's close calls it. */
  release?: () => Promise<void>;
}

/**
 * A send source whose header carries the identities given and whose blocks come from the
 * sides' `readName` volumes: on a served pool, holds taken with the volumes sealed
 * (Pool.hold), which no write can change while the stream is made.
 */
export async function openHeldSendSource(pool: Pool, options: HeldSendOptions): Promise<SendSource> {
  const { volume: sent, base, resume } = options;
  if (resume !== undefined) checkResumeToken(resume, sent.name, sent.identity, base?.name ?? null, base?.identity ?? null);
  const volume = await pool.volume(sent.readName);
  const sizeBytes = volume.sizeBytes;
  const blockEnd = Math.ceil(sizeBytes / DATA_BLOCK_BYTES);
  const firstBlock = resume?.nextBlock ?? 0;
  const header: SendHeader = {
    sizeBytes,
    volume: sent.identity,
    base: base?.identity ?? null,
    firstBlock,
    sentAt: Date.now(),
    optionalFeatures: 0,
  };
  const runs = async function* (): AsyncGenerator<SendRun> {
    const blockRuns: AsyncIterable<BlockRun> =
      base === null
        ? mappedBlockRuns(pool.transactions, { id: volume.id, name: sent.name }, blockEnd, firstBlock)
        : diffBlockRuns(pool.transactions, await resolveDiffSides(pool.transactions, base.readName, sent.readName));
    for await (const run of blockRuns) {
      // Past the sent volume's end nothing is sent: the receiver cuts its copy to the new size.
      const first = Math.max(run.firstBlock, firstBlock);
      const end = Math.min(run.firstBlock + run.blockCount, blockEnd);
      if (end <= first) continue;
      yield { kind: run.kind === "left_only" ? "unmapped" : "data", firstBlock: first, blockCount: end - first };
    }
  };
  let released = false;
  return {
    header,
    runs,
    read: (offset, length) => volume.read(offset, length),
    close: async () => {
      if (released) return;
      released = true;
      await options.release?.();
    },
  };
}

function checkResumeToken(
  token: ResumeToken,
  name: string,
  volume: VolumeIdentity,
  fromName: string | null,
  base: VolumeIdentity | null,
): void {
  const same = (a: VolumeIdentity | null, b: VolumeIdentity | null) =>
    a === null || b === null ? a === b : a.uuid === b.uuid && a.generation === b.generation;
  if (!same(token.volume, volume)) {
    throw new BaseMismatchError(
      `the resume token is for volume ${token.volume.uuid} at generation ${token.volume.generation}, and '${name}' is ` +
        `${volume.uuid} at generation ${volume.generation}: it names another volume, or '${name}' changed since; send it anew without --resume-token`,
    );
  }
  if (!same(token.base, base)) {
    const wanted =
      token.base === null ? "a whole stream (no --from)" : `a stream from volume ${token.base.uuid} at generation ${token.base.generation}`;
    throw new BaseMismatchError(
      `the resume token is for ${wanted}, which ${fromName === null ? "--from is missing for" : `'${fromName}' is not`}: give the --from the interrupted send had`,
    );
  }
}

/** The stream's bytes, in order, from a source: the header, records of at most 16 blocks, the end record. */
export async function* encodeSendStream(source: SendSource, totals?: SendTotals): AsyncGenerator<Buffer> {
  const counted: SendTotals = totals ?? { bytes: 0, dataBlocks: 0, unmappedBlocks: 0, records: 0 };
  let checksum = 0;
  const emit = (pieces: Buffer[]): Buffer[] => {
    for (const piece of pieces) {
      checksum = crc32c(piece, checksum);
      counted.bytes += piece.length;
    }
    return pieces;
  };
  yield* emit([encodeSendHeader(source.header)]);
  const sizeBytes = source.header.sizeBytes;
  for await (const run of source.runs()) {
    if (run.kind === "unmapped") {
      counted.records++;
      counted.unmappedBlocks += run.blockCount;
      yield* emit(encodeSendRecord({ type: SendRecordType.Unmapped, firstBlock: run.firstBlock, blockCount: run.blockCount }));
      continue;
    }
    for (let first = run.firstBlock; first < run.firstBlock + run.blockCount; first += SEND_RECORD_BLOCKS_MAX) {
      const blockCount = Math.min(SEND_RECORD_BLOCKS_MAX, run.firstBlock + run.blockCount - first);
      const offset = first * DATA_BLOCK_BYTES;
      const data = await source.read(offset, Math.min(sizeBytes, offset + blockCount * DATA_BLOCK_BYTES) - offset);
      counted.records++;
      counted.dataBlocks += blockCount;
      yield* emit(encodeSendRecord({ type: SendRecordType.Data, firstBlock: first, blockCount, data }));
    }
  }
  const end: SendEnd = {
    dataBlocks: counted.dataBlocks,
    unmappedBlocks: counted.unmappedBlocks,
    records: counted.records,
    streamBytes: counted.bytes,
    streamChecksum: checksum,
  };
  const endRecord = encodeSendRecord({ type: SendRecordType.End, end });
  for (const piece of endRecord) counted.bytes += piece.length;
  yield* endRecord;
}
