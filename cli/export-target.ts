// Where `thinp export` writes. A file is written under a temporary name beside it and
// renamed into place only once complete and synced, so the name the user gave holds a
// whole image or is left as it was (a file replaced with --force stays intact until the
// rename). A block device is written in place, having no name to rename onto. stdout
// (`-`), a named pipe or a character device takes the image as a stream, front to back.

import { syncPath } from "../src/io/sync-path.js";
import { constants, promises as fs, type Stats } from "node:fs";
import path from "node:path";
import { isatty } from "node:tty";
import { IoError, ThinpError, type ErrorCode } from "../src/errors.js";
import { assert } from "../src/io/assert.js";
import { blockDeviceBytes } from "./block-devices.js";
import type { Interruption } from "./interruption.js";
import { formatSize } from "./size.js";
import { openStreamWriter, STDIO_PATH, STDOUT_FD, stdoutWriter, type StreamWriter } from "./stream-io.js";
import { DirectoryGivenError, TerminalGivenError, UnusableFileError } from "./transfer-errors.js";
import { onUserFile, requireFolderOf } from "./user-files.js";

const PARTIAL_SUFFIX = ".thinp-partial-";
/** Keeps the temporary name within NAME_MAX (255 bytes) however long the target's name is. */
const PARTIAL_BASE_BYTES_MAX = 200;

/** What the target is, found before the pool is opened so a wrong path fails at once. */
export type ExportTargetPlan =
  | { kind: "file"; name: string; finalPath: string; replacing: Stats | null }
  | { kind: "device"; name: string }
  | { kind: "stream"; name: string; path: string | null };

export interface ExportTarget {
  readonly plan: ExportTargetPlan;
  /** Bytes never written read as zeros (a new sparse file), so holes and zero blocks are skipped. */
  readonly holesReadAsZero: boolean;
  write(bytes: Uint8Array, position: number, interruption: Interruption): Promise<void>;
  /** Makes everything written durable. */
  flush(): Promise<void>;
  /** Puts the finished copy where the user asked: a file's rename. */
  place(): Promise<void>;
  /** After a failure: closes and removes what it made where it can; says what is left behind. */
  abandon(): Promise<string>;
  /** The line that reports a finished export of `dataBytes` of data. */
  summarize(volumeName: string, volumeBytes: number, dataBytes: number): string;
}

class TargetExistsError extends ThinpError {
  readonly code: ErrorCode = "FILE_EXISTS";
  constructor(readonly path: string) {
    super(`${path} already exists; add --force to replace it`);
  }
}

class DeviceNeedsForceError extends ThinpError {
  readonly code: ErrorCode = "FILE_EXISTS";
  constructor(devicePath: string, volumeName: string) {
    super(`${devicePath} is a block device; add --force to overwrite it with '${volumeName}'`);
  }
}

class DeviceTooSmallError extends ThinpError {
  readonly code: ErrorCode = "OUT_OF_RANGE";
  constructor(devicePath: string, deviceBytes: number, volumeName: string, volumeBytes: number) {
    super(
      `${devicePath} holds ${deviceBytes} bytes (${formatSize(deviceBytes)}) and '${volumeName}' is ${volumeBytes} bytes ` +
        `(${formatSize(volumeBytes)}); the device must be at least as large as the volume`,
    );
  }
}

class DeviceBusyError extends ThinpError {
  readonly code: ErrorCode = "IO_ERROR";
  constructor(devicePath: string) {
    super(`${devicePath} is in use (mounted, or open exclusively by another program); release it first`);
  }
}

export async function planExportTarget(pathArg: string, force: boolean, volumeName: string): Promise<ExportTargetPlan> {
  if (pathArg === STDIO_PATH) {
    if (isatty(STDOUT_FD)) throw new TerminalGivenError("stdout");
    return { kind: "stream", name: "stdout", path: null };
  }
  const stats = await fs.stat(pathArg).catch((failure: NodeJS.ErrnoException) => {
    // ENOTDIR: a file where a folder of the path should be; requireFolderOf names it.
    if (failure.code === "ENOENT" || failure.code === "ENOTDIR") return null;
    throw new IoError(pathArg, failure);
  });
  if (stats === null) {
    await requireFolderOf(pathArg);
    return { kind: "file", name: pathArg, finalPath: pathArg, replacing: null };
  }
  if (stats.isDirectory()) throw new DirectoryGivenError(pathArg, "write");
  if (stats.isFile()) {
    if (!force) throw new TargetExistsError(pathArg);
    // Through a symlink, the file it points to is replaced and the link kept.
    const isLink = (await fs.lstat(pathArg)).isSymbolicLink();
    const finalPath = isLink ? await onUserFile(pathArg, "output file", () => fs.realpath(pathArg)) : pathArg;
    return { kind: "file", name: pathArg, finalPath, replacing: stats };
  }
  if (stats.isBlockDevice()) {
    if (!force) throw new DeviceNeedsForceError(pathArg, volumeName);
    return { kind: "device", name: pathArg };
  }
  if (stats.isFIFO() || stats.isCharacterDevice()) return { kind: "stream", name: pathArg, path: pathArg };
  throw new UnusableFileError(pathArg, stats.isSocket() ? "a socket" : "not a file", "write");
}

