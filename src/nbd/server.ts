// The NBD server: accepts clients on TCP or a Unix socket and serves the catalog's exports.

import net from "node:net";
import { assert } from "../io/assert.js";
import { unixSocketPathOfFd } from "../io/unix-socket-path.js";
import { ByteBudget, type ByteBudgetReport } from "./byte-budget.js";
import type { ExportCatalog } from "./catalog.js";
import { NbdConnection } from "./connection.js";
import { DEFAULT_LIMITS, REQUEST_BYTES_MAX, type NbdLimits } from "./limits.js";
import { silentLog, type NbdLog } from "./nbd-log.js";
import { silentObserver, type NbdObserver } from "./nbd-observer.js";
import { nbdTls, type NbdTlsOptions } from "./tls.js";

/** The port IANA reserved for NBD. */
export const NBD_DEFAULT_PORT = 10809;

export interface NbdServerOptions {
  catalog: ExportCatalog;
  /** TCP address; defaults to 127.0.0.1:10809 when no socketPath is given. Port 0 picks a free port. */
  listen?: { host: string; port: number };
  /** Unix socket path, instead of TCP. */
  socketPath?: string;
  /** A socket already bound and listening (TCP or Unix; systemd's socket activation), instead of either. */
  fd?: number;
  /** Serve every export read-only, whatever its own flag says. */
  readOnly?: boolean;
  log?: NbdLog;
  /** Told of connections and requests, for metrics. */
  observer?: NbdObserver;
  /** Overrides for the defaults in limits.ts. */
  limits?: Partial<NbdLimits>;
  /** Offer (or require) NBD_OPT_STARTTLS with these credentials; without, the server has no TLS. */
  tls?: NbdTlsOptions;
}

export type NbdServerAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; socketPath: string };

export interface NbdServer {
  readonly address: NbdServerAddress;
  /** The NBD URI of an export on this server, as nbdinfo, nbdcopy, qemu and fio accept it. */
  uri(exportName: string): string;
  /** Connections currently open, in any phase. */
  readonly connectionCount: number;
  /**
   * The in-flight budget all connections share: its size (limits.serverInflightBytesMax),
   * the payload and reply bytes held now and at most so far, and the connections waiting.
   */
  readonly inflight: ByteBudgetReport;
  /** Stops accepting, lets in-flight requests finish, then closes every connection. */
  close(): Promise<void>;
}

function checkedLimits(overrides: Partial<NbdLimits> | undefined): NbdLimits {
  const limits = { ...DEFAULT_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    assert(Number.isSafeInteger(value) && value > 0, `limit ${name} = ${value}`);
  }
  // A maximum-size request must always be admissible, or a connection could wait forever.
  assert(limits.inflightBytesMax >= REQUEST_BYTES_MAX, "inflightBytesMax holds at least one maximum-size request");
  assert(limits.serverInflightBytesMax >= REQUEST_BYTES_MAX, "serverInflightBytesMax holds at least one maximum-size request");
  return limits;
}

function exportUri(address: NbdServerAddress, exportName: string): string {
  const path = encodeURIComponent(exportName);
  if (address.kind === "unix") return `nbd+unix:///${path}?socket=${encodeURIComponent(address.socketPath)}`;
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return `nbd://${host}:${address.port}/${path}`;
}

/** For a Unix socket passed in by descriptor, which Node cannot name: its path, or "fd N". */
async function inheritedSocketPath(fd: number | undefined): Promise<string | null> {
  if (fd === undefined) return null;
  return (await unixSocketPathOfFd(fd)) ?? `fd ${fd}`;
}

export async function startNbdServer(options: NbdServerOptions): Promise<NbdServer> {
  assert(
    [options.listen, options.socketPath, options.fd].filter((target) => target !== undefined).length <= 1,
    "listen on TCP, a Unix socket or a descriptor, one of them",
  );
  const limits = checkedLimits(options.limits);
  const log = options.log ?? silentLog;
  // One budget for every connection: what bounds the server's memory, however many clients.
  const budget = new ByteBudget(limits.serverInflightBytesMax);
  const observer = options.observer ?? silentObserver;
  // Certificates and keys are parsed here, once, so that bad ones fail the start, not a client.
  const tls = options.tls === undefined ? null : nbdTls(options.tls);
  const environment = { catalog: options.catalog, serverReadOnly: options.readOnly ?? false, limits, budget, log, observer, tls };
  const connections = new Set<NbdConnection>();
  const finished = new Map<NbdConnection, Promise<void>>();
  let nextConnectionId = 1;
  let closing: Promise<void> | null = null;

  // allowHalfOpen: a client that shuts down its sending side still gets its outstanding replies.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    if (closing !== null || connections.size >= limits.connectionsMax) {
      log(
        "warn",
        `refusing connection from ${socket.remoteAddress ?? "unix socket"}: ${closing ? "shutting down" : `${limits.connectionsMax} connections already open`}`,
      );
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    const connection = new NbdConnection(socket, nextConnectionId++, environment);
    connections.add(connection);
    observer.connectionOpened();
    const done = connection.run().finally(() => {
      observer.connectionClosed();
      connections.delete(connection);
      finished.delete(connection);
    });
    finished.set(connection, done);
  });
  server.on("error", (error) => log("warn", `server error: ${error.message}`));

  const listenTarget =
    options.fd !== undefined
      ? { fd: options.fd }
      : options.socketPath !== undefined
        ? { path: options.socketPath }
        : (options.listen ?? { host: "127.0.0.1", port: NBD_DEFAULT_PORT });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listenTarget, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  const address: NbdServerAddress =
    typeof bound === "string" || bound === null
      ? { kind: "unix", socketPath: options.socketPath ?? (await inheritedSocketPath(options.fd)) ?? String(bound) }
      : { kind: "tcp", host: bound.address, port: bound.port };
  log("info", `NBD server listening on ${address.kind === "tcp" ? `${address.host}:${address.port}` : address.socketPath}`);

  const close = async (): Promise<void> => {
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of connections) connection.shutdown();
    const drained = Promise.all(finished.values()).then(() => true);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), limits.drainTimeoutMs);
    });
    const allDrained = await Promise.race([drained, timedOut]);
    clearTimeout(timer);
    if (!allDrained) {
      log("warn", `connections still busy after ${limits.drainTimeoutMs} ms; dropping them`);
      for (const connection of connections) connection.destroy();
    }
    await serverClosed;
    log("info", "NBD server closed");
  };

  return {
    address,
    uri: (exportName) => exportUri(address, exportName),
    get connectionCount() {
      return connections.size;
    },
    get inflight() {
      return budget.report();
    },
    close: () => (closing ??= close()),
  };
}
