// A thin pool: a data file of 64 KiB blocks and a metadata file of copy-on-write trees.
// Its metadata is reached only through sections of its transactions (transactions.ts);
// data reads and writes of different blocks run concurrently around them (volume.ts).

import { realpath, unlink } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import {
  DataFileTruncatedError,
  FileExistsError,
  FileMissingError,
  InvalidSizeError,
  IoError,
  NoSuchVolumeError,
  ShrinkBelowMappedError,
  VolumeBusyError,
} from "../errors.js";
import { assert } from "../io/assert.js";
import { formatByteCount, formatSize } from "../io/byte-units.js";
import { NodeStorageFile } from "../io/node-storage-file.js";
import type { StorageFile } from "../io/storage-file.js";
import { METADATA_BLOCK_BYTES } from "../pdata/block-format.js";
import type { DiffRange, PoolStatus, VolumeIdentity, VolumeInfo, VolumeUsage } from "./api.js";
import { diffBlockRuns, resolveDiffSides, type DiffOptions, type DiffSides } from "./volume-diff.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX, POOL_BYTES_MAX, SECTOR_BYTES, VOLUME_BYTES_MAX } from "./limits.js";
import { KeyedLocks, SharedGate } from "./locks.js";
import { validateVolumeName } from "./names.js";
import { PoolMetadata, type VolumeState } from "./pool-metadata.js";
import { PoolTransactions, type FullPoolPolicy } from "./transactions.js";
import { Volume, type VolumeLocks } from "./volume.js";
import { holdName, isHoldName, type VolumeHold } from "./holds.js";
import { claimDataFile, DataFileIdentityStore, type DataFileIdentity, type MetadataClaim } from "./data-file-identity.js";
import { lockModeFor, openLockedDataFile, openLockedMetadataFile, openModeFor } from "./pool-files.js";
import { pathExists } from "../io/path-exists.js";
import type { PoolObserver } from "./pool-observer.js";

export interface PoolCreateOptions {
  sizeBytes: number;
}

/** For tests: a tiny metadata cache makes tree operations read (and fail) from the file. */
export interface PoolTuning {
  cacheBlocks?: number;
}

export interface PoolOpenOptions {
  readOnly?: boolean;
  /** Facts an operator should hear that fail nothing; by default `thinp: warning:` lines on stderr. */
  warn?: (message: string) => void;
  /** What writes that need a new block do when the pool is full; `error` (ENOSPC at once) by default. */
  whenFull?: FullPoolPolicy;
}

const warnOnStderr = (message: string) => void process.stderr.write(`thinp: warning: ${message}\n`);

export class Pool {
  /** The only way to the metadata: sections that read, reserve data blocks, or change. */
  readonly transactions: PoolTransactions;
  private readonly volumeLocks = new Map<number, VolumeLocks>();
  private readonly openHandles = new Map<number, number>();
  /** The data file's identity record as last written, which each commit advances. */
  private identityRecord: DataFileIdentity | null = null;
  /** Holds taken by this process so far: part of each hold's name. */
  private holdCount = 0;

  private constructor(
    readonly metaPath: string,
    readonly dataPath: string,
    readonly dataFile: StorageFile,
    metadata: PoolMetadata,
    /** Where the data file records that this pool owns it; null for files tests provide. */
    private readonly identity: DataFileIdentityStore | null,
    readOnly: boolean,
    cacheBlocks?: number,
    warn: (message: string) => void = warnOnStderr,
    whenFull?: FullPoolPolicy,
  ) {
    this.transactions = new PoolTransactions(metadata, dataFile, {
      metaPath,
      // A pool whose space maps did not load can be read, never changed (PoolMetadata.open).
      readOnly: readOnly || metadata.degraded !== null,
      cacheBlocks,
      afterCommit: (committed) => this.recordCommitInDataFile(committed),
      warn,
      whenFull,
    });
  }

  get readOnly(): boolean {
    return this.transactions.readOnly;
  }

  /** The damage that keeps the pool read-only, or null. */
  get degraded(): PoolMetadata["degraded"] {
    return this.transactions.inspect((metadata) => metadata.degraded);
  }

