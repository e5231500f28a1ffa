// The one narrow I/O interface every layer above io uses. Implementations: a real file
// (NodeStorageFile), memory (MemoryStorageFile), and test doubles that record or fail.

export interface StorageFile {
  readonly path: string;
  /** Fills `buf` from `position`; bytes past the end of the file read as zeros. */
  read(buf: Buffer, position: number): Promise<void>;
  /**
   * Fills `buf` from `position` on the calling thread when that needs no wait (the page
   * cache holds the bytes): true when filled, false when the caller must use `read` (`buf`
   * may then hold some of the bytes). Optional; without it every read goes through `read`.
   */
  readNow?(buf: Buffer, position: number): boolean;
  write(buf: Uint8Array, position: number): Promise<void>;
  /**
   * Writes all of `buf` at `position` on the calling thread when that is cheap (a small
   * whole-page write into the page cache): true when written, false when the caller must use
   * `write`. Optional, like readNow.
   */
  writeNow?(buf: Uint8Array, position: number): boolean;
  /**
   * Gives the bytes [position, position + length) back to the file system, keeping the file's
   * size: they read as zeros from then on. False where the file system cannot (the bytes are
   * then untouched). Optional: without it nothing is given back.
   */
  punchHole?(position: number, length: number): Promise<boolean>;
  /** Bytes the file takes on disk (its allocated blocks), for `status`. Optional. */
  allocatedBytes?(): Promise<number>;
  /** Makes every completed write durable. */
  sync(): Promise<void>;
  byteLength(): Promise<number>;
  truncate(byteLength: number): Promise<void>;
  close(): Promise<void>;
}
