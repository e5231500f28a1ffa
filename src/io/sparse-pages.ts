// The bytes of a file held in memory, in 4 KiB pages shared copy-on-write between clones:
// a clone costs one map copy, so tests can keep the durable state of a file at every sync
// and the crash harness can build thousands of crash states from one base.

import { SPARSE_PAGE_BYTES as PAGE_BYTES } from "./limits.js";

export class SparsePages {
  private constructor(
    private readonly pages: Map<number, Buffer>,
    private readonly owned: Set<number>,
    private length: number,
  ) {}

  static empty(): SparsePages {
    return new SparsePages(new Map(), new Set(), 0);
  }

  /** A copy that shares every page until one side writes it. */
  clone(): SparsePages {
    this.owned.clear(); // both sides now share every page
    return new SparsePages(new Map(this.pages), new Set(), this.length);
  }

  get byteLength(): number {
    return this.length;
  }

  read(buf: Buffer, position: number): void {
    forEachPageSpan(position, buf.length, (pageIndex, inPage, done, chunk) => {
      const valid = Math.max(0, Math.min(chunk, this.length - (position + done)));
      const page = this.pages.get(pageIndex);
      if (page && valid > 0) page.copy(buf, done, inPage, inPage + valid);
      else if (valid > 0) buf.fill(0, done, done + valid);
      if (valid < chunk) buf.fill(0, done + valid, done + chunk);
    });
  }

  write(bytes: Uint8Array, position: number): void {
    forEachPageSpan(position, bytes.length, (pageIndex, inPage, done, chunk) => {
      let page = this.pages.get(pageIndex);
      if (!page || !this.owned.has(pageIndex)) {
        const copy = Buffer.alloc(PAGE_BYTES);
        page?.copy(copy);
        page = copy;
        this.pages.set(pageIndex, page);
        this.owned.add(pageIndex);
      }
      page.set(bytes.subarray(done, done + chunk), inPage);
    });
    this.length = Math.max(this.length, position + bytes.length);
  }

  truncate(byteLength: number): void {
    if (byteLength < this.length) {
      for (const pageIndex of [...this.pages.keys()]) {
        if (pageIndex * PAGE_BYTES >= byteLength) this.pages.delete(pageIndex);
      }
      const tail = byteLength % PAGE_BYTES;
      if (tail !== 0 && this.pages.has(Math.floor(byteLength / PAGE_BYTES))) {
        this.write(Buffer.alloc(PAGE_BYTES - tail), byteLength);
      }
    }
    this.length = byteLength;
  }
}

/** Cuts [position, position + length) at page boundaries: page, offset in it, bytes before, span. */
function forEachPageSpan(
  position: number,
  length: number,
  visit: (pageIndex: number, inPage: number, done: number, chunk: number) => void,
): void {
  for (let done = 0; done < length;) {
    const at = position + done;
    const inPage = at % PAGE_BYTES;
    const chunk = Math.min(PAGE_BYTES - inPage, length - done);
    visit(Math.floor(at / PAGE_BYTES), inPage, done, chunk);
    done += chunk;
  }
}
