// What the fuzzer believes an export holds: its bytes, and which of them it is sure of.
// A write whose outcome is ambiguous (two overlapping writes in flight at once, or a write
// cut off by a disconnect) makes its range unknown until something overwrites it.

export interface ByteRange {
  offset: number;
  byteLength: number;
}

export function overlaps(a: ByteRange, b: ByteRange): boolean {
  return a.offset < b.offset + b.byteLength && b.offset < a.offset + a.byteLength;
}

const COMPARE_PAGE_BYTES = 4096;
const ZERO_PAGE = Buffer.alloc(COMPARE_PAGE_BYTES);

export class ContentModel {
  private readonly bytes: Buffer;
  /** 1 where the model is sure of the byte. */
  private readonly known: Uint8Array;

  constructor(
    readonly sizeBytes: number,
    initial?: Buffer,
  ) {
    this.bytes = Buffer.alloc(sizeBytes);
    initial?.copy(this.bytes);
    this.known = new Uint8Array(sizeBytes).fill(1);
  }

  write(offset: number, data: Buffer): void {
    data.copy(this.bytes, offset);
    this.known.fill(1, offset, offset + data.length);
  }

  zero(offset: number, byteLength: number): void {
    this.bytes.fill(0, offset, offset + byteLength);
    this.known.fill(1, offset, offset + byteLength);
  }

  forget(offset: number, byteLength: number): void {
    this.known.fill(0, offset, Math.min(this.sizeBytes, offset + byteLength));
  }

  /**
   * The first byte of `data` (read at `offset`) that contradicts the model, ignoring bytes the
   * model is unsure of and bytes inside `skip`; null when everything agrees.
   */
  firstMismatch(offset: number, data: Buffer, skip: readonly ByteRange[]): string | null {
    // Whole pages that agree are skipped with a memcmp; only a page that differs is walked byte by byte.
    for (let page = 0; page < data.length; page += COMPARE_PAGE_BYTES) {
      const end = Math.min(data.length, page + COMPARE_PAGE_BYTES);
      if (data.subarray(page, end).equals(this.bytes.subarray(offset + page, offset + end))) continue;
      const mismatch = this.firstMismatchIn(offset, data, page, end, skip);
      if (mismatch !== null) return mismatch;
    }
    return null;
  }

  private firstMismatchIn(offset: number, data: Buffer, start: number, end: number, skip: readonly ByteRange[]): string | null {
    for (let i = start; i < end; i++) {
      const at = offset + i;
      if (this.known[at] !== 1 || data[i] === this.bytes[at]) continue;
      if (skip.some((range) => at >= range.offset && at < range.offset + range.byteLength)) continue;
      return `byte at offset ${at} is 0x${data[i]!.toString(16)}, expected 0x${this.bytes[at]!.toString(16)}`;
    }
    return null;
  }

  /** Whether the model has a known nonzero byte in the range (outside `skip`): such a range cannot be a hole. */
  firstKnownNonzero(offset: number, byteLength: number, skip: readonly ByteRange[]): number | null {
    const end = Math.min(this.sizeBytes, offset + byteLength);
    for (let page = offset; page < end; page += COMPARE_PAGE_BYTES) {
      const pageEnd = Math.min(end, page + COMPARE_PAGE_BYTES);
      if (this.bytes.subarray(page, pageEnd).equals(ZERO_PAGE.subarray(0, pageEnd - page))) continue;
      for (let at = page; at < pageEnd; at++) {
        if (this.known[at] !== 1 || this.bytes[at] === 0) continue;
        if (skip.some((range) => at >= range.offset && at < range.offset + range.byteLength)) continue;
        return at;
      }
    }
    return null;
  }
}

/** A recognisable byte pattern; different seeds give different bytes at the same offset. */
export function pattern(byteLength: number, seed: number): Buffer {
  const out = Buffer.alloc(byteLength);
  // Never all zeros, so a lost write cannot pass for a hole.
  for (let i = 0; i < byteLength; i++) out[i] = ((i * 31 + seed * 7 + (i >> 9)) & 0xff) | 1;
  return out;
}
