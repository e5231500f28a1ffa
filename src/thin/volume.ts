// One volume's bytes. A request is cut at 64 KiB block boundaries; each block is read from
// its data block, or as zeros when unmapped. A write to a block that is unmapped or shared
// with a snapshot goes to a newly allocated data block (filled out with zeros or with the
// old contents), which is then mapped in; a write to a block this volume alone owns goes
// in place.

import { NoSuchVolumeError, OutOfRangeError, ReadOnlyError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { Extent, ReadRun, VolumeHandle } from "./api.js";
import { DATA_BLOCK_BYTES, RANGE_STEP_BLOCKS, ZERO_WRITE_BYTES } from "./limits.js";
import type { KeyedLocks, SharedGate } from "./locks.js";
import type { MappingVisit, PoolMetadata, VolumeState } from "./pool-metadata.js";
import type { PoolTransactions } from "./transactions.js";

/** What serializes a volume's I/O, one set per volume id, shared by every handle on it. */
export interface VolumeLocks {
  /** Writes in flight share it; a snapshot of the volume takes it exclusively. */
  readonly gate: SharedGate;
  /** Writes and discards of one virtual block, keyed by the block. */
  readonly blocks: KeyedLocks;
  /** The commit that unseals the volume before its contents first change, while it runs (see contentChangeReady). */
  unsealing: Promise<void> | null;
}

interface Piece {
  virtualBlock: number;
  /** Offset within the block. */
  inBlock: number;
  byteLength: number;
  /** Offset within the request's buffer. */
  inRequest: number;
}

interface MappedRead {
  bytes: Buffer;
  runs: MappedRun[];
}

/** Data reads begun where the lookup was made: null when every one was done at once. */
interface StartedRead {
  reads: Promise<unknown> | null;
  runs: MappedRun[];
}

function finishRead(bytes: Buffer, started: StartedRead): MappedRead | Promise<MappedRead> {
  const { reads, runs } = started;
  return reads === null ? { bytes, runs } : reads.then(() => ({ bytes, runs }));
}

interface MappedRun {
  offset: number;
  length: number;
  mapped: boolean;
}

type WritePlan =
  { piece: Piece; kind: "in-place"; dataBlock: number } | { piece: Piece; kind: "fresh"; dataBlock: number; copyFrom: number | null };

export class Volume implements VolumeHandle {
  private lastKnown: VolumeState;

  constructor(
    private readonly tx: PoolTransactions,
    state: VolumeState,
    private readonly locks: VolumeLocks,
  ) {
    this.lastKnown = state;
  }

  /**
   * The volume's state in the live transaction (a rollback reloads every state), found by
   * id; after deletion, the last one known.
   */
  private get state(): VolumeState {
    const current = this.tx.inspect((metadata) => metadata.stateById(this.lastKnown.id));
    if (current) this.lastKnown = current;
    return this.lastKnown;
  }

  get id(): number {
    return this.lastKnown.id;
  }
  get name(): string {
    return this.state.record.name;
  }
  get sizeBytes(): number {
    return this.state.record.sizeBytes;
  }
  get readOnly(): boolean {
    return this.state.record.readOnly || this.tx.readOnly;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return (await this.readMappedSoon(offset, length)).bytes;
  }

  async readRuns(offset: number, length: number): Promise<ReadRun[]> {
    const { bytes, runs } = await this.readMappedSoon(offset, length);
    return withData(offset, bytes, runs);
  }

  readSoon(offset: number, length: number): Buffer | Promise<Buffer> {
    const read = this.readMappedSoon(offset, length);
    return read instanceof Promise ? read.then((done) => done.bytes) : read.bytes;
  }

  readRunsSoon(offset: number, length: number): ReadRun[] | Promise<ReadRun[]> {
    const read = this.readMappedSoon(offset, length);
    return read instanceof Promise ? read.then((done) => withData(offset, done.bytes, done.runs)) : withData(offset, read.bytes, read.runs);
  }

  /**
   * One lookup for the whole range, then one read per run of consecutive data blocks; the
   * buffer is zeroed only where nothing is mapped. Also returns the mapped and unmapped runs.
   * The lookup is answered at once when the tree's nodes are cached and no change is under
   * way, and waits for a read section otherwise; the whole read is done on the calling thread
   * (no promise) when the page cache also holds every data byte.
   */
  private readMappedSoon(offset: number, length: number): MappedRead | Promise<MappedRead> {
    this.checkRange(offset, length);
    const bytes = Buffer.allocUnsafe(length);
    if (length === 0) return { bytes, runs: [] };
    const pieces = splitIntoPieces(offset, length);
    const started = this.tx.readNow((metadata) => {
      const mapped = this.cachedMappings(metadata, pieces);
      return mapped === null ? null : this.startReads(offset, pieces, mapped, bytes);
    });
    if (started !== null) return finishRead(bytes, started);
    return this.tx
      .read(async (metadata) => {
        const { first, end } = blockSpan(pieces);
        const mapped = new Map<number, number>();
        await metadata.forEachMapping(
          this.liveState(metadata),
          first,
          end,
          (virtualBlock, dataBlock) => void mapped.set(virtualBlock, dataBlock),
        );
        return this.startReads(offset, pieces, mapped, bytes);
      })
      .then((later) => finishRead(bytes, later));
  }

  /** The mappings of the pieces' blocks from the cached tree, or null if a node is not cached. */
  private cachedMappings(metadata: PoolMetadata, pieces: Piece[]): Map<number, number> | null {
    const { first, end } = blockSpan(pieces);
    const mapped = new Map<number, number>();
    const answered = metadata.forEachMappingCached(this.liveState(metadata), first, end, (virtualBlock, dataBlock) => {
      mapped.set(virtualBlock, dataBlock);
    });
    return answered === null ? null : mapped;
  }

  /**
   * Called where the lookup was made, in the same turn: zeroes what is unmapped, reads what
   * the page cache holds at once, and starts the other data reads, registered so a commit
   * cannot free those blocks for reuse first. `reads` is null when none had to be started.
   */
  private startReads(offset: number, pieces: Piece[], mapped: Map<number, number>, bytes: Buffer): StartedRead {
    const runs = mappedRuns(offset, pieces, mapped, bytes);
    const dataFile = this.tx.dataFile;
    const reads: Promise<void>[] = [];
    for (const run of coalesce(pieces, (piece) => mapped.get(piece.virtualBlock) ?? null)) {
      const target = bytes.subarray(run.inRequest, run.inRequest + run.byteLength);
      const position = run.dataBlock * DATA_BLOCK_BYTES + run.inBlock;
      if (dataFile.readNow?.(target, position)) continue;
      reads.push(this.tx.trackRead(dataFile.read(target, position)));
    }
    if (reads.length === 0) return { reads: null, runs };
    const only = reads.length === 1 ? reads[0] : undefined;
    return { reads: only ?? Promise.all(reads), runs };
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    await this.writeSoon(offset, bytes);
  }

  writeSoon(offset: number, bytes: Uint8Array): Promise<void> | undefined {
    this.checkWritable();
    this.checkRange(offset, bytes.length);
    if (bytes.length === 0) return undefined;
    const ready = this.contentChangeReady();
    if (ready !== null) return ready.then(() => this.write(offset, bytes));
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.tx.noteDataWritten();
    const pieces = splitIntoPieces(offset, bytes.length);
    const inPlace = this.writeInPlaceNow(pieces, data);
    if (inPlace === "written") return undefined;
    return inPlace ?? this.writeUnderGate(offset, bytes, pieces, data);
  }

  /** writeLocked under the gate, unless a seal got in first: then the volume is unsealed and the write made again. */
  private async writeUnderGate(offset: number, bytes: Uint8Array, pieces: Piece[], data: Buffer): Promise<void> {
    const written = await this.locks.gate.shared(async () => {
      if (this.sealedNow()) return false;
      await this.writeLocked(pieces, data);
      return true;
    });
    if (!written) await this.write(offset, bytes);
  }

  /**
   * The common overwrite, with no section: when the gate and every block are free, and the
   * cached tree says this volume alone owns each block, the bytes go in place under the same
   * holds writeLocked takes: on the calling thread if the data file can take them so
   * ("written"), else started (a promise). Null when any of that is not so; the caller then
   * writes the usual way.
   */
  private writeInPlaceNow(pieces: Piece[], data: Buffer): "written" | Promise<void> | null {
    const releaseGate = this.locks.gate.tryShared();
    if (releaseGate === null) return null;
    // Checked by the caller on this same turn: no seal can have come between.
    assert(!this.sealedNow(), "an in-place write to a sealed volume");
    const releaseBlocks = this.locks.blocks.tryHoldAll(pieces.map((piece) => piece.virtualBlock));
    if (releaseBlocks === null) {
      releaseGate();
      return null;
    }
    const release = () => {
      releaseBlocks();
      releaseGate();
    };
    let plans: WritePlan[] | null;
    try {
      plans = this.tx.readNow((metadata) => inPlacePlans(metadata, this.liveState(metadata), pieces));
      if (plans !== null && this.writeRunsNow(plans, data)) {
        release();
        return "written";
      }
    } catch (error) {
      release();
      throw error;
    }
    if (plans === null) {
      release();
      return null;
    }
    return this.writeAll(plans, data).finally(release);
  }

  /**
   * In-place plans written on the calling thread, if the data file takes every run so; false
   * if it declines one (those before it are written, and the caller writes them all again,
   * which leaves the same bytes).
   */
  private writeRunsNow(plans: WritePlan[], data: Buffer): boolean {
    const dataFile = this.tx.dataFile;
    if (dataFile.writeNow === undefined || data.length > INLINE_REQUEST_BYTES_MAX) return false;
    this.tx.noteDataWritten();
    for (const run of directRuns(plans)) {
      if (!dataFile.writeNow(data.subarray(run.inRequest, run.inRequest + run.byteLength), run.position)) return false;
    }
    this.tx.noteDataWritten();
    return true;
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    await this.contentChangeReady();
    await this.zeroRange(offset, length);
  }

  async writeZeroes(offset: number, length: number, keepAllocated: boolean): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (!keepAllocated) {
      await this.contentChangeReady();
      await this.zeroRange(offset, length);
      return;
    }
    const zeros = Buffer.alloc(Math.min(ZERO_WRITE_BYTES, length));
    for (let done = 0; done < length; done += zeros.length) {
      const chunk = Math.min(zeros.length, length - done);
      await this.write(offset + done, zeros.subarray(0, chunk));
    }
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.checkRange(offset, length);
    const extents: Extent[] = [];
    const push = (start: number, end: number, mapped: boolean, copyOnWrite: boolean) => {
      if (end <= start) return;
      const last = extents[extents.length - 1];
      if (last && last.mapped === mapped && last.copyOnWrite === copyOnWrite && last.offset + last.length === start)
        last.length += end - start;
      else extents.push({ offset: start, length: end - start, mapped, copyOnWrite });
    };
    const end = offset + length;
    const firstBlock = Math.floor(offset / DATA_BLOCK_BYTES);
    const endBlock = Math.ceil(end / DATA_BLOCK_BYTES);
    let cursor = offset;
    for (let from = firstBlock; from < endBlock; from += RANGE_STEP_BLOCKS) {
      const to = Math.min(endBlock, from + RANGE_STEP_BLOCKS);
      const mapped: { virtualBlock: number; copyOnWrite: boolean }[] = [];
      await this.tx.read(async (metadata) => {
        await metadata.forEachMapping(
          this.liveState(metadata),
          from,
          to,
          (virtualBlock, _dataBlock, _sharedNow, copyOnWrite) => void mapped.push({ virtualBlock, copyOnWrite }),
        );
      });
      for (const { virtualBlock, copyOnWrite } of mapped) {
        const blockStart = Math.max(offset, virtualBlock * DATA_BLOCK_BYTES);
        const blockEnd = Math.min(end, (virtualBlock + 1) * DATA_BLOCK_BYTES);
        push(cursor, blockStart, false, false);
        push(blockStart, blockEnd, true, copyOnWrite);
        cursor = blockEnd;
      }
    }
    push(cursor, end, false, false);
    return extents;
  }

  // ---- writes --------------------------------------------------------------------------

  private async writeLocked(pieces: Piece[], data: Buffer): Promise<void> {
    const blocks = pieces.map((piece) => piece.virtualBlock);
    const held = this.locks.blocks.tryHoldAll(blocks);
    if (held === null) {
      await this.locks.blocks.runAll(blocks, () => this.writeHeld(pieces, data));
      return;
    }
    try {
      await this.writeHeld(pieces, data);
    } finally {
      held();
    }
  }

  /** With the request's blocks held: plan, write the data, then map what was freshly provisioned. */
  private async writeHeld(pieces: Piece[], data: Buffer): Promise<void> {
    const { value: plans, reservation } = await this.tx.reserve((metadata, allocate) => this.planWrites(metadata, pieces, allocate));
    try {
      await this.writeAll(plans, data);
    } catch (error) {
      await this.tx.abandon(reservation);
      throw error;
    }
    await this.tx.settle(reservation, async (metadata) => {
      const state = this.liveState(metadata);
      for (const plan of plans) if (plan.kind === "fresh") await metadata.mapBlock(state, plan.piece.virtualBlock, plan.dataBlock);
    });
  }

  /** Decides, per block, between writing in place and provisioning a fresh data block. */
  private async planWrites(metadata: PoolMetadata, pieces: Piece[], allocate: () => Promise<number>): Promise<WritePlan[]> {
    const state = this.liveState(metadata);
    // One walk over the request's blocks, from the cache when it can be.
    const { first, end } = blockSpan(pieces);
    const current = new Map<number, { dataBlock: number; copyOnWrite: boolean }>();
    const note: MappingVisit = (virtualBlock, dataBlock, _sharedNow, copyOnWrite) =>
      void current.set(virtualBlock, { dataBlock, copyOnWrite });
    if (metadata.forEachMappingCached(state, first, end, note) === null) {
      current.clear();
      await metadata.forEachMapping(state, first, end, note);
    }
    const plans: WritePlan[] = [];
    for (const piece of pieces) {
      const mapping = current.get(piece.virtualBlock);
      if (mapping && !mapping.copyOnWrite) {
        plans.push({ piece, kind: "in-place", dataBlock: mapping.dataBlock });
        continue;
      }
      const dataBlock = await allocate();
      const wholeBlock = piece.byteLength === DATA_BLOCK_BYTES;
      plans.push({ piece, kind: "fresh", dataBlock, copyFrom: mapping && !wholeBlock ? mapping.dataBlock : null });
    }
    return plans;
  }

  /** Writes every plan's bytes: partial fresh blocks merged with their old contents, the rest directly. */
  private async writeAll(plans: WritePlan[], data: Buffer): Promise<void> {
    const dataFile = this.tx.dataFile;
    // A small request is written on the calling thread where the file can; a large one is
    // handed to the file's own writes, which run side by side and leave the event loop free.
    const inline = data.length <= INLINE_REQUEST_BYTES_MAX;
    const writes: Promise<void>[] = [];
    for (const plan of plans) {
      if (plan.kind === "fresh" && plan.piece.byteLength !== DATA_BLOCK_BYTES) writes.push(this.writeMergedBlock(plan, data, inline));
    }
    for (const run of directRuns(plans)) {
      const bytes = data.subarray(run.inRequest, run.inRequest + run.byteLength);
      if (!(inline && dataFile.writeNow?.(bytes, run.position))) writes.push(dataFile.write(bytes, run.position));
    }
    await Promise.all(writes);
    this.tx.noteDataWritten();
  }

  /** A partial write to a fresh block: the rest is the shared block's old contents, or zeros. */
  private async writeMergedBlock(plan: Extract<WritePlan, { kind: "fresh" }>, data: Buffer, inline: boolean): Promise<void> {
    const { piece } = plan;
    const dataFile = this.tx.dataFile;
    // The old block's read fills every byte (zeros past the file's end); without one, zeros.
    const block = plan.copyFrom !== null ? Buffer.allocUnsafe(DATA_BLOCK_BYTES) : Buffer.alloc(DATA_BLOCK_BYTES);
    if (plan.copyFrom !== null) {
      await dataFile.read(block, plan.copyFrom * DATA_BLOCK_BYTES);
      this.tx.observer.copiedOnWrite?.();
    }
    data.copy(block, piece.inBlock, piece.inRequest, piece.inRequest + piece.byteLength);
    const position = plan.dataBlock * DATA_BLOCK_BYTES;
    if (!(inline && dataFile.writeNow?.(block, position))) await dataFile.write(block, position);
  }

  // ---- discard and zeroing -------------------------------------------------------------

  /** Whole blocks are unmapped; the partial blocks at either end get zeros written. */
  private async zeroRange(offset: number, length: number): Promise<void> {
    if (length === 0) return;
    const end = offset + length;
    const firstWhole = Math.ceil(offset / DATA_BLOCK_BYTES);
    const endWhole = Math.floor(end / DATA_BLOCK_BYTES);
    if (firstWhole >= endWhole) {
      // No whole block: the range lies in one block or straddles one boundary.
      const boundary = Math.min(end, (Math.floor(offset / DATA_BLOCK_BYTES) + 1) * DATA_BLOCK_BYTES);
      await this.zeroPartial(offset, boundary);
      await this.zeroPartial(boundary, end);
      return;
    }
    await this.zeroPartial(offset, firstWhole * DATA_BLOCK_BYTES);
    await this.zeroPartial(endWhole * DATA_BLOCK_BYTES, end);
    for (let from = firstWhole; from < endWhole;) {
      const to = Math.min(endWhole, from + RANGE_STEP_BLOCKS);
      const done = await this.locks.gate.shared(async () => {
        // A seal between two steps: the volume is unsealed again before the next unmap.
        if (this.sealedNow()) return false;
        const mapped = await this.mappedBlocksIn(from, to);
        if (mapped.length === 0) return true;
        await this.locks.blocks.runAll(mapped, () =>
          this.tx.change(async (metadata) => {
            const state = this.liveState(metadata);
            for (const virtualBlock of mapped) await metadata.unmapBlock(state, virtualBlock);
          }),
        );
        return true;
      });
      if (done) from = to;
      else await this.contentChangeReady();
    }
  }

  /** Zeros within one block; an unmapped block already reads as zeros. */
  private async zeroPartial(start: number, end: number): Promise<void> {
    if (end <= start) return;
    const virtualBlock = Math.floor(start / DATA_BLOCK_BYTES);
    assert(Math.floor((end - 1) / DATA_BLOCK_BYTES) === virtualBlock, "partial zeroing spans blocks");
    const mapped = await this.mappedBlocksIn(virtualBlock, virtualBlock + 1);
    if (mapped.length > 0) await this.write(start, Buffer.alloc(end - start));
  }

  private async mappedBlocksIn(from: number, to: number): Promise<number[]> {
    return this.tx.read(async (metadata) => {
      const mapped: number[] = [];
      await metadata.forEachMapping(this.liveState(metadata), from, to, (virtualBlock) => void mapped.push(virtualBlock));
      return mapped;
    });
  }

  /**
   * Null when the volume's contents may change now; otherwise the commit that unseals it
   * first (formats/metadata.md, "Volume identity"). That commit is durable before any byte
   * changes: were it not, a crash could leave a volume whose record still vouches for contents
   * it no longer has, and an incremental stream received onto it would be silently wrong.
   */
  /** Sealed, or being unsealed: the contents may not change yet. */
  private sealedNow(): boolean {
    return this.locks.unsealing !== null || this.state.record.sealed;
  }

  private contentChangeReady(): Promise<void> | null {
    const locks = this.locks;
    if (locks.unsealing !== null) return locks.unsealing;
    if (!this.state.record.sealed) return null;
    const unsealing = this.tx
      .change(async (metadata) => void metadata.unseal(this.liveState(metadata)))
      .then(() => this.tx.commit())
      .finally(() => {
        locks.unsealing = null;
      });
    locks.unsealing = unsealing;
    return unsealing;
  }

  // ---- checks --------------------------------------------------------------------------

  private checkRange(offset: number, length: number): void {
    const size = this.state.record.sizeBytes;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new OutOfRangeError(this.name, offset, length, size);
    }
  }

  private checkWritable(): void {
    if (this.state.record.readOnly) throw new ReadOnlyError(`volume '${this.name}'`);
    this.tx.assertWritable(`volume '${this.name}'`);
  }

  /** Inside a section: this volume's state in that transaction, or NO_SUCH_VOLUME once deleted. */
  private liveState(metadata: PoolMetadata): VolumeState {
    const state = metadata.stateById(this.lastKnown.id);
    if (!state) throw new NoSuchVolumeError(this.lastKnown.record.name);
    this.lastKnown = state;
    return state;
  }
}

