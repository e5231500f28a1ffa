// An in-memory VolumeHandle for tests of the NBD server. It maps 64 KiB blocks the way a
// thin volume does, so extents, holes and block status mean something. It asserts the same
// preconditions the engine asserts: the server must only pass it valid requests.

import { assert } from "../../src/io/assert.js";
import { PoolFullError, ReadOnlyError, type ThinpError } from "../../src/errors.js";
import type { Extent, ReadRun, VolumeHandle } from "../../src/thin/api.js";

export const MEMORY_BLOCK_BYTES = 64 * 1024;

/** Data blocks shared by the volumes of one memory pool; allocation past the total fails POOL_FULL. */
export class MemoryPoolSpace {
  usedBlocks = 0;
  constructor(readonly totalBlocks: number = Number.MAX_SAFE_INTEGER) {}
  allocate(): void {
    if (this.usedBlocks >= this.totalBlocks) throw new PoolFullError(this.usedBlocks, this.totalBlocks, MEMORY_BLOCK_BYTES);
    this.usedBlocks++;
  }
  release(): void {
    assert(this.usedBlocks > 0, "release of an unallocated block");
    this.usedBlocks--;
  }
}

type Operation = "read" | "write" | "discard" | "writeZeroes" | "extents";

export class MemoryVolume implements VolumeHandle {
  private readonly blocks = new Map<number, Buffer>();
  private readonly injected = new Map<Operation, ThinpError | Error>();
  private gate: { operation: Operation | null; opened: Promise<void> } | null = null;
  /** Operations running right now, and the most seen at once: how tests observe concurrency. */
  running = 0;
  runningMax = 0;
  /** Every call, in the order it started. */
  readonly calls: { operation: Operation; offset: number; length: number }[] = [];