  static async create(dataPath: string, metaPath: string, options: PoolCreateOptions): Promise<Pool> {
    const dataBlockCount = validatePoolSize(options.sizeBytes);
    for (const path of [metaPath, dataPath]) {
      if (await pathExists(path)) throw new FileExistsError(path);
    }
    const opened: NodeStorageFile[] = [];
    try {
      const dataFile = await openLockedDataFile(dataPath, metaPath, "create", "exclusive");
      opened.push(dataFile);
      await dataFile.truncate(dataBlockCount * DATA_BLOCK_BYTES);
      const metaFile = await openLockedMetadataFile(metaPath, "create", "exclusive");
      opened.push(metaFile);
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
    // The data path is stored relative to where the metadata file really is, not to a link.
    const realMetaPath = await realpath(metaPath).catch((error: NodeJS.ErrnoException) => {
      throw error.code === "ENOENT" ? new FileMissingError(metaPath, "metadata file") : new IoError(metaPath, error);
    });
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
      const pool = new Pool(
        metaPath,
        dataPath,
        dataFile,
        metadata,
        identity,
        options.readOnly ?? false,
        undefined,
        options.warn,
        options.whenFull,
      );
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
  static async formatFiles(
    metaFile: StorageFile,
    dataFile: StorageFile,
    options: PoolCreateOptions & PoolTuning & { whenFull?: FullPoolPolicy },
  ): Promise<Pool> {
    const dataBlockCount = validatePoolSize(options.sizeBytes);
    await dataFile.truncate(dataBlockCount * DATA_BLOCK_BYTES);
    const metadata = await PoolMetadata.format(metaFile, dataBlockCount, "data", dataFile, options.cacheBlocks);
    return new Pool(metaFile.path, dataFile.path, dataFile, metadata, null, false, options.cacheBlocks, undefined, options.whenFull);
  }

  static async openFiles(metaFile: StorageFile, dataFile: StorageFile, tuning: PoolTuning = {}): Promise<Pool> {
    const metadata = await PoolMetadata.open(metaFile, metaFile.path, tuning.cacheBlocks);
    return new Pool(metaFile.path, dataFile.path, dataFile, metadata, null, false, tuning.cacheBlocks);
  }

  // ---- volumes -------------------------------------------------------------------------

  async createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    this.assertWritable("the pool");
    validateVolumeName(name);
    validateVolumeSize(sizeBytes);
    return this.transactions.change(async (metadata) => describe(metadata, await metadata.createVolume(name, sizeBytes, Date.now())));
  }

  async snapshot(originName: string, name: string, options: { readOnly?: boolean } = {}): Promise<VolumeInfo> {
    this.assertWritable("the pool");
    validateVolumeName(name);
    const origin = await this.transactions.read((metadata) => metadata.requireVolume(originName));
    // Writes in flight to the origin finish first, so the snapshot holds every write
    // acknowledged before it and none acknowledged after.
    return this.locksFor(origin.id).gate.exclusive(() =>
      this.transactions.change(async (metadata) => {
        const current = await metadata.requireVolume(originName);
        return describe(metadata, await metadata.snapshot(current, name, options.readOnly ?? false, Date.now()));
      }),
    );
  }

  /**
   * Seals the volume, durably, and returns its identity: until its contents next change,
   * that identity names exactly what they are now (a change first raises the generation).
   * Writes in flight finish first, as for a snapshot. What send puts in a stream's header.
   */
  async seal(name: string): Promise<VolumeIdentity> {
    const found = await this.transactions.read((metadata) => metadata.requireVolume(name));
    // Sealed already: nothing to write, so a read-only pool can be sent from too.
    if (found.record.sealed && this.locksFor(found.id).unsealing === null) {
      return { uuid: found.record.uuid, generation: found.record.generation };
    }
    this.assertWritable("the pool");
    const identity = await this.locksFor(found.id).gate.exclusive(async () => {
      const sealed = await this.transactions.change(async (metadata) => {
        const state = await metadata.requireVolume(name);
        metadata.seal(state);
        return { uuid: state.record.uuid, generation: state.record.generation };
      });
      await this.commit();
      return sealed;
    });
    return identity;
  }

  /**
   * A hold on the volume (holds.ts): a hidden read-only snapshot, taken with writes in
   * flight finished first, as for a snapshot. With `seal`, the volume is sealed in the same
   * change, so the identity returned names exactly the hold's contents even when the volume
   * is written to a moment later (that write raises its generation; the hold keeps this one).
   * Durable when it returns. Release it with releaseHold.
   */
  async hold(name: string, options: { seal: boolean }): Promise<VolumeHold> {
    this.assertWritable("the pool");
    const found = await this.transactions.read((metadata) => metadata.requireVolume(name));
    // A hold, or a receive in progress, is no volume of the user's: not there to be held.
    if (found.record.hidden) throw new NoSuchVolumeError(name);
    const locks = this.locksFor(found.id);
    const hidden = holdName(this.holdCount++);
    return locks.gate.exclusive(async () => {
      // A write that began unsealing the volume before the gate closed has that committed
      // first: sealing before it would be undone by it, after the hold was taken.
      while (locks.unsealing !== null) await locks.unsealing;
      const held = await this.transactions.change(async (metadata) => {
        const state = await metadata.requireVolume(name);
        if (state.id !== found.id) throw new NoSuchVolumeError(name);
        if (options.seal) metadata.seal(state);
        return this.holdIn(metadata, state, hidden);
      });
      await this.commit();
      return held;
    });
  }

  /**
   * A hold on every listed volume, in one change and one commit: the whole pool as of one
   * instant, for a dump. Nothing is sealed, and no write is waited for: a dump reads mappings,
   * and each section sees the mappings of every write it follows.
   */
  async holdAll(): Promise<VolumeHold[]> {
    this.assertWritable("the pool");
    const holds = await this.transactions.change(async (metadata) => {
      const held: VolumeHold[] = [];
      for (const state of await metadata.listVolumes()) {
        if (!state.record.hidden) held.push(await this.holdIn(metadata, state, holdName(this.holdCount++)));
      }
      return held;
    });
    await this.commit();
    return holds;
  }

  private async holdIn(metadata: PoolMetadata, state: VolumeState, hidden: string): Promise<VolumeHold> {
    assert(isHoldName(hidden) && !state.record.hidden, `a hold '${hidden}' on a listed volume`);
    const hold = await metadata.snapshot(state, hidden, true, Date.now());
    hold.record.hidden = true;
    metadata.markDirty(hold);
    return {
      name: state.record.name,
      volumeId: state.id,
      holdName: hidden,
      identity: { uuid: state.record.uuid, generation: state.record.generation },
      sealed: state.record.sealed,
      sizeBytes: state.record.sizeBytes,
      mappedBlocks: state.record.mappedBlocks,
      snapshotTime: state.record.snapshotTime,
    };
  }

  /** Lets go of holds, in one commit: their blocks that nothing else maps are free again. */
  async releaseHolds(hidden: readonly string[]): Promise<void> {
    for (const name of hidden) {
      assert(isHoldName(name), `'${name}' is not a hold`);
      await this.deleteVolume(name);
    }
    if (hidden.length > 0) await this.commit();
  }

  /** Deletes holds that a process which stopped without releasing them left (a crash); returns how many. */
  async releaseLeftoverHolds(): Promise<number> {
    const leftovers = await this.transactions.read(async (metadata) =>
      (await metadata.listVolumes())
        .filter((state) => state.record.hidden && isHoldName(state.record.name))
        .map((state) => state.record.name),
    );
    await this.releaseHolds(leftovers);
    return leftovers.length;
  }

  async deleteVolume(name: string): Promise<void> {
    this.assertWritable("the pool");
    const state = await this.transactions.read((metadata) => metadata.requireVolume(name));
    const handles = this.openHandles.get(state.id) ?? 0;
    if (handles > 0) throw new VolumeBusyError(name, `${handles} client${handles === 1 ? " has" : "s have"} it open`);
    await this.locksFor(state.id).gate.exclusive(() =>
      this.transactions.change(async (metadata) => {
        await metadata.deleteVolume(await metadata.requireVolume(name));
        this.volumeLocks.delete(state.id);
      }),
    );
  }

  /** A shrink under open handles cuts off what their clients can see: refused unless `force`. */
  async resizeVolume(name: string, sizeBytes: number, options: { force?: boolean } = {}): Promise<VolumeInfo> {
    this.assertWritable("the pool");
    validateVolumeSize(sizeBytes);
    const found = await this.transactions.read((metadata) => metadata.requireVolume(name));
    const handles = this.openHandles.get(found.id) ?? 0;
    if (sizeBytes < found.record.sizeBytes && handles > 0 && options.force !== true) {
      throw new VolumeBusyError(
        name,
        `${handles} client${handles === 1 ? " has" : "s have"} it open and would see errors past the new end`,
      );
    }
    const oldSizeBytes = found.record.sizeBytes;
    const info = await this.locksFor(found.id).gate.exclusive(() =>
      this.transactions.change(async (metadata) => {
        const state = await metadata.requireVolume(name);
        if (sizeBytes < state.record.sizeBytes) {
          let lastMapped = -1;
          const firstCut = Math.ceil(sizeBytes / DATA_BLOCK_BYTES);
          await metadata.forEachMapping(state, firstCut, Number.MAX_SAFE_INTEGER, (virtualBlock) => {
            lastMapped = virtualBlock;
          });
          if (lastMapped >= 0) {
            const required = Math.min(state.record.sizeBytes, (lastMapped + 1) * DATA_BLOCK_BYTES);
            throw new ShrinkBelowMappedError(name, sizeBytes, required);
          }
        }
        if (sizeBytes !== state.record.sizeBytes) metadata.unseal(state);
        state.record.sizeBytes = sizeBytes;
        metadata.markDirty(state);
        return describe(metadata, state);
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
    return this.transactions.change(async (metadata) => {
      const current = metadata.dataRefs.blockCount;
      if (dataBlockCount < current) {
        throw new InvalidSizeError(
          `a pool cannot shrink: it has ${formatByteCount(current * DATA_BLOCK_BYTES)}; choose a size of at least that`,
        );
      }
      await this.dataFile.truncate(dataBlockCount * DATA_BLOCK_BYTES);
      metadata.growData(dataBlockCount);
      return this.statusOf(metadata);
    });
  }

  async volume(name: string): Promise<Volume> {
    const state = await this.transactions.read((metadata) => metadata.requireVolume(name));
    return new Volume(this.transactions, state, this.locksFor(state.id));
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    return this.transactions.read(async (metadata) => {
      const states = await metadata.listVolumes();
      const infos: VolumeInfo[] = [];
      for (const state of states) if (!state.record.hidden) infos.push(await describe(metadata, state));
      return infos;
    });
  }

  async usage(name: string): Promise<VolumeUsage> {
    return this.transactions.read(async (metadata) => {
      const state = await metadata.requireVolume(name);
      let exclusiveBlocks = 0;
      let sharedBlocks = 0;
      await metadata.forEachMapping(state, 0, Number.MAX_SAFE_INTEGER, (_virtualBlock, _dataBlock, sharedNow) => {
        if (sharedNow) sharedBlocks++;
        else exclusiveBlocks++;
      });
      const mappedBlocks = exclusiveBlocks + sharedBlocks;
      // Without both space maps, which blocks are shared is not known: say so rather than guess.
      if (metadata.degraded) return { mappedBlocks, exclusiveBlocks: null, sharedBlocks: null };
      return { mappedBlocks, exclusiveBlocks, sharedBlocks };
    });
  }

  /**
   * The byte ranges in which volume `to` differs from volume `from`, in order, adjacent
   * blocks of one kind merged. Subtrees the two mapping trees share are skipped unread, so
   * the cost grows with what changed, not with the volumes' size.
   */
  async *diff(from: string, to: string, options: DiffOptions = {}): AsyncGenerator<DiffRange> {
    yield* this.diffSides(await this.resolveDiff(from, to), options);
  }

  /**
   * The two volumes of a diff, resolved by name now and followed by id from then on, for
   * callers that diff the same pair again and again (`diffSides`). Fails with NO_SUCH_VOLUME.
   */
  resolveDiff(from: string, to: string): Promise<DiffSides> {
    return resolveDiffSides(this.transactions, from, to);
  }

  /**
   * `diff` of volumes resolved earlier. Fails with NO_SUCH_VOLUME if either has been deleted
   * since, even when a new volume has taken its name.
   */
  async *diffSides(sides: DiffSides, options: DiffOptions = {}): AsyncGenerator<DiffRange> {
    for await (const run of diffBlockRuns(this.transactions, sides, options)) {
      const offset = run.firstBlock * DATA_BLOCK_BYTES;
      const end = Math.min(sides.sizeBytes, (run.firstBlock + run.blockCount) * DATA_BLOCK_BYTES);
      yield { kind: run.kind, offset, length: end - offset };
    }
  }

  status(): PoolStatus {
    return this.transactions.inspect((metadata) => this.statusOf(metadata));
  }

  /** status(), with what the data file takes on disk measured too. */
  async measuredStatus(): Promise<PoolStatus> {
    const allocated = (await this.dataFile.allocatedBytes?.()) ?? null;
    return { ...this.status(), dataFileAllocatedBytes: allocated };
  }

  /** Tells `observer` of every commit and copy on write from now on (one observer at a time). */
  observe(observer: PoolObserver): void {
    this.transactions.observer = observer;
  }

  // ---- transactions --------------------------------------------------------------------

  commit(): Promise<void> {
    return this.transactions.commit();
  }

  /** Drops the uncommitted transaction, as a crash would, and releases the pool. */
  close(): Promise<void> {
    return this.transactions.close();
  }

  /** Something a commit would make durable: metadata changes or data written in place. */
  get hasUncommittedWork(): boolean {
    return this.transactions.hasUncommittedWork;
  }

  // ---- for the server ------------------------------------------------------------------

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
    this.transactions.assertWritable(what);
  }

  private statusOf(metadata: PoolMetadata): PoolStatus {
    const damage = metadata.degraded;
    return {
      dataBlockBytes: DATA_BLOCK_BYTES,
      dataBlocksUsed: metadata.dataBlocksUsed,
      dataBlocksTotal: metadata.dataRefs.blockCount,
      metadataBlockBytes: METADATA_BLOCK_BYTES,
      metadataBlocksUsed: metadata.metadataBlocksUsed,
      metadataBlocksTotal: metadata.tm.metadataRefs.blockCount,
      transactionId: metadata.transactionId,
      volumeCount: metadata.listedVolumeCount,
      hiddenVolumeCount: metadata.volumeCount - metadata.listedVolumeCount,
      dataFileAllocatedBytes: null,
      uuid: metadata.uuid,
      dataPath: this.dataPath,
      metaPath: this.metaPath,
      degraded: damage && { blockIndex: damage.blockIndex, message: damage.message },
    };
  }

  /**
   * Advances the data file's record of the newest commit, so an older copy of this metadata
   * file is refused from now on. It follows the durable superblock: a crash between the two
   * leaves the record one commit behind, which only narrows what it refuses.
   */
  private async recordCommitInDataFile(committed: PoolMetadata): Promise<void> {
    if (this.identity === null || this.identityRecord === null) return;
    // A commit with no metadata change (a flush after writes in place) keeps its transaction id.
    if (this.identityRecord.commit === committed.transactionId) return;
    const record = { ...this.identityRecord, commit: committed.transactionId };
    try {
      await this.identity.write(record);
      this.identityRecord = record;
    } catch {
      // The commit is durable already; a record that could not advance only means an older
      // copy made before now would still open, as it did before data files carried one.
    }
  }

  /** One set per volume id, so every handle on a volume serializes with every other. */
  private locksFor(volumeId: number): VolumeLocks {
    let locks = this.volumeLocks.get(volumeId);
    if (!locks) {
      locks = { gate: new SharedGate(), blocks: new KeyedLocks(), unsealing: null };
      this.volumeLocks.set(volumeId, locks);
    }
    return locks;
  }

  private async verifyDataFileSize(): Promise<void> {
    const needed = this.transactions.inspect((metadata) => metadata.dataRefs.blockCount) * DATA_BLOCK_BYTES;
    const actual = await this.dataFile.byteLength();
    if (actual < needed) throw new DataFileTruncatedError(this.dataPath, actual, needed);
  }
}

async function describe(metadata: PoolMetadata, state: VolumeState): Promise<VolumeInfo> {
  const origin = state.record.originId === null ? null : await metadata.volumeById(state.record.originId);
  return {
    id: state.id,
    name: state.record.name,
    uuid: state.record.uuid,
    sizeBytes: state.record.sizeBytes,
    mappedBlocks: state.record.mappedBlocks,
    originName: origin?.record.name ?? null,
    readOnly: state.record.readOnly,
    createdAt: state.record.createdAt,
    snapshotAt: state.record.snapshotAt,
  };
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
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
    throw new InvalidSizeError(`volume size ${sizeBytes} must be a positive number of bytes`);
  if (sizeBytes % SECTOR_BYTES !== 0) {
    throw new InvalidSizeError(`volume size ${formatByteCount(sizeBytes)} is not a multiple of ${SECTOR_BYTES} bytes`);
  }
  if (sizeBytes > VOLUME_BYTES_MAX) {
    throw new InvalidSizeError(`volume size ${formatByteCount(sizeBytes)} exceeds the limit of ${formatByteCount(VOLUME_BYTES_MAX)}`);
  }
}
