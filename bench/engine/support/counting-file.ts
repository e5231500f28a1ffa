// A StorageFile that counts what passes through it, so a benchmark can say how many
// metadata blocks and fsyncs a commit cost, not only how long it took.

import type { StorageFile } from "../../../src/io/storage-file.js";

export class CountingStorageFile implements StorageFile {
  writeCount = 0;
  writtenBytes = 0;
  syncCount = 0;

  constructor(private readonly inner: StorageFile) {}

  get path(): string {
    return this.inner.path;
  }

  resetCounts(): void {
    this.writeCount = 0;
    this.writtenBytes = 0;
    this.syncCount = 0;
  }

  read(buf: Buffer, position: number): Promise<void> {
    return this.inner.read(buf, position);
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    this.writeCount++;
    this.writtenBytes += buf.length;
    await this.inner.write(buf, position);
  }

  async sync(): Promise<void> {
    this.syncCount++;
    await this.inner.sync();
  }

  byteLength(): Promise<number> {
    return this.inner.byteLength();
  }

  truncate(byteLength: number): Promise<void> {
    return this.inner.truncate(byteLength);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
