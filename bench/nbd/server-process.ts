// One NBD server process under the bench's control: started, waited for until it accepts
// connections, and always stopped, also when the bench fails or is interrupted. Every
// child started here is tracked, and whatever is still running when the bench process
// exits is killed.

import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { assert } from "../../src/io/assert.js";

/** A server that is not listening by then has failed to start. */
const SERVER_START_TIMEOUT_MS = 30_000;
/** SIGTERM lets thinp drain and commit; past this, SIGKILL. */
const SERVER_STOP_TIMEOUT_MS = 30_000;
const PROBE_INTERVAL_MS = 50;
export const BENCH_HOST = "127.0.0.1";

const running = new Set<ChildProcess>();

process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Kills every server still running; the signal handlers of bench/nbd.ts call it. */
export function killAllServers(): void {
  for (const child of running) child.kill("SIGKILL");
}

export class ServerProcess {
  private readonly exited: Promise<number | null>;
  /** undefined while running. */
  private exitCode: number | null | undefined = undefined;

  private constructor(
    readonly label: string,
    private readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    running.add(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code) => {
        running.delete(child);
        // null when a signal ended it.
        this.exitCode = code;
        resolve(code);
      });
    });
  }

  /** The server's own process: spawned directly, no shell or wrapper in between. */
  get pid(): number {
    const pid = this.child.pid;
    assert(pid !== undefined, `${this.label} was spawned, so it has a pid`);
    return pid;
  }

  /** Starts `command`, its output going to `logPath`, and waits until `port` accepts. */
  static async start(
    label: string,
    command: string,
    args: string[],
    port: number,
    logPath: string,
    options: { ipc?: boolean } = {},
  ): Promise<ServerProcess> {
    const log = createWriteStream(logPath);
    await new Promise((resolve) => log.once("open", resolve));
    const stdio: SpawnOptions["stdio"] = options.ipc ? ["ignore", log, log, "ipc"] : ["ignore", log, log];
    const child = spawn(command, args, { stdio });
    const server = new ServerProcess(label, child, logPath);
    child.once("error", (error) => log.write(`spawn failed: ${error.message}\n`));
    try {
      await server.waitListening(port);
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  private async waitListening(port: number): Promise<void> {
    const deadline = performance.now() + SERVER_START_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (this.exitCode !== undefined) {
        throw new Error(`${this.label} exited with ${this.exitCode} before listening:\n${await this.logTail()}`);
      }
      if (await accepts(port)) return;
      await sleep(PROBE_INTERVAL_MS);
    }
    throw new Error(`${this.label} was not listening on port ${port} after ${SERVER_START_TIMEOUT_MS} ms:\n${await this.logTail()}`);
  }

  /** SIGTERM, then SIGKILL if it has not exited in time. Fails if the server did not exit cleanly. */
  async stop(): Promise<void> {
    if (this.exitCode === undefined) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), SERVER_STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    }
    // qemu-nbd and nbdkit exit 0 on SIGTERM; thinp exits 0 after draining and committing.
    if (this.exitCode !== 0) {
      throw new Error(`${this.label} exited with ${this.exitCode ?? "a signal"} when stopped:\n${await this.logTail()}`);
    }
  }

  async logTail(): Promise<string> {
    const text = await readFile(this.logPath, "utf8").catch(() => "");
    return text.split("\n").slice(-20).join("\n");
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: BENCH_HOST, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A port the kernel just handed out, so free unless something grabs it in between. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, BENCH_HOST, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("no TCP address for a probe listener"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
