// A volume-table value (formats/metadata.md, "Volume table"): 256 bytes holding
// u16 length + a msgpack map, so fields can be added without a format change.
// Unknown keys are ignored on read; missing optional keys take their defaults.

import { decode, encode } from "@msgpack/msgpack";
import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { defineLayout, fieldBytes, readUint, writeUint } from "../io/byte-layout.js";
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
}

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
  });
  assert(body.length <= BODY_BYTES_MAX, `volume record of ${body.length} bytes`);
  const value = Buffer.alloc(VOLUME_RECORD_BYTES);
  writeUint(value, VOLUME_RECORD_LAYOUT.bodyLength, body.length);
  value.set(body, VOLUME_RECORD_LAYOUT.body.offset);
  return value;
}

export function decodeVolumeRecord(value: Buffer, nodeIndex: number): VolumeRecord {
  const length = readUint(value, VOLUME_RECORD_LAYOUT.bodyLength);
  if (length === 0 || length > BODY_BYTES_MAX) throw new CorruptBlockError(nodeIndex, "bad-record", `volume record length ${length}`);
  let raw: unknown;
  try {
    raw = decode(fieldBytes(value, VOLUME_RECORD_LAYOUT.body).subarray(0, length));
  } catch (error) {
    throw new CorruptBlockError(nodeIndex, "bad-record", `volume record does not decode: ${(error as Error).message}`);
  }
  const fields = raw as Record<string, unknown>;
  const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  const optionalCount = (v: unknown) => v === null || v === undefined || isCount(v);
  if (
    typeof fields !== "object" ||
    fields === null ||
    typeof fields.n !== "string" ||
    !isCount(fields.s) ||
    !isCount(fields.r) ||
    !isCount(fields.m) ||
    !optionalCount(fields.o) ||
    !isCount(fields.c) ||
    !optionalCount(fields.t)
  ) {
    throw new CorruptBlockError(nodeIndex, "bad-record", "volume record has missing or invalid fields");
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
    snapshotTime: isCount(fields.st) ? fields.st : 0,
  };
}
