import { SparsePages } from "./sparse-pages.js";
import type { StorageFile } from "./storage-file.js";

/**
 * A file held in memory, for tests of every layer above io. It keeps what the last sync
 * made durable, so `durableCopy()` is what a crash now would leave.
 */
export class MemoryStorageFile implements StorageFile {
  private durable: SparsePages;

  constructor(
    readonly path: string = "memory",
    /** The file's current bytes; shared with the caller, who may keep a clone as a base. */
    readonly pages: SparsePages = SparsePages.empty(),
  ) {
    this.durable = pages.clone();
  }

  async read(buf: Buffer, position: number): Promise<void> {
    this.pages.read(buf, position);
  }

  readNow(buf: Buffer, position: number): boolean {
    this.pages.read(buf, position);
    return true;
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    this.pages.write(buf, position);
  }

  writeNow(buf: Uint8Array, position: number): boolean {
    this.pages.write(buf, position);
    return true;
  }

  async punchHole(position: number, length: number): Promise<boolean> {
    this.pages.write(Buffer.alloc(length), position);
    return true;
  }

  async sync(): Promise<void> {
    this.durable = this.pages.clone();
  }

  async byteLength(): Promise<number> {
    return this.pages.byteLength;
  }

  async truncate(byteLength: number): Promise<void> {
    this.pages.truncate(byteLength);
  }

  async close(): Promise<void> {}

  /** The file as a crash now would leave it: only what the last sync made durable. */
  durableCopy(path = this.path): MemoryStorageFile {
    return new MemoryStorageFile(path, this.durable.clone());
  }
}
