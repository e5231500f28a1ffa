// A thin pool: a data file of 64 KiB blocks and a metadata file of copy-on-write trees.
// Every metadata change runs under one mutex; data reads and writes of different blocks
// run concurrently around it (see volume.ts).

import { realpath, unlink } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import {
  DataFileTruncatedError,
  FileExistsError,
  FileMissingError,
  InvalidSizeError,
  NoSuchVolumeError,
  DataFileLockedError,
  NotAPoolError,
  PoolLockedError,
  PoolFullError,
  ReadOnlyError,
  ShrinkBelowMappedError,
  ThinpError,
  VolumeBusyError,
  type ErrorCode,
} from "../errors.js";
import { assert } from "../io/assert.js";
import { formatByteCount, formatSize } from "../io/byte-units.js";
import { NodeStorageFile } from "../io/node-storage-file.js";
import type { StorageFile } from "../io/storage-file.js";
import { METADATA_BLOCK_BYTES } from "../pdata/block-format.js";
import type { PoolStatus, VolumeInfo, VolumeUsage } from "./api.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX, POOL_BYTES_MAX, SECTOR_BYTES, VOLUME_BYTES_MAX } from "./limits.js";
import { KeyedLocks, Mutex, SharedGate } from "./locks.js";
import { validateVolumeName } from "./names.js";
import { PoolMetadata, type VolumeState } from "./pool-metadata.js";
import { Volume } from "./volume.js";
import { claimDataFile, DataFileIdentityStore, type DataFileIdentity, type MetadataClaim } from "./data-file-identity.js";
import { lockModeFor, openLockedDataFile, openLockedMetadataFile, openModeFor } from "./pool-files.js";
import { pathExists } from "../io/path-exists.js";

export interface PoolCreateOptions {
  sizeBytes: number;
}

/** For tests: a tiny metadata cache makes tree operations read (and fail) from the file. */
export interface PoolTuning {
  cacheBlocks?: number;
}

export interface PoolOpenOptions {
  readOnly?: boolean;
}

export class Pool {
  private readonly metadataMutex = new Mutex();
  /** Writes and discards of one virtual block, keyed by volume id and block. */
  readonly blockLocks = new KeyedLocks();
  private readonly gates = new Map<number, SharedGate>();
  /** Reads between their lookup and the end of their data read (see releaseDataFrees). */
  private readonly readsInFlight = new Set<Promise<unknown>>();
  private readonly openHandles = new Map<number, number>();
  private closed = false;
  /** Data written in place since the last commit, which only a sync makes durable. */
  private dataWrittenSinceCommit = false;

  private constructor(
    readonly metaPath: string,
    readonly dataPath: string,
    readonly dataFile: StorageFile,
    private metadataValue: PoolMetadata,
    /** Where the data file records that this pool owns it; null for files tests provide. */
    private readonly identity: DataFileIdentityStore | null,
    readonly readOnly: boolean,
  ) {
    // A pool whose space maps did not load can be read, never changed (PoolMetadata.open).
    if (metadataValue.degraded) this.readOnly = true;
  }

