// `thinp serve` run as a user would run it, in the background: started from the built
// CLI, ready once it has printed its attach commands, stopped by a signal.

import { spawn, type ChildProcess } from "node:child_process";
import { CLI_PATH } from "./cli-run.js";

/** Starting includes opening the pool; generous for a loaded machine, yet a hang fails the test. */
const SERVE_READY_TIMEOUT_MS = 20_000;
/** Stopping drains, commits and closes; the NBD server's own drain limit is longer, but nothing here is slow. */
const SERVE_STOP_TIMEOUT_MS = 15_000;
/** The last line of the banner: after it, every listener is up. */
const READY_LINE = "stop with Ctrl-C or SIGTERM";

export interface ServeProcess {
  readonly pid: number;
  /** The TCP port the server printed, when it listens on TCP. */
  readonly port: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** nbd://127.0.0.1:PORT/NAME on the TCP listener. */
  uri(exportName: string): string;
  /** Sends `signal` and waits for the exit; resolves the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** For afterEach: SIGKILL unless it has already exited. */
  kill(): void;
}

export interface ServeOptions {
  cwd: string;
  /** The command: "serve" or "start". */
  command?: string;
  /** Added to the environment. */
  env?: NodeJS.ProcessEnv;
  /** A program and its arguments that exec node with the rest appended, as a service manager would. */
  launcher?: readonly string[];
}

/** Every server a test file starts, so afterEach can kill the ones a failed test left running. */
const running = new Set<ServeProcess>();

export function killAllServers(): void {
  for (const server of running) server.kill();
  running.clear();
}

export async function startServe(args: readonly string[], options: ServeOptions): Promise<ServeProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  delete env.THINP_POOL;
  const command = [...(options.launcher ?? []), process.execPath, CLI_PATH, options.command ?? "serve", ...args];
  const child = spawn(command[0]!, command.slice(1), {
    cwd: options.cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  const server: ServeProcess = {
    pid: child.pid!,
    get port() {
      const match = /^listening on 127\.0\.0\.1:(\d+)/m.exec(stdout);
      return match ? Number(match[1]) : null;
    },
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    uri(exportName: string) {
      if (server.port === null) throw new Error(`the server printed no TCP address:\n${stdout}`);
      return `nbd://127.0.0.1:${server.port}/${exportName}`;
    },
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await withTimeout(
        exited,
        SERVE_STOP_TIMEOUT_MS,
        () => `thinp serve did not exit within ${SERVE_STOP_TIMEOUT_MS} ms of ${signal}\n${stderr}`,
      );
      running.delete(server);
      return code;
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      running.delete(server);
    },
  };
  running.add(server);
  await waitForReady(
    child,
    () => stdout,
    () => stderr,
    exited,
  );
  return server;
}

async function waitForReady(
  child: ChildProcess,
  stdout: () => string,
  stderr: () => string,
  exited: Promise<number | null>,
): Promise<void> {
  const ready = new Promise<void>((resolve) => {
    const check = () => {
      if (stdout().includes(READY_LINE)) {
        child.stdout!.off("data", check);
        resolve();
      }
    };
    child.stdout!.on("data", check);
  });
  const exitedEarly = exited.then((code) => {
    throw new Error(`thinp serve exited ${code} before it was ready\nstdout: ${stdout()}\nstderr: ${stderr()}`);
  });
  // Once ready, a later exit is the test's business, not an unhandled rejection.
  exitedEarly.catch(() => undefined);
  try {
    await withTimeout(
      Promise.race([ready, exitedEarly]),
      SERVE_READY_TIMEOUT_MS,
      () => `thinp serve not ready after ${SERVE_READY_TIMEOUT_MS} ms\n${stderr()}`,
    );
  } catch (failure) {
    child.kill("SIGKILL");
    throw failure;
  }
}

export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, describe: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(describe())), timeoutMs);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `probe` until it returns true, failing after `timeoutMs`: for effects that follow an event asynchronously. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not so after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