export async function openExportTarget(
  plan: ExportTargetPlan,
  volumeName: string,
  volumeBytes: number,
  interruption: Interruption,
): Promise<ExportTarget> {
  switch (plan.kind) {
    case "file":
      return FileTarget.create(plan, volumeBytes);
    case "device":
      return DeviceTarget.open(plan, volumeName, volumeBytes);
    case "stream":
      return StreamTarget.open(plan, volumeName, interruption);
  }
}

async function writeAtPosition(handle: fs.FileHandle, name: string, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await onUserFile(name, "output file", () => handle.write(bytes, done, bytes.length - done, position + done));
    if (bytesWritten === 0) throw new IoError(name, new Error(`no bytes written at offset ${position + done}`));
    done += bytesWritten;
  }
}

/** Errors from link() that mean the file system has no hard links, not that the name is taken. */
const NO_HARD_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK", "ENOSYS"]);

class FileTarget implements ExportTarget {
  readonly holesReadAsZero = true;
  private closed = false;

  private constructor(
    readonly plan: ExportTargetPlan & { kind: "file" },
    private readonly handle: fs.FileHandle,
    private readonly partialPath: string,
    /** The partial file as the user would name it: in the folder they gave. */
    private readonly partialName: string,
  ) {}

  static async create(plan: ExportTargetPlan & { kind: "file" }, volumeBytes: number): Promise<FileTarget> {
    const base = Buffer.from(path.basename(plan.finalPath)).subarray(0, PARTIAL_BASE_BYTES_MAX).toString();
    const partialBase = `.${base}${PARTIAL_SUFFIX}${process.pid}`;
    const partialPath = path.join(path.dirname(plan.finalPath), partialBase);
    const partialName = plan.finalPath === plan.name ? path.join(path.dirname(plan.name), partialBase) : partialPath;
    const handle = await onUserFile(partialName, "output file", () => fs.open(partialPath, "wx"));
    const target = new FileTarget(plan, handle, partialPath, partialName);
    try {
      // The replaced file's permissions carry over to its replacement.
      if (plan.replacing) await onUserFile(partialName, "output file", () => handle.chmod(plan.replacing!.mode & 0o7777));
      // Setting the length first makes every byte not written a hole that reads as zero.
      await onUserFile(partialName, "output file", () => handle.truncate(volumeBytes));
    } catch (failure) {
      await target.abandon();
      throw failure;
    }
    return target;
  }

  write(bytes: Uint8Array, position: number): Promise<void> {
    return writeAtPosition(this.handle, this.partialName, bytes, position);
  }

  async flush(): Promise<void> {
    // Synced before the rename: else a crash just after it could leave the name on an empty file.
    await onUserFile(this.partialName, "output file", () => this.handle.sync());
    this.closed = true;
    await onUserFile(this.partialName, "output file", () => this.handle.close());
  }

  async place(): Promise<void> {
    assert(this.closed, "a partial file is placed only after it is flushed");
    const { finalPath, name } = this.plan;
    if (this.plan.replacing) {
      await onUserFile(name, "output file", () => fs.rename(this.partialPath, finalPath));
    } else {
      // link() fails where rename() would replace: a file made at the name meanwhile is kept.
      const linked = await fs.link(this.partialPath, finalPath).then(
        () => true,
        (failure: NodeJS.ErrnoException) => {
          if (failure.code === "EEXIST") throw new TargetExistsError(name);
          if (NO_HARD_LINKS.has(failure.code ?? "")) return false;
          throw new IoError(name, failure);
        },
      );
      if (linked) await onUserFile(name, "output file", () => fs.unlink(this.partialPath));
      else {
        if (
          await fs.lstat(finalPath).then(
            () => true,
            () => false,
          )
        )
          throw new TargetExistsError(name);
        await onUserFile(name, "output file", () => fs.rename(this.partialPath, finalPath));
      }
    }
    // Makes the rename durable; a file system that cannot sync a folder has nothing to make durable.
    await syncPath(path.dirname(finalPath)).catch(() => undefined);
  }