  static async create(dataPath: string, metaPath: string, options: PoolCreateOptions): Promise<Pool> {
    const dataBlockCount = validatePoolSize(options.sizeBytes);
    for (const path of [metaPath, dataPath]) {
      if (await pathExists(path)) throw new FileExistsError(path);
    }
    const opened: NodeStorageFile[] = [];
    try {
      const dataFile = await NodeStorageFile.open(dataPath, "create", "data file");
      opened.push(dataFile);
      if (!dataFile.tryLock("exclusive")) throw new DataFileLockedError(dataPath, metaPath, null);
      await dataFile.truncate(dataBlockCount * DATA_BLOCK_BYTES);
      const metaFile = await NodeStorageFile.open(metaPath, "create", "metadata file");
      opened.push(metaFile);
      if (!metaFile.tryLock("exclusive")) throw new PoolLockedError(metaPath, null);
      const storedDataPath = relative(dirname(resolve(metaPath)), resolve(dataPath));
      const metadata = await PoolMetadata.format(metaFile, dataBlockCount, storedDataPath, dataFile);
      const identity = new DataFileIdentityStore(dataFile, resolve(dataPath));
      const claim = await claimDataFile(identity, resolve(metaPath), await metaFile.fileId(), poolClaim(metadata), true);
      const pool = new Pool(metaPath, dataPath, dataFile, metadata, identity, false);
      pool.identityRecord = claim.identity;
      return pool;
    } catch (error) {
      // A pool that could not be made whole leaves nothing behind.
      await Promise.allSettled(opened.map((file) => file.close()));
      await Promise.allSettled(opened.map((file) => unlink(file.path)));
      throw error;
    }
  }

  static async open(metaPath: string, options: PoolOpenOptions = {}): Promise<Pool> {
    if (!(await pathExists(metaPath))) throw new FileMissingError(metaPath, "metadata file");
    // The data path is stored relative to where the metadata file really is, not to a link.
    const realMetaPath = await realpath(metaPath);
    const access = options.readOnly ? "read" : "write";
    const opened: StorageFile[] = [];
    try {
      const metaFile = await openLockedMetadataFile(metaPath, openModeFor(access), lockModeFor(access));
      opened.push(metaFile);
      const metadata = await PoolMetadata.open(metaFile, metaPath);
      const dataPath = resolve(dirname(realMetaPath), metadata.dataPath);
      const dataFile = await openLockedDataFile(dataPath, metaPath, openModeFor(access), lockModeFor(access));
      opened.push(dataFile);
      const identity = new DataFileIdentityStore(dataFile, dataPath);
      const pool = new Pool(metaPath, dataPath, dataFile, metadata, identity, options.readOnly ?? false);
      await pool.verifyDataFileSize();
      const claim = await claimDataFile(identity, realMetaPath, await metaFile.fileId(), poolClaim(metadata), !pool.readOnly);
      if (claim.repairedCopyInPlace && !pool.readOnly) {
        const placedDataPath = relative(dirname(realMetaPath), dataPath);
        if (Buffer.byteLength(placedDataPath) <= DATA_PATH_BYTES_MAX) metadata.markInPlace(placedDataPath);
      }
      pool.identityRecord = claim.identity;
      return pool;
    } catch (error) {
      await Promise.allSettled(opened.map((file) => file.close()));
      throw error;
    }
  }

  /** A pool over files the caller provides (memory files in tests); no lock file. */
  static async formatFiles(metaFile: StorageFile, dataFile: StorageFile, options: PoolCreateOptions & PoolTuning): Promise<Pool> {
    const dataBlockCount = validatePoolSize(options.sizeBytes);
    await dataFile.truncate(dataBlockCount * DATA_BLOCK_BYTES);
    const metadata = await PoolMetadata.format(metaFile, dataBlockCount, "data", dataFile, options.cacheBlocks);
    const pool = new Pool(metaFile.path, dataFile.path, dataFile, metadata, null, false);
    pool.cacheBlocks = options.cacheBlocks;
    return pool;
  }

  static async openFiles(metaFile: StorageFile, dataFile: StorageFile, tuning: PoolTuning = {}): Promise<Pool> {
    const metadata = await PoolMetadata.open(metaFile, metaFile.path, tuning.cacheBlocks);
    const pool = new Pool(metaFile.path, dataFile.path, dataFile, metadata, null, false);
    pool.cacheBlocks = tuning.cacheBlocks;
    return pool;
  }


  /** The current transaction's metadata; replaced when a failed transaction is rolled back. */
  get metadata(): PoolMetadata {
    return this.metadataValue;
  }

  private set metadata(metadata: PoolMetadata) {
    this.metadataValue = metadata;
  }

