// Byte counts as a person reads them. Units are binary (1 KiB = 1024 bytes), the
// same units sizes are typed in. The engine's messages and the CLI's tables share
// this one formatter, so a limit reads the same wherever it is printed.

import { assert } from "./assert.js";
import { isSafeCount } from "./integers.js";

const DISPLAY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;
const UNIT_STEP = 1024;

/** "0 B", "512 B", "64 KiB", "1.5 GiB": rounded to one decimal, a trailing ".0" dropped. */
export function formatSize(byteCount: number): string {
  assert(isSafeCount(byteCount), `${byteCount} is not a byte count`);
  let unitIndex = 0;
  let tenths = byteCount * 10;
  // Pick the unit after rounding, so 1023.97 KiB reads "1 MiB", never "1024 KiB".
  while (Math.round(tenths) >= UNIT_STEP * 10 && unitIndex < DISPLAY_UNITS.length - 1) {
    tenths /= UNIT_STEP;
    unitIndex += 1;
  }
  const shown = Math.round(tenths) / 10;
  const text = Number.isInteger(shown) ? String(shown) : shown.toFixed(1);
  return `${text} ${DISPLAY_UNITS[unitIndex]}`;
}

/**
 * For messages: "4 PiB (4503599627370496 bytes)", both the unit a person reads and the
 * exact count a script or a size option takes; "1000 bytes" below 1 KiB, where the unit
 * adds nothing. A value that is not a byte count at all (the thing being refused) is
 * shown as it is.
 */
export function formatByteCount(byteCount: number): string {
  if (!isSafeCount(byteCount) || byteCount < UNIT_STEP) return `${byteCount} bytes`;
  return `${formatSize(byteCount)} (${byteCount} bytes)`;
}
