// `thinp serve` and `thinp start`: serve every volume of a pool over NBD until SIGINT
// or SIGTERM, taking management commands from other thinp processes meanwhile.

import type { Command } from "commander";
import type { FullPoolPolicy } from "../../src/thin/transactions.js";
import { parseFullPoolPolicy } from "../full-pool-option.js";
import { InvalidArgumentError as CommanderArgumentError } from "commander";
import { InvalidArgumentError as ThinpInvalidArgument } from "../../src/errors.js";
import type { AutoextendPolicy } from "../../src/control/autoextend.js";
import { POOL_BYTES_MAX } from "../../src/thin/limits.js";
import { existsSync } from "node:fs";
import { lstat, unlink } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { controlSocketPath } from "../../src/control/control-protocol.js";
import type { PoolService } from "../../src/control/pool-service.js";
import { ThinpError, type ErrorCode } from "../../src/errors.js";
import { assert } from "../../src/io/assert.js";
import type { NbdLog, NbdTlsOptions } from "../../src/nbd/index.js";
import { DEFAULT_POOL_BYTES } from "../../src/thin/limits.js";
import { Pool } from "../../src/thin/pool.js";
import { LISTEN_DEFAULT, parseListenAddress, type ListenAddress } from "../listen-address.js";
import { attachCommands, describeAddress, exportUri } from "../nbd-attach.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { resolvePoolPath } from "../pool-session.js";
import { ServiceNotifier } from "../service-notify.js";
import { ActivationConflictError, takeActivatedSockets } from "../socket-activation.js";
import { formatLogLine, parseLogFormat, type LogFields, type LogFormat } from "../log-lines.js";
import { addTlsOptions, loadServeTls, refuseInsecureListen, tlsBannerLines, type ServeTlsOptions } from "../serve-tls.js";
import { formatSize, parseSize } from "../size.js";
import { requireFolderOf } from "../user-files.js";

/** What `thinp start` creates when the pool does not exist yet. */
const START_DATA_FILE_NAME = "data.img";
const START_VOLUME_NAME = "base";
const START_VOLUME_BYTES = 1024 ** 3;

interface ServeOptions extends PoolOptions, ServeTlsOptions {
  listen?: ListenAddress;
  socket?: string;
  readOnly?: boolean;
  verbose?: boolean;
  whenFull?: FullPoolPolicy;
  autoextendAt?: number;
  autoextendBy?: number;
  autoextendMax?: string;
  metrics?: ListenAddress;
  logFormat: LogFormat;
}

export function registerServeCommands(program: Command): void {
  addServeOptions(
    program
      .command("serve")
      .description("serve every volume over NBD until SIGINT or SIGTERM; other thinp commands keep working meanwhile"),
  ).action((options: ServeOptions) => servePool(resolvePoolPath(options.pool), options));

  addServeOptions(
    program
      .command("start")
      .description(
        `serve the pool, first creating it (${formatSize(DEFAULT_POOL_BYTES)}, ${START_DATA_FILE_NAME} beside the metadata file) ` +
          `with a ${formatSize(START_VOLUME_BYTES)} volume '${START_VOLUME_NAME}' if its metadata file does not exist`,
      ),
  ).action(startPool);
}

function addServeOptions(command: Command): Command {
  addPoolOption(
    command
      .option(
        "--listen <host:port>",
        `TCP address for NBD; port 0 picks a free one (default: ${describeAddress({ kind: "tcp", ...LISTEN_DEFAULT })} unless --socket is given)`,
        parseListenAddress,
      )
      .option("--socket <path>", "Unix socket for NBD; alone, it replaces the TCP address, with --listen it is added")
      .option("--read-only", "open the pool read-only and export every volume read-only")
      .option(
        "--when-full <mode>",
        "when the pool is full: error (ENOSPC at once), or queue[:SECONDS] (hold writes that need a block up to SECONDS, default 60, while space is made)",
        parseFullPoolPolicy,
      )
      .option(
        "--autoextend-at <percent>",
        "grow the data file by itself once data use reaches PERCENT (as LVM's thin_pool_autoextend_threshold)",
        parsePercent,
      )
      .option("--autoextend-by <percent>", "with --autoextend-at: grow by PERCENT of the pool's size each time (default 20)", parsePercent)
      .option("--autoextend-max <size>", "with --autoextend-at: never grow the data file past SIZE (default: thinp's largest pool)")
      .option("--verbose", "also log each refused option and request")
      .option(
        "--metrics <host:port>",
        "serve Prometheus metrics over HTTP at /metrics (unauthenticated); port 0 picks a free one",
        parseListenAddress,
      )
      .option("--log-format <format>", "log lines on stderr as text, or as json (one object per line)", parseLogFormat, "text"),
  );
  addTlsOptions(command);
  return command;
}

async function startPool(options: ServeOptions): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  // Refused TLS options refuse before a pool is created for nothing.
  const tls = await checkedServeTls(options);
  if (!existsSync(metaPath)) await createStartPool(metaPath);
  await servePool(metaPath, options, tls);
}

