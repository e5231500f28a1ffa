// Reading and writing what cannot seek: stdin, stdout, a named pipe, a character device.
//
// A pipe (or socket) goes through a libuv stream, which waits for it in the event loop:
// a pipe that is slow to fill or drain stalls neither the signal handlers nor, once
// abandoned, the process's exit. Anything else (stdin or stdout redirected to a file, a
// character device) is read or written on its descriptor in the thread pool, as files are.
// An operation there that an interruption abandons may stay blocked, and exit() waits for
// every thread-pool thread, so such operations are counted (blocking-operations.ts).

import { close as closeFd, fstat, open, read, write } from "node:fs";
import net from "node:net";
import type { Readable, Writable } from "node:stream";
import { promisify } from "node:util";
import { IoError } from "../src/errors.js";
import { blockingOperationsInFlight, trackBlocking } from "./blocking-operations.js";
import type { Interruption } from "./interruption.js";

const fstatOf = promisify(fstat);
const openFd = promisify(open);
const readAt = promisify(read);
const writeAt = promisify(write);

/** The path that means stdin to import and stdout to export. */
export const STDIO_PATH = "-";
export const STDIN_FD = 0;
export const STDOUT_FD = 1;
/** How long to wait before asking a non-blocking descriptor again. */
const EAGAIN_RETRY_MS = 5;

export interface StreamReader {
  /** Fills `target` with the next bytes; fewer only at the end, 0 once past it. Returns how many. */
  fill(target: Buffer, interruption: Interruption): Promise<number>;
  close(): Promise<void>;
}

export interface StreamWriter {
  /** Writes all of `bytes` after what was written before. `bytes` must not change until this settles. */
  write(bytes: Uint8Array, interruption: Interruption): Promise<void>;
  /** Everything is written; releases the stream. */
  finish(): Promise<void>;
  /** After a failure: releases the stream without waiting for it. */
  abandon(): void;
}

async function isPipe(fd: number): Promise<boolean> {
  const stats = await fstatOf(fd);
  return stats.isFIFO() || stats.isSocket();
}

export async function stdinReader(): Promise<StreamReader> {
  // process.stdin is a libuv stream over a pipe; made only when needed, since making it changes fd 0.
  return (await isPipe(STDIN_FD)) ? new PipeReader(process.stdin) : new DescriptorReader(STDIN_FD, false);
}

export async function stdoutWriter(): Promise<StreamWriter> {
  return (await isPipe(STDOUT_FD)) ? new PipeWriter(process.stdout, false, "stdout") : new DescriptorWriter(STDOUT_FD, false, "stdout");
}

/** Opens a named pipe or character device; a pipe's open waits until its other end is opened. */
export async function openStreamReader(filePath: string, interruption: Interruption): Promise<StreamReader> {
  const fd = await interruption.race(trackBlocking(openFd(filePath, "r")));
  if (await isPipe(fd)) return new PipeReader(new net.Socket({ fd, readable: true, writable: false }));
  return new DescriptorReader(fd, true);
}

export async function openStreamWriter(filePath: string, interruption: Interruption): Promise<StreamWriter> {
  const fd = await interruption.race(trackBlocking(openFd(filePath, "w")));
  if (await isPipe(fd)) return new PipeWriter(new net.Socket({ fd, readable: false, writable: true }), true, filePath);
  return new DescriptorWriter(fd, true, filePath);
}

class PipeReader implements StreamReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private leftover: Buffer | null = null;
  private ended = false;

  constructor(private readonly stream: Readable) {
    this.chunks = stream[Symbol.asyncIterator]();
  }

  async fill(target: Buffer, interruption: Interruption): Promise<number> {
    let filled = 0;
    while (filled < target.length) {
      if (this.leftover === null) {
        if (this.ended) break;
        const next = await interruption.race(this.chunks.next());
        if (next.done) {
          this.ended = true;
          break;
        }
        this.leftover = next.value;
      }
      const chunk = this.leftover!;
      const usedBytes = Math.min(chunk.length, target.length - filled);
      chunk.copy(target, filled, 0, usedBytes);
      filled += usedBytes;
      this.leftover = usedBytes < chunk.length ? chunk.subarray(usedBytes) : null;
    }
    return filled;
  }

  async close(): Promise<void> {
    // A stream still open at the other end would keep the process alive, reading on.
    this.stream.destroy();
  }
}