  async abandon(): Promise<string> {
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    await fs.rm(this.partialPath, { force: true });
    return `removed the partial file ${this.partialName}`;
  }

  summarize(volumeName: string, volumeBytes: number, dataBytes: number): string {
    return (
      `exported ${volumeName} (${formatSize(volumeBytes)}) to ${path.basename(this.plan.name)}: ` +
      `${formatSize(dataBytes)} of data, the rest left as holes`
    );
  }
}

class DeviceTarget implements ExportTarget {
  readonly holesReadAsZero = false;
  private closed = false;

  private constructor(
    readonly plan: ExportTargetPlan & { kind: "device" },
    private readonly handle: fs.FileHandle,
    private readonly volumeName: string,
    private readonly deviceBytes: number,
  ) {}

  static async open(plan: ExportTargetPlan & { kind: "device" }, volumeName: string, volumeBytes: number): Promise<DeviceTarget> {
    // O_EXCL on a block device: refused while it is mounted or another program holds it so.
    const handle = await fs.open(plan.name, constants.O_RDWR | constants.O_EXCL).catch((failure: NodeJS.ErrnoException) => {
      if (failure.code === "EBUSY") throw new DeviceBusyError(plan.name);
      throw new IoError(plan.name, failure);
    });
    let deviceBytes: number | null;
    try {
      deviceBytes = await blockDeviceBytes(plan.name);
      if (deviceBytes === null) throw new IoError(plan.name, new Error("its size is not in /sys/dev/block; cannot check the volume fits"));
      if (deviceBytes < volumeBytes) throw new DeviceTooSmallError(plan.name, deviceBytes, volumeName, volumeBytes);
    } catch (failure) {
      await handle.close();
      throw failure;
    }
    return new DeviceTarget(plan, handle, volumeName, deviceBytes);
  }

  write(bytes: Uint8Array, position: number): Promise<void> {
    return writeAtPosition(this.handle, this.plan.name, bytes, position);
  }

  async flush(): Promise<void> {
    await onUserFile(this.plan.name, "output device", () => this.handle.sync());
    this.closed = true;
    await onUserFile(this.plan.name, "output device", () => this.handle.close());
  }

  async place(): Promise<void> {}

  async abandon(): Promise<string> {
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    return `${this.plan.name} holds only part of '${this.volumeName}'`;
  }

  summarize(volumeName: string, volumeBytes: number, dataBytes: number): string {
    const beyond = this.deviceBytes - volumeBytes;
    return (
      `exported ${volumeName} (${formatSize(volumeBytes)}) to ${this.plan.name}: ` +
      `${formatSize(dataBytes)} of data, the rest written as zeros` +
      (beyond > 0 ? `; the device's last ${formatSize(beyond)} were left as they were` : "")
    );
  }
}

class StreamTarget implements ExportTarget {
  readonly holesReadAsZero = false;
  private nextPosition = 0;
  private done = false;

  private constructor(
    readonly plan: ExportTargetPlan & { kind: "stream" },
    private readonly writer: StreamWriter,
    private readonly volumeName: string,
  ) {}

  static async open(plan: ExportTargetPlan & { kind: "stream" }, volumeName: string, interruption: Interruption): Promise<StreamTarget> {
    // Opening a named pipe waits for its reader.
    const writer =
      plan.path === null
        ? await stdoutWriter()
        : await onUserFile(plan.name, "output file", () => openStreamWriter(plan.path!, interruption));
    return new StreamTarget(plan, writer, volumeName);
  }

  async write(bytes: Uint8Array, position: number, interruption: Interruption): Promise<void> {
    // A stream cannot seek: every byte is written, in order.
    assert(position === this.nextPosition, `stream write at ${position}, expected ${this.nextPosition}`);
    await onUserFile(this.plan.name, "output", () => this.writer.write(bytes, interruption));
    this.nextPosition += bytes.length;
  }

  async flush(): Promise<void> {
    this.done = true;
    await onUserFile(this.plan.name, "output", () => this.writer.finish());
  }

  async place(): Promise<void> {}

  async abandon(): Promise<string> {
    if (!this.done) {
      this.done = true;
      this.writer.abandon();
    }
    return `${this.plan.name} got only part of '${this.volumeName}'`;
  }

  summarize(volumeName: string, volumeBytes: number, dataBytes: number): string {
    return (
      `exported ${volumeName} (${formatSize(volumeBytes)}) to ${this.plan.name}: ` +
      `${formatSize(dataBytes)} of data, the rest written as zeros`
    );
  }
}
