// Sizes typed by a user, and sizes shown to one. Units are binary (K = 1024);
// a fraction is accepted when it comes to a whole number of bytes ("1.5G",
// "0.5K") and refused otherwise ("0.1K" would be 102.4 bytes).

import { InvalidSizeError } from "../src/errors.js";
import { assert } from "../src/io/assert.js";
import { formatByteCount } from "../src/io/byte-units.js";

// One formatter for the engine's messages and the CLI's output; see src/io/byte-units.ts.
export { formatSize } from "../src/io/byte-units.js";

const UNIT_BYTES: Readonly<Record<string, bigint>> = {
  "": 1n,
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
  // Volumes may be up to 4 PiB; a size that large is typed as one.
  P: 1n << 50n,
};

/** Digits before and after the point; long enough for any size below 2^53 bytes. */
const SIZE_TEXT_CHARS_MAX = 32;

const SIZE_PATTERN = /^(\d+)(?:\.(\d+))?\s*([KMGTP]?)(?:iB|B)?$/i;

/**
 * Parses "65536", "64K", "512M", "10G", "1.5G", "2T", "4P", "10GiB" (suffix in any case)
 * into a byte count. Throws InvalidSizeError naming the text when it is not a
 * size, not a whole number of bytes, or too large for exact arithmetic.
 */
export function parseSize(text: string): number {
  const trimmed = text.trim();
  const match = trimmed.length <= SIZE_TEXT_CHARS_MAX ? SIZE_PATTERN.exec(trimmed) : null;
  // A bare "B" without a unit letter ("10B") is bytes; "10iB" is not a thing.
  if (match === null || (match[3] === "" && /ib$/i.test(trimmed))) {
    throw new InvalidSizeError(`size '${text}' not understood: use a number of bytes or a suffix K, M, G, T, P (binary: 1K = 1024)`);
  }
  const [, wholeDigits, fractionDigits = "", unitLetter = ""] = match;
  const unitBytes = UNIT_BYTES[unitLetter.toUpperCase()];
  assert(
    wholeDigits !== undefined && unitBytes !== undefined,
    "SIZE_PATTERN requires the digits and allows only the letters UNIT_BYTES holds",
  );
  const scale = 10n ** BigInt(fractionDigits.length);
  const scaledBytes = (BigInt(wholeDigits) * scale + BigInt(fractionDigits || "0")) * unitBytes;
  if (scaledBytes % scale !== 0n) {
    throw new InvalidSizeError(`size '${text}' is not a whole number of bytes`);
  }
  const byteCount = scaledBytes / scale;
  if (byteCount > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidSizeError(`size '${text}' is too large: the limit is ${formatByteCount(Number.MAX_SAFE_INTEGER)}`);
  }
  return Number(byteCount);
}