  // ---- volumes -------------------------------------------------------------------------

  async createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    this.assertWritable("the pool");
    validateVolumeName(name);
    validateVolumeSize(sizeBytes);
    return this.withMetadata(async () => this.describe(await this.metadata.createVolume(name, sizeBytes, Date.now())));
  }

  async snapshot(originName: string, name: string, options: { readOnly?: boolean } = {}): Promise<VolumeInfo> {
    this.assertWritable("the pool");
    validateVolumeName(name);
    const origin = await this.readMetadata(() => this.requireVolume(originName));
    // Writes in flight to the origin finish first, so the snapshot holds every write
    // acknowledged before it and none acknowledged after.
    return this.gateFor(origin.id).exclusive(() =>
      this.withMetadata(async () => {
        const current = await this.requireVolume(originName);
        return this.describe(await this.metadata.snapshot(current, name, options.readOnly ?? false, Date.now()));
      }),
    );
  }

  async deleteVolume(name: string): Promise<void> {
    this.assertWritable("the pool");
    const state = await this.readMetadata(() => this.requireVolume(name));
    const handles = this.openHandles.get(state.id) ?? 0;
    if (handles > 0) throw new VolumeBusyError(name, `${handles} client${handles === 1 ? " has" : "s have"} it open`);
    await this.gateFor(state.id).exclusive(() =>
      this.withMetadata(async () => {
        await this.metadata.deleteVolume(await this.requireVolume(name));
        this.gates.delete(state.id);
      }),
    );
  }

  /** A shrink under open handles cuts off what their clients can see: refused unless `force`. */
  async resizeVolume(name: string, sizeBytes: number, options: { force?: boolean } = {}): Promise<VolumeInfo> {
    this.assertWritable("the pool");
    validateVolumeSize(sizeBytes);
    const state = await this.readMetadata(() => this.requireVolume(name));
    const handles = this.openHandles.get(state.id) ?? 0;
    if (sizeBytes < state.record.sizeBytes && handles > 0 && options.force !== true) {
      throw new VolumeBusyError(name, `${handles} client${handles === 1 ? " has" : "s have"} it open and would see errors past the new end`);
    }
    const oldSizeBytes = state.record.sizeBytes;
    const info = await this.gateFor(state.id).exclusive(() =>
      this.withMetadata(async () => {
        if (sizeBytes < state.record.sizeBytes) {
          let lastMapped = -1;
          const firstCut = Math.ceil(sizeBytes / DATA_BLOCK_BYTES);
          await this.metadata.forEachMapping(state, firstCut, Number.MAX_SAFE_INTEGER, (virtualBlock) => {
            lastMapped = virtualBlock;
          });
          if (lastMapped >= 0) {
            const required = Math.min(state.record.sizeBytes, (lastMapped + 1) * DATA_BLOCK_BYTES);
            throw new ShrinkBelowMappedError(name, sizeBytes, required);
          }
        }
        state.record.sizeBytes = sizeBytes;
        this.metadata.markDirty(state);
        return this.describe(state);
      }),
    );
    // Bytes past the old end may hold data from before an earlier shrink: they must read as zeros.
    if (sizeBytes > oldSizeBytes && oldSizeBytes % DATA_BLOCK_BYTES !== 0) {
      const tailEnd = Math.min(sizeBytes, Math.ceil(oldSizeBytes / DATA_BLOCK_BYTES) * DATA_BLOCK_BYTES);
      const volume = await this.volume(name);
      await volume.writeZeroes(oldSizeBytes, tailEnd - oldSizeBytes, false);
    }
    return info;
  }

  /** Grows the data file; shrinking a pool is not supported. */
  async resize(sizeBytes: number): Promise<PoolStatus> {
    this.assertWritable("the pool");
    const dataBlockCount = validatePoolSize(sizeBytes);
    return this.withMetadata(async () => {
      const current = this.metadata.dataRefs.blockCount;
      if (dataBlockCount < current) {
        throw new InvalidSizeError(`a pool cannot shrink: it has ${formatByteCount(current * DATA_BLOCK_BYTES)}; choose a size of at least that`);
      }
      await this.dataFile.truncate(dataBlockCount * DATA_BLOCK_BYTES);
      this.metadata.growData(dataBlockCount);
      return this.status();
    });
  }

  async volume(name: string): Promise<Volume> {
    const state = await this.readMetadata(() => this.requireVolume(name));
    return new Volume(this, state, this.gateFor(state.id));
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    return this.readMetadata(async () => {
      const states = await this.metadata.listVolumes();
      const infos: VolumeInfo[] = [];
      for (const state of states) infos.push(await this.describe(state));
      return infos;
    });
  }

  async usage(name: string): Promise<VolumeUsage> {
    return this.readMetadata(async () => {
      const state = await this.requireVolume(name);
      let exclusiveBlocks = 0;
      let sharedBlocks = 0;
      await this.metadata.forEachMapping(state, 0, Number.MAX_SAFE_INTEGER, (_virtualBlock, _dataBlock, sharedNow) => {
        if (sharedNow) sharedBlocks++;
        else exclusiveBlocks++;
      });
      const mappedBlocks = exclusiveBlocks + sharedBlocks;
      // Without both space maps, which blocks are shared is not known: say so rather than guess.
      if (this.metadata.degraded) return { mappedBlocks, exclusiveBlocks: null, sharedBlocks: null };
      return { mappedBlocks, exclusiveBlocks, sharedBlocks };
    });
  }

  status(): PoolStatus {
    const { dataRefs, tm } = this.metadata;
    const damage = this.metadata.degraded;
    return {
      dataBlockBytes: DATA_BLOCK_BYTES,
      dataBlocksUsed: this.metadata.dataBlocksUsed,
      dataBlocksTotal: dataRefs.blockCount,
      metadataBlockBytes: METADATA_BLOCK_BYTES,
      metadataBlocksUsed: this.metadata.metadataBlocksUsed,
      metadataBlocksTotal: tm.metadataRefs.blockCount,
      transactionId: this.metadata.transactionId,
      volumeCount: this.metadata.volumeCount,
      uuid: this.metadata.uuid,
      dataPath: this.dataPath,
      metaPath: this.metaPath,
      degraded: damage && { blockIndex: damage.blockIndex, message: damage.message },
    };
  }

  // ---- transactions --------------------------------------------------------------------

  async commit(): Promise<void> {
    if (this.readOnly) return;
    await this.withMetadata(() => this.commitLocked());
  }

  /** Drops the uncommitted transaction, as a crash would, and releases the pool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.metadataMutex.run(async () => {
      await Promise.allSettled([...this.readsInFlight]);
      await this.dataFile.close();
      // Closing the files drops their OS locks.
      await this.metadata.tm.file.close();
    });
  }

  // ---- for Volume ----------------------------------------------------------------------

  /**
   * Runs a section that changes metadata; nothing else touches the metadata meanwhile. If it
   * fails for any reason but a refusal checked before anything changed (an I/O error, a
   * corrupt block met halfway through a tree change), the in-memory transaction can no
   * longer be trusted: it is dropped, and the next section reloads the last commit, as if
   * the process had restarted. Writes acknowledged since that commit and never flushed may
   * be lost, as after a crash; a client that flushes learns of it from the failed flush.
   */
  withMetadata<T>(section: () => Promise<T>): Promise<T> {
    return this.metadataSection(section, true);
  }

  /** Runs a section that only reads metadata (or undoes its own allocations on failure). */
  readMetadata<T>(section: () => Promise<T>): Promise<T> {
    return this.metadataSection(section, false);
  }

  /** Counts transactions rolled back after a failure, so callers can tell their plans are stale. */
  get generation(): number {
    return this.generationValue;
  }

  private generationValue = 0;
  /** The data file's identity record as last written, which each commit advances. */
  private identityRecord: DataFileIdentity | null = null;
  private cacheBlocks: number | undefined;
  private failure: Error | null = null;

  private metadataSection<T>(section: () => Promise<T>, changes: boolean): Promise<T> {
    return this.metadataMutex.run(async () => {
      assert(!this.closed, "pool used after close");
      if (this.failure) await this.rollBackLocked();
      try {
        await this.metadata.tm.trimDirty();
        const result = await section();
        return result;
      } catch (error) {
        if (changes && !isRefusal(error)) this.failure = error as Error;
        throw error;
      }
    });
  }

  /** Reloads the last commit after a failed transaction; throws while the fault persists. */
  private async rollBackLocked(): Promise<void> {
    await Promise.allSettled([...this.readsInFlight]);
    this.metadata = await PoolMetadata.open(this.metadata.tm.file, this.metaPath, this.cacheBlocks);
    this.failure = null;
    this.generationValue++;
    this.dataWrittenSinceCommit = false;
  }

  /** Inside a metadata section: a free data block, committing first if frees are pending. */
  async allocateDataBlockLocked(): Promise<number> {
    let block = this.metadata.allocateDataBlock();
    if (block === null && this.metadata.dataRefs.allocatableCount < this.metadata.dataRefs.free) {
      await this.commitLocked();
      block = this.metadata.allocateDataBlock();
    }
    if (block === null) {
      throw new PoolFullError(this.metadata.dataRefs.used, this.metadata.dataRefs.blockCount, DATA_BLOCK_BYTES);
    }
    return block;
  }

  /** Registers a read that looked up data blocks, until its data read ends. */
  trackRead<T>(read: Promise<T>): Promise<T> {
    this.readsInFlight.add(read);
    const done = () => void this.readsInFlight.delete(read);
    read.then(done, done);
    return read;
  }

  openHandle(volumeId: number): void {
    this.openHandles.set(volumeId, (this.openHandles.get(volumeId) ?? 0) + 1);
  }

  closeHandle(volumeId: number): void {
    const count = (this.openHandles.get(volumeId) ?? 0) - 1;
    assert(count >= 0, `volume ${volumeId} closed more often than opened`);
    if (count === 0) this.openHandles.delete(volumeId);
    else this.openHandles.set(volumeId, count);
  }

  assertWritable(what: string): void {
    this.metadata.assertNotDegraded(what);
    if (this.readOnly) throw new ReadOnlyError(`${what} (opened read-only)`);
  }

  async requireVolume(name: string): Promise<VolumeState> {
    const state = await this.metadata.findVolume(name);
    if (!state) throw new NoSuchVolumeError(name);
    return state;
  }

  /** Something a commit would make durable: metadata changes or data written in place. */
  get hasUncommittedWork(): boolean {
    return this.dataWrittenSinceCommit || this.metadata.hasUncommittedChanges;
  }

  noteDataWritten(): void {
    this.dataWrittenSinceCommit = true;
  }

  private async commitLocked(): Promise<void> {
    this.dataWrittenSinceCommit = false;
    try {
      await this.metadata.commit(this.dataFile);
    } catch (error) {
      // After a failed sync the page cache may have dropped the writes it held: roll back to
      // the last commit rather than retry and report success over lost data.
      this.failure = error as Error;
      throw error;
    }
    await this.recordCommitInDataFile();
    // A read that looked up a block before it was freed may still be reading it.
    await Promise.allSettled([...this.readsInFlight]);
    this.metadata.releaseDataFrees();
  }

  /**
   * Advances the data file's record of the newest commit, so an older copy of this metadata
   * file is refused from now on. It follows the durable superblock: a crash between the two
   * leaves the record one commit behind, which only narrows what it refuses.
   */
  private async recordCommitInDataFile(): Promise<void> {
    if (this.identity === null || this.identityRecord === null) return;
    const record = { ...this.identityRecord, commit: this.metadata.transactionId };
    try {
      await this.identity.write(record);
      this.identityRecord = record;
    } catch {
      // The commit is durable already; a record that could not advance only means an older
      // copy made before now would still open, as it did before data files carried one.
    }
  }

  private gateFor(volumeId: number): SharedGate {
    let gate = this.gates.get(volumeId);
    if (!gate) {
      gate = new SharedGate();
      this.gates.set(volumeId, gate);
    }
    return gate;
  }

  private async describe(state: VolumeState): Promise<VolumeInfo> {
    const origin = state.record.originId === null ? null : await this.metadata.volumeById(state.record.originId);
    return {
      id: state.id,
      name: state.record.name,
      sizeBytes: state.record.sizeBytes,
      mappedBlocks: state.record.mappedBlocks,
      originName: origin?.record.name ?? null,
      readOnly: state.record.readOnly,
      createdAt: state.record.createdAt,
      snapshotAt: state.record.snapshotAt,
    };
  }

  private async verifyDataFileSize(): Promise<void> {
    const needed = this.metadata.dataRefs.blockCount * DATA_BLOCK_BYTES;
    const actual = await this.dataFile.byteLength();
    if (actual < needed) throw new DataFileTruncatedError(this.dataPath, actual, needed);
  }
}