async function createStartPool(metaPath: string): Promise<void> {
  const dataPath = path.join(path.dirname(metaPath), START_DATA_FILE_NAME);
  await requireFolderOf(metaPath);
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes: DEFAULT_POOL_BYTES });
  try {
    await pool.createVolume(START_VOLUME_NAME, START_VOLUME_BYTES);
    await pool.commit();
  } finally {
    await pool.close();
  }
  process.stdout.write(
    `created pool: ${formatSize(DEFAULT_POOL_BYTES)} of data in ${dataPath}, metadata in ${metaPath}, ` +
      `volume ${START_VOLUME_NAME} (${formatSize(START_VOLUME_BYTES)})\n`,
  );
}

async function checkedServeTls(options: ServeOptions): Promise<NbdTlsOptions | undefined> {
  const tls = await loadServeTls(options);
  refuseInsecureListen(options.listen, tls, options.insecure === true);
  return tls;
}

async function servePool(metaPath: string, options: ServeOptions, checkedTls?: NbdTlsOptions): Promise<void> {
  const tls = checkedTls ?? (await checkedServeTls(options));
  const listenFds = takeActivatedSockets(process.env, process.pid);
  if (listenFds !== null && options.listen) throw new ActivationConflictError("--listen");
  if (listenFds !== null && options.socket !== undefined) throw new ActivationConflictError("--socket");
  const notifier = ServiceNotifier.fromEnvironment(process.env, (message) => logLine("warn", message));
  const socketPath = options.socket === undefined ? undefined : path.resolve(options.socket);
  if (socketPath !== undefined) {
    await requireFolderOf(socketPath);
    await removeStaleSocket(socketPath);
  }
  const listen = options.listen ?? (socketPath === undefined && listenFds === null ? LISTEN_DEFAULT : undefined);
  // Listening for the signals before anything starts means a signal sent the moment the
  // banner appears (or while starting) still stops the server cleanly.
  logFormat = options.logFormat;
  const signals = new StopSignals();
  try {
    notifier.status(`opening ${metaPath}`);
    const service = await startService(metaPath, { listen, socketPath, listenFds }, tls, options);
    process.stdout.write(await renderBanner(service, metaPath, tls));
    notifier.ready(readyStatus(service, metaPath));
    const signal = await signals.requested;
    notifier.stopping(`${signal}: letting requests in flight finish, then committing ${metaPath}`);
    logLine("info", `${signal}: no new connections; letting requests in flight finish, then committing`, { signal });
    await service.stop();
    const { transactionId } = service.pool.status();
    logLine("info", `stopped; ${metaPath} committed at transaction ${transactionId}`, { transactionId });
  } finally {
    signals.dispose();
  }
}

interface Listeners {
  listen: ListenAddress | undefined;
  socketPath: string | undefined;
  /** Sockets systemd passed in; then neither of the others. */
  listenFds: number[] | null;
}

async function startService(
  metaPath: string,
  { listen, socketPath, listenFds }: Listeners,
  tls: NbdTlsOptions | undefined,
  options: ServeOptions,
): Promise<PoolService> {
  const nbdLog: NbdLog = (level, message, fields) => {
    if (level !== "debug" || options.verbose) logLine(level, message, fields);
  };
  // Loaded here, not at the top, so that every other command starts without the NBD server.
  const { startPoolService } = await import("../../src/control/pool-service.js");
  try {
    return await startPoolService({
      metaPath,
      listen,
      socketPath,
      listenFds: listenFds ?? undefined,
      readOnly: options.readOnly === true,
      whenFull: options.whenFull,
      autoextend: autoextendPolicy(options),
      readOnlyReason: `thinp serve (process ${process.pid}) was started with --read-only; stop it and run it again without --read-only to make changes`,
      log: (message) => logLine("info", message),
      nbdLog,
      metrics: options.metrics,
      tls,
    });
  } catch (failure) {
    // A pool that is locked, missing or corrupt is already an operating error.
    if (failure instanceof ThinpError) throw failure;
    const errno = (failure as NodeJS.ErrnoException | null)?.code;
    if (typeof errno !== "string") throw failure;
    const where = [
      listen && describeAddress({ kind: "tcp", ...listen }),
      options.metrics && describeAddress({ kind: "tcp", ...options.metrics }),
      socketPath,
      listenFds && `the socket-activated descriptors ${listenFds.join(", ")}`,
    ]
      .filter(Boolean)
      .join(" or ");
    throw new ListenError(where, failure as NodeJS.ErrnoException);
  }
}

/** The NBD or control socket could not be bound. */
class ListenError extends ThinpError {
  readonly code: ErrorCode = "IO_ERROR";
  constructor(where: string, failure: NodeJS.ErrnoException) {
    const hint =
      failure.code === "EADDRINUSE"
        ? ": the address is in use (another server?); choose another with --listen HOST:PORT or --socket PATH"
        : `: ${failure.message}`;
    super(`cannot listen on ${where}${hint}`);
  }
}

