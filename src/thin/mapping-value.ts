// A mapping-tree value (formats/metadata.md, "Mappings"): 8 bytes, little-endian,
//   bits 0..39  data block index
//   bits 40..63 snapshot time when the mapping was made
// The tree's key is the virtual block index.

import { CorruptBlockError } from "../errors.js";
import { assert } from "../io/assert.js";
import { DATA_BLOCKS_MAX, SNAPSHOT_TIME_MAX } from "./limits.js";

export const MAPPING_VALUE_BYTES = 8;
/** Bits 0 up to this hold the data block; the bits above it, the time. */
export const MAPPING_DATA_BLOCK_BITS = 40;
export const MAPPING_TIME_BITS = 8 * MAPPING_VALUE_BYTES - MAPPING_DATA_BLOCK_BITS;
/** The value is read as two u32 words; the data block's top bits sit low in the high word. */
const WORD = 2 ** 32;
const HIGH_WORD_BLOCK_BITS = MAPPING_DATA_BLOCK_BITS - 32;
const HIGH_WORD_BLOCK_MASK = (1 << HIGH_WORD_BLOCK_BITS) - 1;
assert(DATA_BLOCKS_MAX === 2 ** MAPPING_DATA_BLOCK_BITS, "a mapping holds every data block index");
assert(SNAPSHOT_TIME_MAX === 2 ** MAPPING_TIME_BITS - 1, "a mapping holds every snapshot time");
assert(HIGH_WORD_BLOCK_BITS > 0 && HIGH_WORD_BLOCK_BITS < 32, "the data block spans both words");

export interface Mapping {
  dataBlock: number;
  time: number;
}

export function encodeMapping(mapping: Mapping): Buffer {
  assert(
    Number.isSafeInteger(mapping.dataBlock) && mapping.dataBlock >= 0 && mapping.dataBlock < DATA_BLOCKS_MAX,
    `data block ${mapping.dataBlock}`,
  );
  assert(mapping.time >= 0 && mapping.time <= SNAPSHOT_TIME_MAX, `mapping time ${mapping.time}`);
  const value = Buffer.alloc(MAPPING_VALUE_BYTES);
  value.writeUInt32LE(mapping.dataBlock % WORD, 0);
  // `<<` and `|` give a signed 32-bit result: from time 2^23 on it is negative without `>>> 0`.
  value.writeUInt32LE((Math.floor(mapping.dataBlock / WORD) | (mapping.time << HIGH_WORD_BLOCK_BITS)) >>> 0, 4);
  return value;
}

export function decodeMapping(value: Buffer): Mapping {
  const low = value.readUInt32LE(0);
  const high = value.readUInt32LE(4);
  return { dataBlock: (high & HIGH_WORD_BLOCK_MASK) * WORD + low, time: high >>> HIGH_WORD_BLOCK_BITS };
}

/** Decodes and checks a mapping against the pool's size; `nodeIndex` names the leaf for errors. */
export function decodeMappingIn(value: Buffer, dataBlockCount: number, nodeIndex: number): Mapping {
  const mapping = decodeMapping(value);
  if (mapping.dataBlock >= dataBlockCount) {
    throw new CorruptBlockError(
      nodeIndex,
      "pointer-out-of-range",
      `maps to data block ${mapping.dataBlock}, beyond the pool's ${dataBlockCount}`,
    );
  }
  return mapping;
}