/**
 * Plans for writing every piece in place, from the cache alone: null unless every block is
 * mapped and would not be copied first (shared with a snapshot), or if a node is not cached.
 */
function inPlacePlans(metadata: PoolMetadata, state: VolumeState, pieces: Piece[]): WritePlan[] | null {
  const { first, end } = blockSpan(pieces);
  const owned = new Map<number, number>();
  let copies = false;
  const answered = metadata.forEachMappingCached(state, first, end, (virtualBlock, dataBlock, _sharedNow, copyOnWrite) => {
    if (copyOnWrite) copies = true;
    else owned.set(virtualBlock, dataBlock);
  });
  if (answered === null || copies) return null;
  const plans: WritePlan[] = [];
  for (const piece of pieces) {
    const dataBlock = owned.get(piece.virtualBlock);
    if (dataBlock === undefined) return null;
    plans.push({ piece, kind: "in-place", dataBlock });
  }
  return plans;
}

/**
 * Largest write handed to the data file at once. The page cache sizes a folio by the write
 * that creates it: one 1 MiB write makes 1 MiB folios, and a later 4 KiB write into one of
 * them costs the kernel about four times as much (bench/page-cache-folios.ts: 7.2 us against
 * 1.8, in bench/RESULTS.md) and dirties the whole folio for writeback. Writing no more than a data block at once keeps folios within one block, the
 * unit every later write, copy and discard works in.
 */
