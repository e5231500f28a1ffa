// Extended attributes on an open file, for the small facts thinp keeps beside a file's bytes
// rather than in them (the data file's pool identity: formats/data-file.md).

import { IoError } from "../errors.js";
import { ENODATA, ENOTSUP, EPERM, ERANGE, errnoName, libc } from "./libc.js";
import { XATTR_VALUE_BYTES_MAX } from "./limits.js";

// Its home is limits.ts; the name stays here for the modules that import it from here.
export { XATTR_VALUE_BYTES_MAX };

export type XattrRead = { kind: "value"; value: Buffer } | { kind: "absent" } | { kind: "unsupported" };

export function readXattr(fd: number, name: string, path: string): XattrRead {
  const buffer = Buffer.alloc(XATTR_VALUE_BYTES_MAX);
  const length = libc().fgetxattr(fd, name, buffer, buffer.length);
  if (length >= 0) return { kind: "value", value: buffer.subarray(0, length) };
  const errno = libc().errno();
  if (errno === ENODATA) return { kind: "absent" };
  if (errno === ENOTSUP || errno === EPERM) return { kind: "unsupported" };
  if (errno === ERANGE) throw new IoError(path, new Error(`extended attribute ${name} is longer than ${XATTR_VALUE_BYTES_MAX} bytes`));
  throw new IoError(path, new Error(`reading extended attribute ${name}: ${errnoName(errno)}`));
}

/** Writes the attribute; false where the file system (or the file's kind) has none. */
export function writeXattr(fd: number, name: string, value: Buffer, path: string): boolean {
  if (value.length > XATTR_VALUE_BYTES_MAX) throw new IoError(path, new Error(`extended attribute ${name} of ${value.length} bytes`));
  if (libc().fsetxattr(fd, name, value, value.length, 0) === 0) return true;
  const errno = libc().errno();
  if (errno === ENOTSUP || errno === EPERM) return false;
  throw new IoError(path, new Error(`writing extended attribute ${name}: ${errnoName(errno)}`));
}
