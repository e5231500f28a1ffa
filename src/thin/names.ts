import { createHash } from "node:crypto";
import { InvalidNameError } from "../errors.js";
import { assert } from "../io/assert.js";
import { NAME_BYTES_MAX, NAME_PROBES_MAX } from "./limits.js";

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Volume names become NBD export names and file-like identifiers: keep them plain. */
export function validateVolumeName(name: string): void {
  if (name.length === 0) throw new InvalidNameError(name, "a name cannot be empty");
  if (Buffer.byteLength(name) > NAME_BYTES_MAX) throw new InvalidNameError(name, `longer than ${NAME_BYTES_MAX} bytes`);
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidNameError(name, "use letters, digits, '.', '_' and '-', starting with a letter or digit");
  }
}

/** Bytes of SHA-1 in a name-index key. */
export const NAME_HASH_BYTES = 6;
/** A name-index value: the volume id, a u64. */
export const NAME_INDEX_VALUE_BYTES = 8;
// A key is a hash plus a probe offset, and must stay exact as a JavaScript number.
assert(Number.isSafeInteger(2 ** (8 * NAME_HASH_BYTES) + NAME_PROBES_MAX), "name-index keys exact");

/** The name index key: 48 bits of SHA-1, so collisions are rare and probing handles them. */
export function nameHash(name: string): number {
  return createHash("sha1").update(name, "utf8").digest().readUIntLE(0, NAME_HASH_BYTES);
}
