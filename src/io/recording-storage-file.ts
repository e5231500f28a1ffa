import type { StorageFile } from "./storage-file.js";

/** One I/O operation in the order the engine issued it; `fileId` tells the files apart. */
export type RecordedOperation =
  | { kind: "write"; fileId: number; position: number; bytes: Buffer }
  | { kind: "sync"; fileId: number }
  | { kind: "truncate"; fileId: number; byteLength: number };

/** The shared, ordered log of every write, sync and truncate across a pool's files. */
export class IoLog {
  readonly operations: RecordedOperation[] = [];
}

/**
 * Passes every call through to another file and logs writes, syncs and truncates, so a
 * crash harness can rebuild what the disk could hold had power failed at any point.
 */
export class RecordingStorageFile implements StorageFile {
  constructor(
    private readonly inner: StorageFile,
    private readonly log: IoLog,
    readonly fileId: number,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  read(buf: Buffer, position: number): Promise<void> {
    return this.inner.read(buf, position);
  }

  readNow(buf: Buffer, position: number): boolean {
    return this.inner.readNow?.(buf, position) ?? false;
  }

  writeNow(buf: Uint8Array, position: number): boolean {
    if (this.inner.writeNow === undefined) return false;
    // Logged first, as `write` logs, so a crash state can hold the write or not.
    this.log.operations.push({ kind: "write", fileId: this.fileId, position, bytes: Buffer.from(buf) });
    if (this.inner.writeNow(buf, position)) return true;
    this.log.operations.pop();
    return false;
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    this.log.operations.push({ kind: "write", fileId: this.fileId, position, bytes: Buffer.from(buf) });
    await this.inner.write(buf, position);
  }

  /** Logged as a write of zeros, which is what the range reads as once punched, durable or not until the next sync. */
  async punchHole(position: number, length: number): Promise<boolean> {
    if (this.inner.punchHole === undefined || !(await this.inner.punchHole(position, length))) return false;
    // Logged once done: until the next sync a crash state may hold it or not, as any write.
    this.log.operations.push({ kind: "write", fileId: this.fileId, position, bytes: Buffer.alloc(length) });
    return true;
  }

  async sync(): Promise<void> {
    await this.inner.sync();
    // Logged once durable: a crash "before" this entry may lose the writes before it.
    this.log.operations.push({ kind: "sync", fileId: this.fileId });
  }

  byteLength(): Promise<number> {
    return this.inner.byteLength();
  }

  async truncate(byteLength: number): Promise<void> {
    this.log.operations.push({ kind: "truncate", fileId: this.fileId, byteLength });
    await this.inner.truncate(byteLength);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
