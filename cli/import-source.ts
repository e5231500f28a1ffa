// Where `thinp import` reads from: a regular file or a block device, read by position
// with its size known before anything is written; or stdin (`-`), a named pipe or a
// character device, read as a stream whose end is found by reading it.

import { promises as fs } from "node:fs";
import { isatty } from "node:tty";
import { ThinpError, type ErrorCode } from "../src/errors.js";
import { blockDeviceBytes } from "./block-devices.js";
import { IMAGE_FOOTER_BYTES, IMAGE_HEAD_BYTES, recogniseImageFormat, type ImageFormat } from "./image-formats.js";
import type { Interruption } from "./interruption.js";
import { openStreamReader, STDIN_FD, stdinReader, STDIO_PATH, type StreamReader } from "./stream-io.js";
import { DirectoryGivenError, TerminalGivenError, UnusableFileError } from "./transfer-errors.js";
import { onUserFile } from "./user-files.js";

export interface ImportSource {
  /** How messages name it: the path as given, or "stdin". */
  readonly name: string;
  /** Known before reading for a file or a device; null for a stream. */
  readonly byteLength: number | null;
  /** True when the source can only be read once, front to back. */
  readonly isStream: boolean;
  /**
   * For a file or a device, the container format its first and last bytes show, if
   * any. A stream shows its format only in its first chunk; the caller checks that.
   */
  readonly format: ImageFormat | null;
  /** Fills `target` with the next bytes; fewer only at the end, 0 once past it. Returns how many. */
  readNext(target: Buffer, interruption: Interruption): Promise<number>;
  close(): Promise<void>;
}

export async function openImportSource(pathArg: string, interruption: Interruption): Promise<ImportSource> {
  if (pathArg === STDIO_PATH) {
    if (isatty(STDIN_FD)) throw new TerminalGivenError("stdin");
    return new StreamSource("stdin", await stdinReader());
  }
  const stats = await onUserFile(pathArg, "input file", () => fs.stat(pathArg));
  if (stats.isDirectory()) throw new DirectoryGivenError(pathArg, "read");
  if (stats.isFile() || stats.isBlockDevice()) {
    const handle = await onUserFile(pathArg, "input file", () => fs.open(pathArg, "r"));
    try {
      const byteLength = stats.isFile() ? stats.size : await blockDeviceBytes(pathArg);
      const format = await probeFormat(pathArg, handle, byteLength);
      return new PositionalSource(pathArg, handle, byteLength, format);
    } catch (failure) {
      await handle.close();
      throw failure;
    }
  }
  if (stats.isFIFO() || stats.isCharacterDevice()) {
    // Opening a named pipe waits for its writer.
    return new StreamSource(pathArg, await onUserFile(pathArg, "input file", () => openStreamReader(pathArg, interruption)));
  }
  throw new UnusableFileError(pathArg, stats.isSocket() ? "a socket" : "not a file", "read");
}

async function probeFormat(name: string, handle: fs.FileHandle, byteLength: number | null): Promise<ImageFormat | null> {
  const head = Buffer.alloc(IMAGE_HEAD_BYTES);
  const { bytesRead } = await onUserFile(name, "input file", () => handle.read(head, 0, head.length, 0));
  let footer: Buffer | null = null;
  if (byteLength !== null && byteLength >= IMAGE_HEAD_BYTES + IMAGE_FOOTER_BYTES) {
    footer = Buffer.alloc(IMAGE_FOOTER_BYTES);
    await onUserFile(name, "input file", () => handle.read(footer!, 0, IMAGE_FOOTER_BYTES, byteLength - IMAGE_FOOTER_BYTES));
  }
  return recogniseImageFormat(head.subarray(0, bytesRead), footer);
}

/** A regular file or a block device: read at an explicit position, its length known (or, rarely, found at its end). */
class PositionalSource implements ImportSource {
  readonly isStream = false;
  private position = 0;

  constructor(
    readonly name: string,
    private readonly handle: fs.FileHandle,
    readonly byteLength: number | null,
    readonly format: ImageFormat | null,
  ) {}

  async readNext(target: Buffer): Promise<number> {
    const wanted = this.byteLength === null ? target.length : Math.min(target.length, this.byteLength - this.position);
    let filled = 0;
    while (filled < wanted) {
      const { bytesRead } = await onUserFile(this.name, "input file", () =>
        this.handle.read(target, filled, wanted - filled, this.position + filled),
      );
      if (bytesRead === 0) {
        if (this.byteLength === null) break;
        throw new InputShrankError(this.name, this.position + filled);
      }
      filled += bytesRead;
    }
    this.position += filled;
    return filled;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

class StreamSource implements ImportSource {
  readonly isStream = true;
  readonly byteLength = null;
  readonly format = null;

  constructor(
    readonly name: string,
    private readonly reader: StreamReader,
  ) {}

  readNext(target: Buffer, interruption: Interruption): Promise<number> {
    return onUserFile(this.name, "input", () => this.reader.fill(target, interruption));
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}

/** The file got shorter while it was being imported. */
class InputShrankError extends ThinpError {
  readonly code: ErrorCode = "IO_ERROR";
  constructor(filePath: string, atOffset: number) {
    super(`${filePath} ended at byte ${atOffset} while it was being imported; was it truncated?`);
  }
}
