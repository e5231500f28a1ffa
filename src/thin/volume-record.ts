// A volume-table value (formats/metadata.md, "Volume table"): 256 bytes holding
// u16 length + a msgpack map, so fields can be added without a format change.
// Unknown keys are ignored on read; missing optional keys take their defaults.

import { decode, encode } from "@msgpack/msgpack";
import { createHash } from "node:crypto";
import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { defineLayout, fieldBytes, readUint, writeUint } from "../io/byte-layout.js";
import { isDecodedCount } from "../io/integers.js";
import { uuidBytes, uuidText } from "../io/uuid-bytes.js";
import { NODE_VALUE_BYTES_MAX } from "../pdata/limits.js";

export const VOLUME_RECORD_BYTES = 256;
assert(VOLUME_RECORD_BYTES <= NODE_VALUE_BYTES_MAX, "a volume record is a leaf value");

export const VOLUME_RECORD_LAYOUT = defineLayout("volume record", VOLUME_RECORD_BYTES, {
  bodyLength: { offset: 0, bytes: 2 },
  /** Variable: `bodyLength` bytes of MessagePack, then zeros to the end. */
  body: { offset: 2, bytes: VOLUME_RECORD_BYTES - 2 },
});
const BODY_BYTES_MAX = VOLUME_RECORD_LAYOUT.body.bytes;

export interface VolumeRecord {
  name: string;
  sizeBytes: number;
  /** Root block of the volume's mapping tree. */
  mappingRoot: number;
  mappedBlocks: number;
  originId: number | null;
  readOnly: boolean;
  createdAt: number;
  snapshotAt: number | null;
  /** The pool's snapshot time when this volume was last snapshotted or created. */
  snapshotTime: number;
  /**
   * The volume's identity (RFC 4122 text), kept when it is sent to another pool and received
   * there, so a receiver knows whether it holds the base of an incremental stream.
   */
  uuid: string;
  /**
   * Which state of the volume's contents `sealed` speaks of: the first change to a sealed
   * volume's contents (a write, discard or resize) raises it and unseals the volume.
   */
  generation: number;
  /** The contents are exactly those of `generation`: set when the identity is handed out (send, receive). */
  sealed: boolean;
  /** Not listed or exported: a volume being received, or a hold on another volume's contents. */
  hidden: boolean;
  /** Set while the volume is the target of a receive that has not been published. */
  receiving: ReceiveProgress | null;
}

/** What an unfinished receive has taken in, so it can go on from there (send-stream.md, "Resuming"). */
export interface ReceiveProgress {
  /** The base of an incremental stream, or null for a whole one. */
  baseUuid: string | null;
  baseGeneration: number;
  /** Every virtual block below this has been received. */
  nextBlock: number;
  /** Asked to be kept when cut (`receive --resumable`); otherwise what a crash left is dropped by the next receive. */
  resumable: boolean;
}

/** The identity of a volume written before volumes had one (format version 1): fixed by the pool's uuid and the volume's id. */
export function legacyVolumeUuid(poolUuid: string, volumeId: number): string {
  const hash = createHash("sha1").update(`thinp volume ${poolUuid} ${volumeId}`).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50; // version 5: name-based, SHA-1
  hash[8] = (hash[8]! & 0x3f) | 0x80; // RFC 4122 variant
  return uuidText(hash.subarray(0, 16));
}

/** The nil UUID: no identity (a record read without the pool that gives its legacy one). */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