/** "64 KiB (65536-byte)": the block size as the size messages name it. */
const DATA_BLOCK_TEXT = `${formatSize(DATA_BLOCK_BYTES)} (${DATA_BLOCK_BYTES}-byte)`;

function poolClaim(metadata: PoolMetadata): MetadataClaim {
  return { poolUuid: metadata.uuid, transactionId: metadata.transactionId, repairedCopy: metadata.repairedCopy };
}

function validatePoolSize(sizeBytes: number): number {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < DATA_BLOCK_BYTES) {
    throw new InvalidSizeError(`pool size ${formatByteCount(sizeBytes)} is too small: at least one ${DATA_BLOCK_TEXT} block is needed`);
  }
  if (sizeBytes % DATA_BLOCK_BYTES !== 0) {
    throw new InvalidSizeError(`pool size ${formatByteCount(sizeBytes)} is not a multiple of the ${DATA_BLOCK_TEXT} block size`);
  }
  if (sizeBytes > POOL_BYTES_MAX) {
    throw new InvalidSizeError(`pool size ${formatByteCount(sizeBytes)} exceeds the limit of ${formatByteCount(POOL_BYTES_MAX)}`);
  }
  return sizeBytes / DATA_BLOCK_BYTES;
}

function validateVolumeSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new InvalidSizeError(`volume size ${sizeBytes} must be a positive number of bytes`);
  if (sizeBytes % SECTOR_BYTES !== 0) {
    throw new InvalidSizeError(`volume size ${formatByteCount(sizeBytes)} is not a multiple of ${SECTOR_BYTES} bytes`);
  }
  if (sizeBytes > VOLUME_BYTES_MAX) {
    throw new InvalidSizeError(`volume size ${formatByteCount(sizeBytes)} exceeds the limit of ${formatByteCount(VOLUME_BYTES_MAX)}`);
  }
}

/** Refusals are checked before anything changes, so they leave the transaction sound. */
const REFUSAL_CODES = new Set<ErrorCode>([
  "NO_SUCH_VOLUME",
  "VOLUME_EXISTS",
  "INVALID_NAME",
  "INVALID_SIZE",
  "SHRINK_BELOW_MAPPED",
  "POOL_FULL",
  "LIMIT_EXCEEDED",
  "OUT_OF_RANGE",
  "READ_ONLY",
  "VOLUME_BUSY",
]);

function isRefusal(error: unknown): boolean {
  return error instanceof ThinpError && REFUSAL_CODES.has(error.code);
}
