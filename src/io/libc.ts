// The few C library calls Node has no API for (flock, the xattr calls, preadv2, Unix datagram
// sockets), bound once through
// koffi's foreign-function interface. Linux only, like the rest of thinp's file handling.

import { createRequire } from "node:module";
import type * as Koffi from "koffi";

export interface Libc {
  flock(fd: number, operation: number): number;
  fgetxattr(fd: number, name: string, value: Buffer, size: number): number;
  fsetxattr(fd: number, name: string, value: Buffer, size: number, flags: number): number;
  /** One preadv2 into `target` (one iovec): bytes read, or -1 with errno set. */
  preadv2(fd: number, target: Uint8Array, position: number, flags: number): number;
  /** fallocate(2): 0, or -1 with errno set. */
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  /** socket(2): a descriptor, or -1 with errno set. */
  socket(domain: number, type: number, protocol: number): number;
  /** sendto(2) with the address already encoded (`struct sockaddr_un` bytes): bytes sent, or -1. */
  sendto(fd: number, message: Uint8Array, flags: number, address: Uint8Array): number;
  close(fd: number): number;
  /** The errno the last failed call left. */
  errno(): number;
}

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;

export const EWOULDBLOCK = 11;
export const EINTR = 4;
export const ENODATA = 61;
export const ERANGE = 34;
export const EPERM = 1;
export const ENOTSUP = 95;
export const EAGAIN = 11;
export const EIO = 5;
export const EOPNOTSUPP = 95;
export const ENOSYS = 38;
/** fallocate: keep the file's size; with PUNCH_HOLE, give the range's blocks back to the file system. */
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;
export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
/** sendto: a peer that went away is an error, not SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
/** preadv2: fail with EAGAIN rather than wait for the disk (Linux 4.14). */
export const RWF_NOWAIT = 8;

let bound: Libc | null = null;

export function libc(): Libc {
  if (bound === null) {
    // Loaded on first use, not at import: commands that never open a file (help, --version,
    // those answered by a running server) do not pay for the FFI's native module.
    const koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
    const library = koffi.load("libc.so.6");
    const flock = library.func("int flock(int fd, int operation)");
    const fgetxattr = library.func("intptr_t fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)");
    const fsetxattr = library.func("int fsetxattr(int fd, const char *name, const uint8_t *value, size_t size, int flags)");
    koffi.struct("iovec", { iov_base: "void *", iov_len: "size_t" });
    const preadv2 = library.func("intptr_t preadv2(int fd, const iovec *iov, int iovcnt, int64_t offset, int flags)");
    const fallocate = library.func("int fallocate(int fd, int mode, int64_t offset, int64_t len)");
    const socket = library.func("int socket(int domain, int type, int protocol)");
    const sendto = library.func(
      "intptr_t sendto(int fd, const uint8_t *buf, size_t len, int flags, const uint8_t *addr, uint32_t addrlen)",
    );
    const close = library.func("int close(int fd)");
    bound = {
      flock: (fd, operation) => flock(fd, operation) as number,
      fgetxattr: (fd, name, value, size) => Number(fgetxattr(fd, name, value, size)),
      fsetxattr: (fd, name, value, size, flags) => fsetxattr(fd, name, value, size, flags) as number,
      preadv2: (fd, target, position, flags) => Number(preadv2(fd, { iov_base: target, iov_len: target.length }, 1, position, flags)),
      fallocate: (fd, mode, offset, length) => fallocate(fd, mode, offset, length) as number,
      socket: (domain, type, protocol) => socket(domain, type, protocol) as number,
      sendto: (fd, message, flags, address) => Number(sendto(fd, message, message.length, flags, address, address.length)),
      close: (fd) => close(fd) as number,
      errno: () => koffi.errno(),
    };
  }
  return bound;
}

/** The kernel's name for an errno, for messages (falls back to the number). */
export function errnoName(errno: number): string {
  const names: Record<number, string> = {
    1: "EPERM",
    4: "EINTR",
    5: "EIO",
    9: "EBADF",
    2: "ENOENT",
    11: "EWOULDBLOCK",
    13: "EACCES",
    22: "EINVAL",
    28: "ENOSPC",
    34: "ERANGE",
    37: "ENOLCK",
    38: "ENOSYS",
    61: "ENODATA",
    95: "ENOTSUP",
    111: "ECONNREFUSED",
  };
  return names[errno] ?? `errno ${errno}`;
}