const DIRECT_WRITE_BYTES_MAX = DATA_BLOCK_BYTES;

/**
 * Largest request whose data writes are tried on the calling thread: 1 MiB, the size
 * qemu-img and nbdcopy send, whose sixteen block writes hold the event loop for a few
 * hundred microseconds. Measured here, 1 MiB sequential writes ran at 628 MB/s written
 * inline against 498 through the thread pool. Larger requests (up to 64 MiB) would hold it
 * for milliseconds, so the pool runs their writes side by side.
 */
const INLINE_REQUEST_BYTES_MAX = 1024 * 1024;

/**
 * The plans whose bytes go straight to the file (in place, or a whole fresh block), joined
 * into one write where both the file positions and the request's bytes are contiguous, as a
 * sequential write to freshly allocated blocks usually is.
 */
function directRuns(plans: WritePlan[]): { position: number; inRequest: number; byteLength: number }[] {
  const direct: { position: number; inRequest: number; byteLength: number }[] = [];
  for (const plan of plans) {
    const { piece } = plan;
    if (plan.kind === "fresh" && piece.byteLength !== DATA_BLOCK_BYTES) continue;
    const position = plan.dataBlock * DATA_BLOCK_BYTES + (plan.kind === "in-place" ? piece.inBlock : 0);
    const last = direct[direct.length - 1];
    if (
      last &&
      last.position + last.byteLength === position &&
      last.inRequest + last.byteLength === piece.inRequest &&
      last.byteLength + piece.byteLength <= DIRECT_WRITE_BYTES_MAX
    ) {
      last.byteLength += piece.byteLength;
    } else {
      direct.push({ position, inRequest: piece.inRequest, byteLength: piece.byteLength });
    }
  }
  return direct;
}

