// The built CLI run in the background, for tests that act while a command runs: send it
// a signal, feed its stdin a piece at a time, run other commands beside it. Its stdout
// is kept as bytes, since `thinp export NAME -` writes an image there.

import { spawn } from "node:child_process";
import type { Writable } from "node:stream";
import { CLI_PATH } from "./cli-run.js";

/** Long enough for the largest transfer these tests make on a loaded machine; a hang fails instead. */
const BACKGROUND_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 5;

export interface BackgroundExit {
  /** null when a signal killed it. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface BackgroundCli {
  readonly pid: number;
  /** Open only when started with `stdin: "pipe"`. */
  readonly stdin: Writable;
  readonly stderr: () => string;
  readonly exited: Promise<BackgroundExit>;
  readonly hasExited: () => boolean;
  /** Sends `signal` unless the process has already exited. */
  kill(signal: NodeJS.Signals): void;
}

/** Every process a test file starts, so afterEach can kill what a failed test left running. */
const running = new Set<BackgroundCli>();

/** SIGKILLs every process still running and waits for each to be gone. */
export async function killAllBackground(): Promise<void> {
  const left = [...running];
  for (const cli of left) cli.kill("SIGKILL");
  await Promise.allSettled(left.map((cli) => cli.exited));
  running.clear();
}

export function startCli(args: readonly string[], options: { cwd: string; stdin?: "pipe" | "ignore" }): BackgroundCli {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.THINP_POOL;
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    cwd: options.cwd,
    env,
    stdio: [options.stdin ?? "ignore", "pipe", "pipe"],
    timeout: BACKGROUND_TIMEOUT_MS,
  });
  const stdoutChunks: Buffer[] = [];
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => stdoutChunks.push(chunk));
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  // A command that refuses early closes its stdin while the test may still be writing.
  child.stdin?.on("error", () => undefined);
  let done = false;
  const exited = new Promise<BackgroundExit>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (exitCode, signal) => {
      done = true;
      running.delete(cli);
      resolve({ exitCode, signal, stdout: Buffer.concat(stdoutChunks), stderr });
    });
  });
  const cli: BackgroundCli = {
    pid: child.pid!,
    stdin: child.stdin!,
    stderr: () => stderr,
    exited,
    hasExited: () => done,
    kill(signal) {
      if (!done) child.kill(signal);
    },
  };
  running.add(cli);
  return cli;
}

/**
 * Polls `probe` until it returns a value other than null/false; fails naming `what` after
 * `timeoutMs`, or as soon as `whileRunning` has exited (it will not happen then).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | false> | T | null | false,
  whileRunning?: BackgroundCli,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== false) return value;
    if (whileRunning?.hasExited()) {
      const exit = await whileRunning.exited;
      throw new Error(`the command exited ${exit.exitCode ?? exit.signal} before ${what}\nstderr: ${exit.stderr}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}
