// One datagram to a Unix socket: what systemd's readiness protocol (sd_notify) needs. Node's
// dgram module speaks only UDP, so the socket is made through libc.

import { assert } from "./assert.js";
import { AF_UNIX, EAGAIN, errnoName, libc, MSG_NOSIGNAL, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK } from "./libc.js";

/** sizeof(sockaddr_un.sun_path) on Linux. */
export const UNIX_PATH_BYTES_MAX = 108;
const SUN_FAMILY_BYTES = 2;

/**
 * `struct sockaddr_un` for `address`: a path, or an abstract name written with a leading '@'
 * (as systemd writes it in NOTIFY_SOCKET), which the kernel takes as a leading NUL byte. An
 * abstract name's length is exactly its bytes; a path's includes its terminating NUL.
 */
export function encodeUnixAddress(address: string): Buffer {
  assert(address.length > 0, "a Unix socket address is not empty");
  const abstract = address.startsWith("@");
  const name = Buffer.from(abstract ? address.slice(1) : address, "utf8");
  const pathBytes = abstract ? 1 + name.length : name.length + 1;
  if (pathBytes > UNIX_PATH_BYTES_MAX) throw new RangeError(`Unix socket address ${address} is longer than ${UNIX_PATH_BYTES_MAX} bytes`);
  const encoded = Buffer.alloc(SUN_FAMILY_BYTES + pathBytes);
  encoded.writeUInt16LE(AF_UNIX, 0);
  name.copy(encoded, SUN_FAMILY_BYTES + (abstract ? 1 : 0));
  return encoded;
}

/**
 * Sends `message` as one datagram to `address` without ever blocking the event loop: a
 * receiver whose queue is full loses it (the result says so) rather than stalling the server.
 * Returns null when it was sent, else the errno's name.
 */
export function sendUnixDatagram(address: string, message: Uint8Array): string | null {
  const sockaddr = encodeUnixAddress(address);
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errnoName(c.errno());
  try {
    const sent = c.sendto(fd, message, MSG_NOSIGNAL, sockaddr);
    if (sent < 0) {
      const errno = c.errno();
      return errno === EAGAIN ? "EAGAIN (the receiver's queue is full)" : errnoName(errno);
    }
    // A datagram is sent whole or not at all.
    assert(sent === message.length, `sendto sent ${sent} of ${message.length} bytes`);
    return null;
  } finally {
    c.close(fd);
  }
}
