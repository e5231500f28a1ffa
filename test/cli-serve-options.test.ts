// What `thinp serve` parses and prints without starting anything: --listen, the
// export URIs and the attach commands a user pastes into a shell.

import { describe, expect, it } from "vitest";
import { LISTEN_DEFAULT, NBD_PORT, parseListenAddress } from "../cli/listen-address.js";
import { attachCommands, describeAddress, exportUri, shellQuote } from "../cli/nbd-attach.js";
import { NBD_DEFAULT_PORT } from "../src/nbd/index.js";

describe("--listen", () => {
  it("takes HOST:PORT, a bracketed IPv6 address, and port 0 for a free port", () => {
    expect(parseListenAddress("127.0.0.1:10809")).toEqual({ host: "127.0.0.1", port: 10809 });
    expect(parseListenAddress("0.0.0.0:0")).toEqual({ host: "0.0.0.0", port: 0 });
    expect(parseListenAddress("localhost:2000")).toEqual({ host: "localhost", port: 2000 });
    expect(parseListenAddress("[::1]:10810")).toEqual({ host: "::1", port: 10810 });
  });

  it("refuses a missing port, a port past 65535 and an unbracketed IPv6 address", () => {
    for (const text of ["localhost", "127.0.0.1:", ":10809", "127.0.0.1:65536", "::1:10809", "127.0.0.1:-1", "host:port"]) {
      expect(() => parseListenAddress(text), text).toThrow(/use HOST:PORT/);
    }
  });

  it("defaults to the port IANA gave NBD, the same number the NBD layer uses", () => {
    expect(NBD_PORT).toBe(NBD_DEFAULT_PORT);
    expect(LISTEN_DEFAULT).toEqual({ host: "127.0.0.1", port: 10809 });
  });
});

describe("attach commands", () => {
  const tcp = { kind: "tcp", host: "127.0.0.1", port: 10809 } as const;
  const unix = { kind: "unix", socketPath: "/run/thinp/nbd.sock" } as const;

  it("name each export by the NBD URI specification", () => {
    expect(exportUri(tcp, "base")).toBe("nbd://127.0.0.1:10809/base");
    expect(exportUri({ kind: "tcp", host: "::1", port: 1 }, "base")).toBe("nbd://[::1]:1/base");
    expect(exportUri(unix, "base")).toBe("nbd+unix:///base?socket=%2Frun%2Fthinp%2Fnbd.sock");
    expect(describeAddress(unix)).toBe("/run/thinp/nbd.sock");
    expect(describeAddress({ kind: "tcp", host: "::1", port: 1 })).toBe("[::1]:1");
  });

  it("give nbd-client, qemu-img and nbdfuse lines ready to paste", () => {
    expect(attachCommands(tcp, "base")).toEqual([
      "nbd-client 127.0.0.1 10809 /dev/nbd0 -N base",
      "qemu-img info nbd://127.0.0.1:10809/base",
      "mkdir -p base.fuse && nbdfuse base.fuse/base nbd://127.0.0.1:10809/base &",
    ]);
    // A unix URI has a '?', which a shell would try to expand.
    expect(attachCommands(unix, "base")).toEqual([
      "nbd-client -unix /run/thinp/nbd.sock /dev/nbd0 -N base",
      "qemu-img info 'nbd+unix:///base?socket=%2Frun%2Fthinp%2Fnbd.sock'",
      "mkdir -p base.fuse && nbdfuse base.fuse/base 'nbd+unix:///base?socket=%2Frun%2Fthinp%2Fnbd.sock' &",
    ]);
  });

  it("quote only what a shell would change", () => {
    expect(shellQuote("image.raw")).toBe("image.raw");
    expect(shellQuote("my image.raw")).toBe("'my image.raw'");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });
});
