// Sizes typed by a user, and sizes shown to one. Units are binary (K = 1024);
// a fraction is accepted when it comes to a whole number of bytes ("1.5G",
// "0.5K") and refused otherwise ("0.1K" would be 102.4 bytes).

import { InvalidSizeError } from "../src/errors.js";
import { assert } from "../src/io/assert.js";

const UNIT_BYTES: Readonly<Record<string, bigint>> = {
  "": 1n,
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
};

/** Digits before and after the point; long enough for any size below 2^53 bytes. */
const SIZE_TEXT_CHARS_MAX = 32;

const SIZE_PATTERN = /^(\d+)(?:\.(\d+))?\s*([KMGT]?)(?:iB|B)?$/i;

/**
 * Parses "65536", "64K", "512M", "10G", "1.5G", "2T", "10GiB" (suffix in any case)
 * into a byte count. Throws InvalidSizeError naming the text when it is not a
 * size, not a whole number of bytes, or too large for exact arithmetic.
 */
export function parseSize(text: string): number {
  const trimmed = text.trim();
  const match = trimmed.length <= SIZE_TEXT_CHARS_MAX ? SIZE_PATTERN.exec(trimmed) : null;
  // A bare "B" without a unit letter ("10B") is bytes; "10iB" is not a thing.
  if (match === null || (match[3] === "" && /ib$/i.test(trimmed))) {
    throw new InvalidSizeError(
      `size '${text}' not understood: use a number of bytes or a suffix K, M, G, T (binary: 1K = 1024)`,
    );
  }
  const [, wholeDigits, fractionDigits = "", unitLetter] = match;
  const unitBytes = UNIT_BYTES[unitLetter!.toUpperCase()]!;
  const scale = 10n ** BigInt(fractionDigits.length);
  const scaledBytes = (BigInt(wholeDigits!) * scale + BigInt(fractionDigits || "0")) * unitBytes;
  if (scaledBytes % scale !== 0n) {
    throw new InvalidSizeError(`size '${text}' is not a whole number of bytes`);
  }
  const byteCount = scaledBytes / scale;
  if (byteCount > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidSizeError(`size '${text}' is too large: the limit is ${Number.MAX_SAFE_INTEGER} bytes`);
  }
  return Number(byteCount);
}

const DISPLAY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;

/** "0 B", "512 B", "64 KiB", "1.5 GiB": rounded to one decimal, a trailing ".0" dropped. */
export function formatSize(byteCount: number): string {
  assert(Number.isSafeInteger(byteCount) && byteCount >= 0, `${byteCount} is not a byte count`);
  let unitIndex = 0;
  let tenths = byteCount * 10;
  // Pick the unit after rounding, so 1023.97 KiB reads "1 MiB", never "1024 KiB".
  while (Math.round(tenths) >= 1024 * 10 && unitIndex < DISPLAY_UNITS.length - 1) {
    tenths /= 1024;
    unitIndex += 1;
  }
  const shown = Math.round(tenths) / 10;
  const text = Number.isInteger(shown) ? String(shown) : shown.toFixed(1);
  return `${text} ${DISPLAY_UNITS[unitIndex]}`;
}