  constructor(
    readonly name: string,
    readonly sizeBytes: number,
    readonly readOnly = false,
    private readonly space = new MemoryPoolSpace(),
  ) {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, "volume size");
  }

  /** A new volume with `source`'s blocks copied, mapped where the source's are: a snapshot, minus the sharing. */
  static copyOf(source: MemoryVolume, name: string, readOnly: boolean): MemoryVolume {
    const copy = new MemoryVolume(name, source.sizeBytes, readOnly);
    for (const [block, data] of source.blocks) copy.blocks.set(block, Buffer.from(data));
    return copy;
  }

  /** The next `operation` fails with `error` (once). */
  failNext(operation: Operation, error: ThinpError | Error): void {
    this.injected.set(operation, error);
  }

  /** Holds operations (all, or one kind) that start from now until the returned function is called. */
  hold(operation: Operation | null = null): () => void {
    let release!: () => void;
    this.gate = { operation, opened: new Promise((resolve) => (release = resolve)) };
    return () => {
      this.gate = null;
      release();
    };
  }

  mappedBlockIndexes(): number[] {
    return [...this.blocks.keys()].sort((a, b) => a - b);
  }

  /** Reads synchronously, for checking what the server wrote. */
  contents(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    this.forEachBlockPiece(offset, length, (block, within, pieceBytes, outOffset) => {
      this.blocks.get(block)?.copy(out, outOffset, within, within + pieceBytes);
    });
    return out;
  }

  /** Writes synchronously, for setting up a test's starting state. */
  fill(offset: number, bytes: Uint8Array): void {
    this.forEachBlockPiece(offset, bytes.length, (block, within, pieceBytes, inOffset) => {
      this.mapBlock(block).set(bytes.subarray(inOffset, inOffset + pieceBytes), within);
    });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    await this.enter("read", offset, length);
    try {
      return this.contents(offset, length);
    } finally {
      this.running--;
    }
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    await this.enter("write", offset, bytes.length, true);
    try {
      this.fill(offset, bytes);
    } finally {
      this.running--;
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.enter("discard", offset, length, true);
    try {
      this.zeroRange(offset, length, false);
    } finally {
      this.running--;
    }
  }

  async writeZeroes(offset: number, length: number, keepAllocated: boolean): Promise<void> {
    await this.enter("writeZeroes", offset, length, true);
    try {
      this.zeroRange(offset, length, keepAllocated);
    } finally {
      this.running--;
    }
  }

  /** One engine call, as the real volume makes one lookup: counted as a read. */
  async readRuns(offset: number, length: number): Promise<ReadRun[]> {
    await this.enter("read", offset, length);
    try {
      const data = this.contents(offset, length);
      return this.extentsNow(offset, length).map((extent) => ({
        offset: extent.offset,
        length: extent.length,
        data: extent.mapped ? data.subarray(extent.offset - offset, extent.offset - offset + extent.length) : null,
      }));
    } finally {
      this.running--;
    }
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    await this.enter("extents", offset, length);
    try {
      return this.extentsNow(offset, length);
    } finally {
      this.running--;
    }
  }

  private extentsNow(offset: number, length: number): Extent[] {
    const extents: Extent[] = [];
    let cursor = offset;
    const end = offset + length;
    // One pass per block in the range: bounded by length / block size.
    while (cursor < end) {
      const block = Math.floor(cursor / MEMORY_BLOCK_BYTES);
      const pieceEnd = Math.min(end, (block + 1) * MEMORY_BLOCK_BYTES);
      const mapped = this.blocks.has(block);
      const last = extents[extents.length - 1];
      if (last !== undefined && last.mapped === mapped) last.length += pieceEnd - cursor;
      else extents.push({ offset: cursor, length: pieceEnd - cursor, mapped, copyOnWrite: false });
      cursor = pieceEnd;
    }
    return extents;
  }

  private async enter(operation: Operation, offset: number, length: number, writes = false): Promise<void> {
    assert(Number.isSafeInteger(offset) && offset >= 0, `${operation} offset ${offset}`);
    assert(Number.isSafeInteger(length) && length > 0, `${operation} length ${length}`);
    assert(offset + length <= this.sizeBytes, `${operation} ${offset}+${length} past the end ${this.sizeBytes}`);
    this.calls.push({ operation, offset, length });
    this.running++;
    this.runningMax = Math.max(this.runningMax, this.running);
    try {
      const gate = this.gate;
      if (gate !== null && (gate.operation === null || gate.operation === operation)) await gate.opened;
      const injected = this.injected.get(operation);
      if (injected !== undefined) {
        this.injected.delete(operation);
        throw injected;
      }
      if (writes && this.readOnly) throw new ReadOnlyError(`volume '${this.name}'`);
    } catch (error) {
      this.running--;
      throw error;
    }
  }

  private zeroRange(offset: number, length: number, keepAllocated: boolean): void {
    const end = offset + length;
    const firstWhole = Math.ceil(offset / MEMORY_BLOCK_BYTES);
    const endWhole = Math.floor(end / MEMORY_BLOCK_BYTES);
    // Whole blocks: visit only mapped ones, so zeroing gigabytes of a sparse volume is cheap.
    for (const block of [...this.blocks.keys()]) {
      if (block < firstWhole || block >= endWhole) continue;
      if (keepAllocated) this.blocks.get(block)!.fill(0);
      else {
        this.blocks.delete(block);
        this.space.release();
      }
    }
    if (keepAllocated) for (let block = firstWhole; block < endWhole; block++) this.mapBlock(block);
    // The partial blocks at either end: zero their bytes in place.
    const headEnd = Math.min(end, firstWhole * MEMORY_BLOCK_BYTES);
    if (offset < headEnd) this.zeroWithinBlock(offset, headEnd, keepAllocated);
    const tailStart = Math.max(headEnd, endWhole * MEMORY_BLOCK_BYTES);
    if (tailStart < end) this.zeroWithinBlock(tailStart, end, keepAllocated);
  }

  private zeroWithinBlock(start: number, stop: number, keepAllocated: boolean): void {
    const block = Math.floor(start / MEMORY_BLOCK_BYTES);
    assert(Math.floor((stop - 1) / MEMORY_BLOCK_BYTES) === block, "piece within one block");
    const data = keepAllocated ? this.mapBlock(block) : this.blocks.get(block);
    data?.fill(0, start - block * MEMORY_BLOCK_BYTES, stop - block * MEMORY_BLOCK_BYTES);
  }

  private mapBlock(block: number): Buffer {
    let data = this.blocks.get(block);
    if (data === undefined) {
      this.space.allocate();
      data = Buffer.alloc(MEMORY_BLOCK_BYTES);
      this.blocks.set(block, data);
    }
    return data;
  }

  /** Calls `visit` for each piece of [offset, offset+length) within one block; only the ends can be partial. */
  private forEachBlockPiece(
    offset: number,
    length: number,
    visit: (block: number, withinBlock: number, pieceBytes: number, rangeOffset: number) => void,
  ): void {
    let cursor = offset;
    const end = offset + length;
    while (cursor < end) {
      const block = Math.floor(cursor / MEMORY_BLOCK_BYTES);
      const within = cursor - block * MEMORY_BLOCK_BYTES;
      const pieceBytes = Math.min(MEMORY_BLOCK_BYTES - within, end - cursor);
      visit(block, within, pieceBytes, cursor - offset);
      cursor += pieceBytes;
    }
  }
}