export function encodeVolumeRecord(record: VolumeRecord): Buffer {
  const body = encode({
    n: record.name,
    s: record.sizeBytes,
    r: record.mappingRoot,
    m: record.mappedBlocks,
    o: record.originId,
    ro: record.readOnly,
    c: record.createdAt,
    t: record.snapshotAt,
    st: record.snapshotTime,
    u: uuidBytes(record.uuid),
    g: record.generation,
    ...(record.sealed ? { sl: true } : {}),
    ...(record.hidden ? { h: true } : {}),
    ...(record.receiving === null
      ? {}
      : {
          rx: {
            b: record.receiving.baseUuid === null ? null : uuidBytes(record.receiving.baseUuid),
            bg: record.receiving.baseGeneration,
            nb: record.receiving.nextBlock,
            ...(record.receiving.resumable ? { k: true } : {}),
          },
        }),
  });
  assert(body.length <= BODY_BYTES_MAX, `volume record of ${body.length} bytes`);
  const value = Buffer.alloc(VOLUME_RECORD_BYTES);
  writeUint(value, VOLUME_RECORD_LAYOUT.bodyLength, body.length);
  value.set(body, VOLUME_RECORD_LAYOUT.body.offset);
  return value;
}

/**
 * `legacyUuid`: the identity of a record written before volumes had one (its pool's
 * legacyVolumeUuid); the nil UUID when not given, for readers that need no identity.
 */
export function decodeVolumeRecord(value: Buffer, nodeIndex: number, legacyUuid: string = NIL_UUID): VolumeRecord {
  const length = readUint(value, VOLUME_RECORD_LAYOUT.bodyLength);
  if (length === 0 || length > BODY_BYTES_MAX) throw new CorruptBlockError(nodeIndex, "bad-record", `volume record length ${length}`);
  let raw: unknown;
  try {
    raw = decode(fieldBytes(value, VOLUME_RECORD_LAYOUT.body).subarray(0, length));
  } catch (error) {
    throw new CorruptBlockError(nodeIndex, "bad-record", `volume record does not decode: ${(error as Error).message}`);
  }
  const fields = raw as Record<string, unknown>;
  const optionalCount = (v: unknown) => v === null || v === undefined || isDecodedCount(v);
  if (
    typeof fields !== "object" ||
    fields === null ||
    typeof fields.n !== "string" ||
    !isDecodedCount(fields.s) ||
    !isDecodedCount(fields.r) ||
    !isDecodedCount(fields.m) ||
    !optionalCount(fields.o) ||
    !isDecodedCount(fields.c) ||
    !optionalCount(fields.t)
  ) {
    throw new CorruptBlockError(nodeIndex, "bad-record", "volume record has missing or invalid fields");
  }
  const isUuid = (v: unknown): v is Uint8Array => v instanceof Uint8Array && v.length === 16;
  if ((fields.u !== undefined && !isUuid(fields.u)) || (fields.g !== undefined && !isDecodedCount(fields.g))) {
    throw new CorruptBlockError(nodeIndex, "bad-record", "volume record has an invalid identity");
  }
  return {
    name: fields.n,
    sizeBytes: fields.s,
    mappingRoot: fields.r,
    mappedBlocks: fields.m,
    originId: (fields.o as number | null | undefined) ?? null,
    readOnly: fields.ro === true,
    createdAt: fields.c,
    snapshotAt: (fields.t as number | null | undefined) ?? null,
    snapshotTime: isDecodedCount(fields.st) ? fields.st : 0,
    uuid: isUuid(fields.u) ? uuidText(fields.u) : legacyUuid,
    generation: isDecodedCount(fields.g) ? fields.g : 0,
    sealed: fields.sl === true,
    hidden: fields.h === true,
    receiving: decodeReceiveProgress(fields.rx, nodeIndex),
  };
}

function decodeReceiveProgress(raw: unknown, nodeIndex: number): ReceiveProgress | null {
  if (raw === undefined || raw === null) return null;
  const fields = raw as Record<string, unknown>;
  const base = fields.b;
  if (
    typeof fields !== "object" ||
    !(base === null || (base instanceof Uint8Array && base.length === 16)) ||
    !isDecodedCount(fields.bg) ||
    !isDecodedCount(fields.nb)
  ) {
    throw new CorruptBlockError(nodeIndex, "bad-record", "volume record has an invalid receive state");
  }
  return {
    baseUuid: base === null ? null : uuidText(base as Uint8Array),
    baseGeneration: fields.bg,
    nextBlock: fields.nb,
    resumable: fields.k === true,
  };
}