/** The virtual blocks [first, end) a request's pieces span. */
function blockSpan(pieces: Piece[]): { first: number; end: number } {
  const firstPiece = pieces[0];
  const lastPiece = pieces.at(-1);
  assert(firstPiece !== undefined && lastPiece !== undefined, "a range of one byte or more has a piece");
  return { first: firstPiece.virtualBlock, end: lastPiece.virtualBlock + 1 };
}

/** Zeroes the unmapped pieces of `bytes` and returns the mapped and unmapped runs, merged. */
function mappedRuns(offset: number, pieces: Piece[], mapped: Map<number, number>, bytes: Buffer): MappedRun[] {
  const runs: MappedRun[] = [];
  for (const piece of pieces) {
    const isMapped = mapped.has(piece.virtualBlock);
    const last = runs[runs.length - 1];
    if (last && last.mapped === isMapped) last.length += piece.byteLength;
    else runs.push({ offset: offset + piece.inRequest, length: piece.byteLength, mapped: isMapped });
    if (!isMapped) bytes.fill(0, piece.inRequest, piece.inRequest + piece.byteLength);
  }
  return runs;
}

function withData(offset: number, bytes: Buffer, runs: MappedRun[]): ReadRun[] {
  return runs.map((run) => ({
    offset: run.offset,
    length: run.length,
    data: run.mapped ? bytes.subarray(run.offset - offset, run.offset - offset + run.length) : null,
  }));
}