class PipeWriter implements StreamWriter {
  constructor(
    private readonly stream: Writable,
    /** Ended on finish when this writer opened it; stdout is left open. */
    private readonly owned: boolean,
    private readonly name: string,
  ) {
    // A failed write (EPIPE: the reader went away) is reported to its callback, below; the
    // stream's own 'error' event would otherwise end the process as an uncaught error.
    stream.on("error", () => undefined);
  }

  write(bytes: Uint8Array, interruption: Interruption): Promise<void> {
    // The callback comes once the bytes are handed to the pipe: one chunk in flight at a time.
    return interruption.race(
      new Promise<void>((resolve, reject) =>
        this.stream.write(bytes, (error) => (error ? reject(writeFailure(error, this.name)) : resolve())),
      ),
    );
  }

  async finish(): Promise<void> {
    if (!this.owned) return;
    await new Promise<void>((resolve) => this.stream.end(resolve));
  }

  abandon(): void {
    if (this.owned) this.stream.destroy();
  }
}

/**
 * A write the system refused, as the I/O error it is: EPIPE above all, the reader (the other
 * end of a pipe, `ssh`, `head`) having gone away before the output was whole.
 */
function writeFailure(failure: unknown, name: string): unknown {
  const errno = (failure as NodeJS.ErrnoException | null)?.code;
  if (typeof errno !== "string") return failure;
  if (errno === "EPIPE") return new IoError(name, new Error("its reader went away before the output was whole (EPIPE)"));
  return new IoError(name, failure);
}

function isAgain(failure: unknown): boolean {
  const errno = (failure as NodeJS.ErrnoException | null)?.code;
  return errno === "EAGAIN" || errno === "EWOULDBLOCK";
}

function pause(interruption: Interruption): Promise<void> {
  return interruption.race(new Promise((resolve) => setTimeout(resolve, EAGAIN_RETRY_MS)));
}

/** A descriptor read in the thread pool. One someone set non-blocking answers EAGAIN when empty: waited out here. */
class DescriptorReader implements StreamReader {
  constructor(
    private readonly fd: number,
    private readonly owned: boolean,
  ) {}

  async fill(target: Buffer, interruption: Interruption): Promise<number> {
    let filled = 0;
    while (filled < target.length) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await interruption.race(trackBlocking(readAt(this.fd, target, filled, target.length - filled, null))));
      } catch (failure) {
        if (!isAgain(failure)) throw failure;
        await pause(interruption);
        continue;
      }
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled;
  }

  async close(): Promise<void> {
    // Not closed while a read may still be using it: the number could be reused under it.
    if (this.owned && blockingOperationsInFlight() === 0) await promisify(closeFd)(this.fd);
  }
}

class DescriptorWriter implements StreamWriter {
  constructor(
    private readonly fd: number,
    private readonly owned: boolean,
    private readonly name: string,
  ) {}

  async write(bytes: Uint8Array, interruption: Interruption): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      try {
        const { bytesWritten } = await interruption.race(trackBlocking(writeAt(this.fd, bytes, done, bytes.length - done, null)));
        if (bytesWritten === 0) throw new Error(`no bytes written after ${done} of ${bytes.length}`);
        done += bytesWritten;
      } catch (failure) {
        if (!isAgain(failure)) throw writeFailure(failure, this.name);
        await pause(interruption);
      }
    }
  }

  async finish(): Promise<void> {
    if (this.owned) await promisify(closeFd)(this.fd);
  }

  abandon(): void {
    if (this.owned && blockingOperationsInFlight() === 0) closeFd(this.fd, () => undefined);
  }
}
