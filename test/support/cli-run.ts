// Runs the built CLI the way a user would: `node dist/cli/main.js ...` in a
// directory of the test's choosing, with a clean environment.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI_PATH = path.join(REPO_ROOT, "dist", "cli", "main.js");
/** Long enough for a 256 MiB export on a slow machine; a hung CLI fails the test instead of the run. */
const CLI_TIMEOUT_MS = 60_000;

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd: string;
  /** Added to the environment; THINP_POOL is removed from the inherited one unless given here. */
  env?: Record<string, string>;
}

export function assertCliBuilt(): void {
  if (!existsSync(CLI_PATH)) {
    throw new Error(`${CLI_PATH} is missing: run 'npm run build' (or 'npm test', which builds first)`);
  }
}

export function runCli(args: readonly string[], options: CliOptions): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.THINP_POOL;
  Object.assign(env, options.env);
  return runProgram(process.execPath, [CLI_PATH, ...args], { cwd: options.cwd, env, timeoutMs: CLI_TIMEOUT_MS });
}

/** Runs any program to completion, collecting its output; a timeout kills it and fails. */
export function runProgram(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: options.timeoutMs,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === null) reject(new Error(`${path.basename(command)} ${args.join(" ")} killed by ${signal}\n${stderr}`));
      else resolve({ exitCode: code, stdout, stderr });
    });
  });
}

/** Runs the CLI and fails with its stderr unless it exits 0. */
export async function runCliOk(args: readonly string[], options: CliOptions): Promise<string> {
  const result = await runCli(args, options);
  if (result.exitCode !== 0) {
    throw new Error(`thinp ${args.join(" ")} exited ${result.exitCode}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return result.stdout;
}

export async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "thinp-cli-"));
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Deterministic bytes (xorshift32) so a failing comparison can be reproduced from the seed. */
export function seededBytes(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.alloc(Math.ceil(byteLength / 4) * 4);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < byteLength; index += 4) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes.writeUInt32LE(state, index);
  }
  return bytes.subarray(0, byteLength);
}
