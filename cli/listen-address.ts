// `--listen HOST:PORT` for `thinp serve`: an IPv4 address or name, or an IPv6 address in brackets.

import { InvalidArgumentError } from "commander";
import { assert } from "../src/io/assert.js";

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * IANA's port for NBD. src/nbd exports it too (NBD_DEFAULT_PORT), but importing that would
 * load the whole NBD server into every thinp command; test/cli-serve-options.test.ts keeps
 * the two equal.
 */
export const NBD_PORT = 10809;

export const LISTEN_DEFAULT: ListenAddress = { host: "127.0.0.1", port: NBD_PORT };

const PORT_MAX = 65535;
const LISTEN_PATTERN = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/;

/** Port 0 asks the system for a free port; the server prints the one it got. */
export function parseListenAddress(text: string): ListenAddress {
  const match = LISTEN_PATTERN.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > PORT_MAX) {
    // Commander prints this after the option's name and exits with the usage status.
    throw new InvalidArgumentError(`use HOST:PORT with a port from 0 to ${PORT_MAX}, e.g. 127.0.0.1:10809 or [::1]:10809`);
  }
  const host = match[1] ?? match[2];
  assert(host !== undefined, "LISTEN_PATTERN matches either a bracketed host or a bare one");
  return { host, port };
}
