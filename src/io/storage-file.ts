// The one narrow I/O interface every layer above io uses. Implementations: a real file
// (NodeStorageFile), memory (MemoryStorageFile), and test doubles that record or fail.

export interface StorageFile {
  readonly path: string;
  /** Fills `buf` from `position`; bytes past the end of the file read as zeros. */
  read(buf: Buffer, position: number): Promise<void>;
  write(buf: Uint8Array, position: number): Promise<void>;
  /** Makes every completed write durable. */
  sync(): Promise<void>;
  byteLength(): Promise<number>;
  truncate(byteLength: number): Promise<void>;
  close(): Promise<void>;
}
