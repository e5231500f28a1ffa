// OS locks on open files (flock), so a pool is held through the file itself, not through a
// name: a symlink, a hard link, a rename or a second path to the same file meets the same
// lock, and the kernel drops the lock when its holder's file is closed or the process dies.

import { readFileSync } from "node:fs";
import { IoError } from "../errors.js";
import { EINTR, errnoName, EWOULDBLOCK, libc, LOCK_EX, LOCK_NB, LOCK_SH } from "./libc.js";
import { HOLDER_COMMAND_CHARS_MAX, LOCK_EINTR_RETRIES_MAX } from "./limits.js";

/** Readers share a pool; a writer has it to itself. */
export type LockMode = "shared" | "exclusive";

/** Takes the lock without waiting; false when another open file holds a conflicting one. */
export function tryLockFile(fd: number, mode: LockMode, path: string): boolean {
  const operation = (mode === "exclusive" ? LOCK_EX : LOCK_SH) | LOCK_NB;
  for (let attempt = 0; attempt < LOCK_EINTR_RETRIES_MAX; attempt++) {
    if (libc().flock(fd, operation) === 0) return true;
    const errno = libc().errno();
    if (errno === EWOULDBLOCK) return false;
    if (errno !== EINTR) throw new IoError(path, new Error(`flock failed: ${errnoName(errno)}`));
  }
  throw new IoError(path, new Error("flock kept being interrupted"));
}

export interface LockHolder {
  pid: number;
  /** The holder's command line, where /proc shows it. */
  command: string | null;
}

/**
 * Who holds a flock on the file with this device and inode, from /proc/locks; null where the
 * kernel does not say (no /proc, or a lock held through a descriptor inherited across fork
 * by a process that has since exited). `exceptPid` skips our own process's entry.
 */
export function findLockHolder(dev: number, ino: number, exceptPid = -1): LockHolder | null {
  let table: string;
  try {
    table = readFileSync("/proc/locks", "utf8");
  } catch {
    return null;
  }
  const fileKey = `${deviceKey(dev)}:${ino}`;
  for (const line of table.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 4101 fe:00:2146637 0 EOF"; blocked waiters start with "->".
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== "FLOCK" || fields[5] !== fileKey) continue;
    const pid = Number.parseInt(fields[4] ?? "", 10);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === exceptPid) continue;
    return { pid, command: commandOf(pid) };
  }
  return null;
}

/** /proc/locks prints the device as hex major:minor of the kernel's dev_t encoding. */
function deviceKey(dev: number): string {
  const big = BigInt(dev);
  const major = ((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn);
  const minor = (big & 0xffn) | ((big >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}`;
}

function commandOf(pid: number): string | null {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((arg) => arg.length > 0);
    if (argv.length === 0) return null;
    // A thinp command runs as `node .../main.js <command> ...`: show it as `thinp <command> ...`.
    const script = argv.findIndex((arg) => /(^|\/)main\.js$/.test(arg));
    const command = (script >= 0 ? ["thinp", ...argv.slice(script + 1)] : argv).join(" ").replace(/\s+/g, " ");
    return command.length > HOLDER_COMMAND_CHARS_MAX ? `${command.slice(0, HOLDER_COMMAND_CHARS_MAX - 3)}...` : command;
  } catch {
    return null;
  }
}
