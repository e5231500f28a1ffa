// The size of a block device. stat() says 0 for one, and Node has no ioctl(BLKGETSIZE64)
// or lseek(SEEK_END); Linux publishes each device's size in sysfs instead, in 512-byte
// sectors whatever the device's own sector size.

import { readFile, stat } from "node:fs/promises";

const SYSFS_SECTOR_BYTES = 512;

/** The device's size in bytes, or null where sysfs does not say (not Linux, sysfs not mounted). */
export async function blockDeviceBytes(devicePath: string): Promise<number | null> {
  const { rdev } = await stat(devicePath, { bigint: true });
  // glibc's major() and minor() of a dev_t: the numbers are split across the word.
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const text = await readFile(`/sys/dev/block/${major}:${minor}/size`, "utf8").catch(() => null);
  if (text === null || !/^\d+\s*$/.test(text)) return null;
  const byteCount = Number(text.trim()) * SYSFS_SECTOR_BYTES;
  return Number.isSafeInteger(byteCount) ? byteCount : null;
}
