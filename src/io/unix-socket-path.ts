// The path a listening Unix socket descriptor is bound to, for a socket this process did not
// bind itself (one systemd passed in): Node cannot say (server.address() is null then), and
// Linux's /proc tells it by the socket's inode.

import { readFile, readlink } from "node:fs/promises";

/** /proc/net/unix can be long on a busy host; a bound keeps a surprise from eating memory. */
const PROC_NET_UNIX_BYTES_MAX = 64 * 1024 * 1024;

/** The socket's path ('@name' for an abstract one), or null if it is unnamed or not a Unix socket. */
export async function unixSocketPathOfFd(fd: number): Promise<string | null> {
  const link = await readlink(`/proc/self/fd/${fd}`).catch(() => null);
  const inode = link === null ? null : /^socket:\[(\d+)\]$/.exec(link)?.[1];
  if (inode === undefined || inode === null) return null;
  const table = await readFile("/proc/net/unix", "utf8").catch(() => "");
  if (table.length > PROC_NET_UNIX_BYTES_MAX) return null;
  // "Num RefCount Protocol Flags Type St Inode Path": the path is the 8th field, absent when unnamed.
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields[6] === inode && fields[7] !== undefined) return fields.slice(7).join(" ");
  }
  return null;
}
