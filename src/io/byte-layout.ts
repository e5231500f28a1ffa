// A fixed-offset on-disk struct, written down once: each field's offset and size. The
// encoder and the decoder of a struct both read their offsets from its layout, and
// test/format-tables.test.ts compares every layout with the byte tables in formats/, so the
// code and the spec cannot drift apart.

import { assert } from "./assert.js";
import { readU64, writeU64 } from "./integers.js";

export interface Field {
  readonly offset: number;
  /** Bytes the field takes; for a variable-length field, the most it may take. */
  readonly bytes: number;
}

export type Layout = Readonly<Record<string, Field>>;

/**
 * Checks, when the module defining it loads, that a layout's fields are listed in offset
 * order, do not overlap and end within `totalBytes`. Gaps are allowed: a struct may keep
 * bytes a later field will use.
 */
export function defineLayout<const T extends Layout>(name: string, totalBytes: number, fields: T): T {
  let end = 0;
  for (const [fieldName, field] of Object.entries(fields)) {
    assert(
      Number.isSafeInteger(field.offset) && Number.isSafeInteger(field.bytes) && field.bytes > 0,
      `${name}.${fieldName}: offset ${field.offset}, ${field.bytes} bytes`,
    );
    assert(field.offset >= end, `${name}.${fieldName} at ${field.offset} overlaps the field before it, which ends at ${end}`);
    end = field.offset + field.bytes;
    assert(end <= totalBytes, `${name}.${fieldName} ends at ${end}, past the struct's ${totalBytes} bytes`);
  }
  return Object.freeze(fields);
}

/** Reads an unsigned little-endian integer field of 1, 2, 4 or 8 bytes (8: NaN past 2^53). */
export function readUint(buf: Buffer, field: Field): number {
  if (field.bytes === 8) return readU64(buf, field.offset);
  assert(field.bytes === 1 || field.bytes === 2 || field.bytes === 4, `integer field of ${field.bytes} bytes`);
  return buf.readUIntLE(field.offset, field.bytes);
}

export function writeUint(buf: Buffer, field: Field, value: number): void {
  if (field.bytes === 8) {
    writeU64(buf, field.offset, value);
    return;
  }
  assert(field.bytes === 1 || field.bytes === 2 || field.bytes === 4, `integer field of ${field.bytes} bytes`);
  buf.writeUIntLE(value, field.offset, field.bytes);
}

/** The field's bytes, without copying. */
export function fieldBytes(buf: Buffer, field: Field): Buffer {
  return buf.subarray(field.offset, field.offset + field.bytes);
}
