// Extended attributes as a test sees them from outside thinp: read one, or remove one to
// make a data file look as it did before thinp recorded identities.

import { closeSync, openSync } from "node:fs";
import koffi from "koffi";

const libc = koffi.load("libc.so.6");
const fgetxattr = libc.func("intptr_t fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)");
const fremovexattr = libc.func("int fremovexattr(int fd, const char *name)");

/** The attribute's value as hex, or null when the file has none by that name. */
export function readXattrHex(filePath: string, name: string): string | null {
  const fd = openSync(filePath, "r");
  try {
    const value = Buffer.alloc(4096);
    const length = Number(fgetxattr(fd, name, value, value.length));
    return length < 0 ? null : value.subarray(0, length).toString("hex");
  } finally {
    closeSync(fd);
  }
}

export function removeXattr(filePath: string, name: string): void {
  const fd = openSync(filePath, "r");
  try {
    if (fremovexattr(fd, name) !== 0) throw new Error(`removing ${name} from ${filePath}: errno ${koffi.errno()}`);
  } finally {
    closeSync(fd);
  }
}