function splitIntoPieces(offset: number, length: number): Piece[] {
  const pieces: Piece[] = [];
  for (let done = 0; done < length;) {
    const at = offset + done;
    const virtualBlock = Math.floor(at / DATA_BLOCK_BYTES);
    const inBlock = at % DATA_BLOCK_BYTES;
    const byteLength = Math.min(DATA_BLOCK_BYTES - inBlock, length - done);
    pieces.push({ virtualBlock, inBlock, byteLength, inRequest: done });
    done += byteLength;
  }
  return pieces;
}

/** Joins pieces whose data blocks are consecutive on disk into single reads. */
function coalesce(
  pieces: Piece[],
  dataBlockOf: (piece: Piece) => number | null,
): { inRequest: number; byteLength: number; dataBlock: number; inBlock: number }[] {
  const runs: { inRequest: number; byteLength: number; dataBlock: number; inBlock: number; lastBlock: number }[] = [];
  for (const piece of pieces) {
    const dataBlock = dataBlockOf(piece);
    if (dataBlock === null) continue;
    const last = runs[runs.length - 1];
    if (last && last.lastBlock + 1 === dataBlock && last.inRequest + last.byteLength === piece.inRequest && piece.inBlock === 0) {
      last.byteLength += piece.byteLength;
      last.lastBlock = dataBlock;
    } else {
      runs.push({ inRequest: piece.inRequest, byteLength: piece.byteLength, dataBlock, inBlock: piece.inBlock, lastBlock: dataBlock });
    }
  }
  return runs;
}
