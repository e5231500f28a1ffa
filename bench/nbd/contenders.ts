// The servers the bench compares, each serving one export named "vol" on 127.0.0.1 from
// files in a directory it is given. Settings are chosen to match thinp, which writes through
// the page cache and syncs on NBD_CMD_FLUSH: qemu-nbd runs with --cache=writeback (its
// default) and --aio=threads, nbdkit's file plugin with its default cache mode.

import { execFile } from "node:child_process";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ThinpServerSetup } from "./thinp-server.js";
import { processCpuSeconds } from "./server-cpu.js";
import { BENCH_HOST, ServerProcess, freePort } from "./server-process.js";

const run = promisify(execFile);

export const EXPORT_NAME = "vol";
/**
 * Connections qemu-nbd accepts at once (its default is 1). The most the bench opens is four
 * fio jobs' connections in workload 4, plus the one fio opens briefly to learn the size;
 * nbdkit and thinp set no limit.
 */
const QEMU_NBD_CONNECTIONS_MAX = 8;
/**
 * Every bench pool's size: room for a 1 GiB volume and a full copy-on-write copy of it, with
 * room to spare, since a pool does not hand out quite all of its blocks (at the time of
 * writing, a 2 GiB pool ran out 2 MiB short of 2 GiB). The data file is sparse, so unused
 * room costs nothing.
 */
export const THINP_POOL_BYTES = 4 * 2 ** 30;
const THINP_SERVER_SCRIPT = fileURLToPath(new URL("./thinp-server.js", import.meta.url));

export interface ServedExport {
  uri: string;
  /** CPU seconds (user + system) the server process has used so far. */
  cpuSeconds(): Promise<number>;
  stop(): Promise<void>;
}

export interface Contender {
  label: string;
  /** A fresh export of `byteLength` that nothing has written yet. */
  serveFresh(dir: string, byteLength: number): Promise<ServedExport>;
}

export interface BenchOptions {
  /** Directory for V8 CPU profiles of the thinp server, when profiling. */
  cpuProfileDir?: string;
}

function exported(server: ServerProcess, port: number, exportName = EXPORT_NAME): ServedExport {
  return {
    uri: `nbd://${BENCH_HOST}:${port}/${exportName}`,
    cpuSeconds: () => processCpuSeconds(server.pid),
    stop: () => server.stop(),
  };
}

// ---- thinp -----------------------------------------------------------------------------

export function thinpPaths(dir: string): { dataPath: string; metaPath: string } {
  return { dataPath: join(dir, "pool.data"), metaPath: join(dir, "pool.meta") };
}

/** Starts the bench's thinp server child (thinp-server.ts) on a free port; the URI names `exportName`. */
export async function serveThinp(
  dir: string,
  setup: Omit<ThinpServerSetup, "port" | "dataPath" | "metaPath">,
  options: BenchOptions,
  exportName = EXPORT_NAME,
): Promise<ServedExport> {
  const port = await freePort();
  const full: ThinpServerSetup = { ...thinpPaths(dir), ...setup, port };
  const profile = options.cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`] : [];
  const server = await ServerProcess.start(
    "thinp",
    process.execPath,
    [...profile, THINP_SERVER_SCRIPT, JSON.stringify(full)],
    port,
    join(dir, `thinp-${port}.log`),
    { ipc: true },
  );
  return exported(server, port, exportName);
}

export function thinp(options: BenchOptions): Contender {
  return {
    label: "thinp",
    serveFresh: (dir, byteLength) =>
      serveThinp(
        dir,
        {
          createPoolBytes: Math.max(THINP_POOL_BYTES, 2 * byteLength),
          volumes: [{ name: EXPORT_NAME, sizeBytes: byteLength }],
          snapshots: [],
        },
        options,
      ),
  };
}

// ---- qemu-nbd and nbdkit ---------------------------------------------------------------

export async function serveQemuNbd(format: "raw" | "qcow2", imagePath: string, logDir: string): Promise<ServedExport> {
  const port = await freePort();
  const args = [
    `--format=${format}`,
    `--export-name=${EXPORT_NAME}`,
    `--bind=${BENCH_HOST}`,
    `--port=${port}`,
    "--persistent",
    `--shared=${QEMU_NBD_CONNECTIONS_MAX}`,
    "--cache=writeback",
    "--aio=threads",
    imagePath,
  ];
  const server = await ServerProcess.start(`qemu-nbd ${format}`, "qemu-nbd", args, port, join(logDir, `qemu-nbd-${port}.log`));
  return exported(server, port);
}

export async function createQcow2(path: string, byteLength: number, backingPath?: string): Promise<void> {
  const backing = backingPath ? ["-b", backingPath, "-F", "qcow2"] : [];
  await run("qemu-img", ["create", "-q", "-f", "qcow2", ...backing, path, String(byteLength)]);
}

/** A sparse raw file: like a fresh thin volume, it has no blocks until written. */
async function createSparseFile(path: string, byteLength: number): Promise<void> {
  const handle = await open(path, "wx");
  try {
    await handle.truncate(byteLength);
  } finally {
    await handle.close();
  }
}

export const qemuNbdRaw: Contender = {
  label: "qemu-nbd raw",
  async serveFresh(dir, byteLength) {
    const path = join(dir, "image.raw");
    await createSparseFile(path, byteLength);
    return serveQemuNbd("raw", path, dir);
  },
};

export const qemuNbdQcow2: Contender = {
  label: "qemu-nbd qcow2",
  async serveFresh(dir, byteLength) {
    const path = join(dir, "image.qcow2");
    await createQcow2(path, byteLength);
    return serveQemuNbd("qcow2", path, dir);
  },
};

export const nbdkitFile: Contender = {
  label: "nbdkit file",
  async serveFresh(dir, byteLength) {
    const path = join(dir, "image.raw");
    await createSparseFile(path, byteLength);
    const port = await freePort();
    const args = [
      "--foreground",
      "--exit-with-parent",
      `--ipaddr=${BENCH_HOST}`,
      `--port=${port}`,
      `--exportname=${EXPORT_NAME}`,
      "file",
      `file=${path}`,
    ];
    const server = await ServerProcess.start("nbdkit file", "nbdkit", args, port, join(dir, `nbdkit-${port}.log`));
    return exported(server, port);
  },
};
