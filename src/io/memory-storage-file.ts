import type { StorageFile } from "./storage-file.js";

const PAGE_BYTES = 65536;

/**
 * A file held in memory, sparse in 64 KiB pages, for tests of every layer above io.
 * `durableCopy()` returns what a crash would leave: the state as of the last sync.
 */
export class MemoryStorageFile implements StorageFile {
  private pages = new Map<number, Buffer>();
  private length = 0;
  private durablePages = new Map<number, Buffer>();
  private durableLength = 0;

  constructor(readonly path: string = "memory") {}

  async read(buf: Buffer, position: number): Promise<void> {
    this.readSync(buf, position);
  }

  readSync(buf: Buffer, position: number): void {
    let done = 0;
    while (done < buf.length) {
      const at = position + done;
      const pageIndex = Math.floor(at / PAGE_BYTES);
      const inPage = at % PAGE_BYTES;
      const chunk = Math.min(PAGE_BYTES - inPage, buf.length - done);
      const page = this.pages.get(pageIndex);
      const validBytes = Math.max(0, Math.min(chunk, this.length - at));
      if (page && validBytes > 0) page.copy(buf, done, inPage, inPage + validBytes);
      else if (validBytes > 0) buf.fill(0, done, done + validBytes);
      if (validBytes < chunk) buf.fill(0, done + validBytes, done + chunk);
      done += chunk;
    }
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const at = position + done;
      const pageIndex = Math.floor(at / PAGE_BYTES);
      const inPage = at % PAGE_BYTES;
      const chunk = Math.min(PAGE_BYTES - inPage, buf.length - done);
      let page = this.pages.get(pageIndex);
      if (!page) {
        page = Buffer.alloc(PAGE_BYTES);
        this.pages.set(pageIndex, page);
      }
      page.set(buf.subarray(done, done + chunk), inPage);
      done += chunk;
    }
    this.length = Math.max(this.length, position + buf.length);
  }

  async sync(): Promise<void> {
    this.durablePages = new Map([...this.pages].map(([index, page]) => [index, Buffer.from(page)]));
    this.durableLength = this.length;
  }

  async byteLength(): Promise<number> {
    return this.length;
  }

  async truncate(byteLength: number): Promise<void> {
    if (byteLength < this.length) {
      for (const index of [...this.pages.keys()]) {
        if (index * PAGE_BYTES >= byteLength) this.pages.delete(index);
      }
      const lastPage = this.pages.get(Math.floor(byteLength / PAGE_BYTES));
      lastPage?.fill(0, byteLength % PAGE_BYTES);
    }
    this.length = byteLength;
  }

  async close(): Promise<void> {}

  /** The file as a crash now would leave it: only what the last sync made durable. */
  durableCopy(path = this.path): MemoryStorageFile {
    const copy = new MemoryStorageFile(path);
    copy.pages = new Map([...this.durablePages].map(([index, page]) => [index, Buffer.from(page)]));
    copy.length = this.durableLength;
    copy.durablePages = new Map([...copy.pages].map(([index, page]) => [index, Buffer.from(page)]));
    copy.durableLength = copy.length;
    return copy;
  }
}