/**
 * A Unix socket left by a server that was killed blocks the next one from binding; it
 * is removed when nothing answers on it. Anything that is not a socket is left alone.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  const stats = await lstat(socketPath).catch(() => null);
  if (stats === null) return;
  if (!stats.isSocket()) throw new SocketPathTakenError(socketPath, "FILE_EXISTS", "it exists and is not a socket; refusing to replace it");
  const answered = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (answered) throw new SocketPathTakenError(socketPath, "IO_ERROR", "another server is listening on it");
  await unlink(socketPath);
}

class SocketPathTakenError extends ThinpError {
  constructor(
    socketPath: string,
    readonly code: ErrorCode,
    reason: string,
  ) {
    super(`cannot listen on ${socketPath}: ${reason}`);
  }
}

async function renderBanner(service: PoolService, metaPath: string, tls: NbdTlsOptions | undefined): Promise<string> {
  const volumes = await service.pool.listVolumes();
  const addresses = service.servers.map((server) => server.address);
  const primary = addresses[0];
  assert(primary !== undefined, "a pool service listens on TCP, on a socket, or on both");
  const tcp = addresses.find((address) => address.kind === "tcp");
  const lines = [
    `serving ${metaPath}: ${volumes.length} volume${volumes.length === 1 ? "" : "s"}${service.pool.readOnly ? ", read-only" : ""}`,
    ...addresses.map((address) => `listening on ${describeAddress(address)}  (${exportUri(address, "NAME")})`),
    ...(service.metrics ? [`metrics on http://${describeAddress({ kind: "tcp", ...service.metrics.address })}/metrics`] : []),
    ...tlsBannerLines(tls, tcp && describeAddress(tcp)),
    `control socket ${controlSocketPath(metaPath)}: create, snapshot, delete, resize, resize-pool, list, status, diff, send, receive and dump work while serving`,
    "",
  ];
  if (volumes.length === 0) lines.push("no volumes yet: create one with 'thinp create NAME --size SIZE'; it is exported at once", "");
  for (const volume of volumes) {
    lines.push(`${volume.name} (${formatSize(volume.sizeBytes)}${volume.readOnly ? ", read-only" : ""}):`);
    for (const command of attachCommands(primary, volume.name)) lines.push(`  ${command}`);
  }
  lines.push("", "stop with Ctrl-C or SIGTERM: requests in flight finish and the pool is committed");
  return lines.join("\n") + "\n";
}

/** One line for `systemctl status`: where it serves, and how much. */
function readyStatus(service: PoolService, metaPath: string): string {
  const addresses = service.servers.map((server) => describeAddress(server.address)).join(", ");
  return `serving ${metaPath} on ${addresses}${service.pool.readOnly ? ", read-only" : ""}`;
}

const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * SIGINT and SIGTERM, caught from before the server starts until it has stopped. The
 * first asks for a stop; later ones are only logged, since a second Ctrl-C would
 * otherwise kill the process before it commits (stopping is bounded anyway, by the
 * NBD server's drain timeout).
 */
class StopSignals {
  readonly requested: Promise<NodeJS.Signals>;
  private received: NodeJS.Signals | null = null;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.received === null) {
      this.received = signal;
      this.resolve(signal);
    } else {
      logLine("warn", `${signal}: already stopping; waiting for requests in flight, then committing`);
    }
  };
  private resolve!: (signal: NodeJS.Signals) => void;

  constructor() {
    this.requested = new Promise((resolve) => (this.resolve = resolve));
    for (const name of STOP_SIGNALS) process.on(name, this.onSignal);
  }

  /** Restores the default actions. */
  dispose(): void {
    for (const name of STOP_SIGNALS) process.off(name, this.onSignal);
  }
}

/** Set once from --log-format as serving starts; text until then. */
let logFormat: LogFormat = "text";

function logLine(level: string, message: string, fields?: LogFields): void {
  process.stderr.write(formatLogLine(logFormat, level, message, fields));
}

function parsePercent(text: string): number {
  const value = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(value > 0) || value > 100)
    throw new CommanderArgumentError("use a percentage above 0 and at most 100, e.g. 80");
  return value;
}

function autoextendPolicy(options: ServeOptions): AutoextendPolicy | undefined {
  if (options.autoextendAt === undefined) {
    if (options.autoextendBy !== undefined || options.autoextendMax !== undefined) {
      throw new ThinpInvalidArgument("--autoextend-by and --autoextend-max need --autoextend-at PERCENT, the use at which to grow");
    }
    return undefined;
  }
  return {
    atPercent: options.autoextendAt,
    byPercent: options.autoextendBy ?? 20,
    maxBytes: options.autoextendMax === undefined ? POOL_BYTES_MAX : parseSize(options.autoextendMax),
  };
}
