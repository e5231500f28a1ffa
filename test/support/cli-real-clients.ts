// The real programs the serve tests drive (nbdinfo, qemu-io, nbdcopy, nbdfuse, mkfs,
// mount), each with a time limit, and the clean-up that must run even when a test fails.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { runProgram, type CliResult } from "./cli-run.js";
import { withTimeout } from "./cli-serve-process.js";

/** One client command on a scratch volume; mkfs.ext4 of 256 MiB through FUSE is the slowest. */
const TOOL_TIMEOUT_MS = 30_000;
const FUSE_READY_TIMEOUT_MS = 10_000;
const FUSE_EXIT_TIMEOUT_MS = 10_000;

export type ToolResult = CliResult;

/** Runs a program to completion; a timeout kills it and fails. */
export function runTool(command: string, args: readonly string[], options: { cwd?: string } = {}): Promise<ToolResult> {
  return runProgram(command, args, { cwd: options.cwd, timeoutMs: TOOL_TIMEOUT_MS });
}

/** Runs a program and fails with its output unless it exits 0. */
export async function runToolOk(command: string, args: readonly string[], options: { cwd?: string } = {}): Promise<string> {
  const result = await runTool(command, args, options);
  if (result.exitCode !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.exitCode}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return result.stdout;
}

/** Export names `nbdinfo --list --json` reports. */
export async function listedExports(serverUri: string): Promise<string[]> {
  const listing = JSON.parse(await runToolOk("nbdinfo", ["--list", "--json", serverUri])) as { exports: { "export-name": string }[] };
  return listing.exports.map((entry) => entry["export-name"]).sort();
}

/**
 * FUSE mounts and loop mounts a test made, undone in reverse order by `cleanUp` whether
 * or not the test got as far as undoing them itself.
 */
export class KernelMounts {
  private readonly fuseDirs: string[] = [];
  private readonly loopMounts: string[] = [];
  private readonly fuseProcesses = new Set<ChildProcess>();

  /** Shows `uri` as the file DIR/NAME through nbdfuse; resolves once the file is there. */
  async attachFile(dir: string, uri: string, fileName: string): Promise<FuseFile> {
    await mkdir(dir, { recursive: true });
    const pidFile = path.join(path.dirname(dir), `${path.basename(dir)}.pid`);
    await rm(pidFile, { force: true });
    // -P writes the pid file once the mount is ready, which makes a clean readiness signal.
    const child = spawn("nbdfuse", ["-P", pidFile, path.join(dir, fileName), uri], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    this.fuseProcesses.add(child);
    this.fuseDirs.push(dir);
    const deadline = Date.now() + FUSE_READY_TIMEOUT_MS;
    while (!existsSync(pidFile)) {
      if (child.exitCode !== null) throw new Error(`nbdfuse ${uri} exited ${child.exitCode}: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`nbdfuse ${uri} not ready after ${FUSE_READY_TIMEOUT_MS} ms: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return {
      path: path.join(dir, fileName),
      detach: async () => {
        await runToolOk("fusermount3", ["-u", dir]);
        await withTimeout(exited, FUSE_EXIT_TIMEOUT_MS, () => `nbdfuse ${uri} still running ${FUSE_EXIT_TIMEOUT_MS} ms after unmount`);
        this.fuseProcesses.delete(child);
        this.fuseDirs.splice(this.fuseDirs.indexOf(dir), 1);
      },
    };
  }

  /** `mount -o loop` of a file (a FUSE file here); `readOnly` mounts it ro. */
  async loopMount(file: string, mountPoint: string, options: { readOnly?: boolean } = {}): Promise<LoopMount> {
    await mkdir(mountPoint, { recursive: true });
    await runToolOk("mount", ["-o", options.readOnly ? "loop,ro" : "loop", file, mountPoint]);
    this.loopMounts.push(mountPoint);
    return {
      path: mountPoint,
      unmount: async () => {
        // umount flushes the file system to the loop device and detaches it (autoclear).
        await runToolOk("umount", [mountPoint]);
        this.loopMounts.splice(this.loopMounts.indexOf(mountPoint), 1);
      },
    };
  }

  /** For afterEach: lazy unmounts, then FUSE unmounts, then kills any nbdfuse left. Never throws. */
  cleanUp(): void {
    for (const mountPoint of this.loopMounts.reverse()) spawnSync("umount", ["-l", mountPoint], { timeout: 10_000 });
    for (const dir of this.fuseDirs.reverse()) spawnSync("fusermount3", ["-u", "-z", dir], { timeout: 10_000 });
    for (const child of this.fuseProcesses) if (child.exitCode === null) child.kill("SIGKILL");
    this.loopMounts.length = 0;
    this.fuseDirs.length = 0;
    this.fuseProcesses.clear();
  }
}

export interface FuseFile {
  path: string;
  detach(): Promise<void>;
}

export interface LoopMount {
  path: string;
  unmount(): Promise<void>;
}

/**
 * One qemu-io process kept connected while the test does other things, fed one command
 * at a time on stdin: a client that is really "in the middle of writing".
 */
export class QemuIoSession {
  private output = "";
  private readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.setEncoding("utf8").on("data", (text: string) => (this.output += text));
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (this.output += text));
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    // Writing to a qemu-io that has died fails the next run() with its output, not with an EPIPE.
    child.stdin!.on("error", () => undefined);
  }

  static open(uri: string): QemuIoSession {
    return new QemuIoSession(spawn("qemu-io", ["-f", "raw", uri], { stdio: ["pipe", "pipe", "pipe"] }));
  }

  /** Sends one command and waits until its output matches `done`; returns that output. */
  async run(command: string, done: RegExp): Promise<string> {
    const start = this.output.length;
    this.child.stdin!.write(`${command}\n`);
    const deadline = Date.now() + TOOL_TIMEOUT_MS;
    while (!done.test(this.output.slice(start))) {
      if (this.child.exitCode !== null) throw new Error(`qemu-io exited during '${command}':\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`qemu-io '${command}' unanswered after ${TOOL_TIMEOUT_MS} ms:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const answer = this.output.slice(start);
    if (/verification failed|error|failed/i.test(answer)) throw new Error(`qemu-io '${command}' failed:\n${answer}`);
    return answer;
  }

  async quit(): Promise<void> {
    this.child.stdin!.end("quit\n");
    await withTimeout(this.exited, TOOL_TIMEOUT_MS, () => `qemu-io did not quit:\n${this.output}`);
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}
