// How a user reaches an export of a running `thinp serve`: its NBD URI, and the
// command line of each common client, ready to paste into a shell.

import type { NbdServerAddress } from "../src/nbd/index.js";

/** Where a server listens, as people write it: "127.0.0.1:10809", "[::1]:10809" or the socket's path. */
export function describeAddress(address: NbdServerAddress): string {
  return address.kind === "unix" ? address.socketPath : `${bracketedHost(address.host)}:${address.port}`;
}

/** The URI nbdinfo, nbdcopy, nbdfuse, qemu and fio accept (the NBD URI specification). */
export function exportUri(address: NbdServerAddress, exportName: string): string {
  const name = encodeURIComponent(exportName);
  if (address.kind === "unix") return `nbd+unix:///${name}?socket=${encodeURIComponent(address.socketPath)}`;
  return `nbd://${bracketedHost(address.host)}:${address.port}/${name}`;
}

/**
 * One line per client: the kernel's nbd-client, qemu-img, and nbdfuse (which shows the
 * volume as a file the kernel can loop-mount where the nbd module is missing).
 */
export function attachCommands(address: NbdServerAddress, exportName: string): string[] {
  const uri = shellQuote(exportUri(address, exportName));
  const kernel =
    address.kind === "unix"
      ? `nbd-client -unix ${shellQuote(address.socketPath)} /dev/nbd0 -N ${shellQuote(exportName)}`
      : `nbd-client ${address.host} ${address.port} /dev/nbd0 -N ${shellQuote(exportName)}`;
  const fuseDir = shellQuote(`${exportName}.fuse`);
  return [kernel, `qemu-img info ${uri}`, `mkdir -p ${fuseDir} && nbdfuse ${fuseDir}/${shellQuote(exportName)} ${uri} &`];
}

/** Leaves plain words alone; anything a shell would expand (`?` in a unix URI, spaces) is single-quoted. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_./:@%+=,-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function bracketedHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
