// The pool's metadata as one transaction at a time: the volume table, the name index, every
// volume's mapping tree, and both space maps. Callers serialize access (Pool's metadata
// mutex); nothing here is safe to interleave.

import {
  CorruptBlockError,
  LimitExceededError,
  NoSuchVolumeError,
  PoolDegradedError,
  VolumeExistsError,
  type SpaceMapDamage,
} from "../errors.js";
import { assert } from "../io/assert.js";
import { readU64, writeU64 } from "../io/integers.js";
import type { StorageFile } from "../io/storage-file.js";
import { METADATA_BLOCK_BYTES } from "../pdata/block-format.js";
import { verifiedBlockReader } from "../pdata/block-reader.js";
import { BTree, type RangeVisit } from "../pdata/btree/btree.js";
import { KEY_END } from "../pdata/btree/walker.js";
import { diffTrees, type TreeDiffCounts } from "../pdata/btree/tree-diff.js";
import { plainValues, type ValueType } from "../pdata/btree/value-type.js";
import { RefcountTable } from "../pdata/refcount-table.js";
import { BITMAP_ENTRIES } from "../pdata/space-map-format.js";
import {
  SpaceMapLayout,
  loadSpaceMap,
  persistDataSpaceMap,
  persistMetadataSpaceMap,
  type BlockReader,
  type SpaceMapRoot,
} from "../pdata/space-map-store.js";
import { INITIAL_METADATA_BLOCKS } from "../pdata/limits.js";
import { chooseSuperblock } from "../pdata/superblock-choice.js";
import { TransactionManager } from "../pdata/transaction-manager.js";
import { DATA_PATH_BYTES_MAX, NAME_PROBES_MAX, SNAPSHOT_TIME_MAX, VOLUMES_MAX } from "./limits.js";
import { MAPPING_VALUE_BYTES, decodeMapping, encodeMapping } from "./mapping-value.js";
import { NAME_INDEX_VALUE_BYTES, nameHash } from "./names.js";
import { SUPERBLOCK_SLOTS, decodeSuperblock, encodeSuperblock, newPoolUuid, type Superblock } from "./superblock.js";
import { randomUUID } from "node:crypto";
import { VOLUME_RECORD_BYTES, decodeVolumeRecord, encodeVolumeRecord, legacyVolumeUuid, type VolumeRecord } from "./volume-record.js";

// Its home is pdata/limits.ts; the name stays here for the modules that import it from here.
export { INITIAL_METADATA_BLOCKS };

export interface VolumeState {
  id: number;
  record: VolumeRecord;
  /** The record changed since the volume table last saw it. */
  dirty: boolean;
}

/**
 * What a pool rebuilt by repair (thin/repair.ts) keeps of the pool it replaces: its
 * identity, its volume ids (snapshots name their origin by id, and an id must never be
 * reused), and its snapshot time (mapping times are compared against it).
 */
export interface PoolLineage {
  uuid: string;
  createdAt: number;
  snapshotTime: number;
  nextVolumeId: number;
  /** The new file's commits number on from here, past every commit the data file has seen. */
  transactionId: number;
  repairedCopy: boolean;
}

/** One mapping a range walk meets: whether another volume shares its data block now, and whether a write would copy it first. */
export type MappingVisit = (virtualBlock: number, dataBlock: number, sharedNow: boolean, copyOnWrite: boolean) => void;

export interface MappingLookup {
  dataBlock: number;
  /** Another volume can see this data block: writing it needs a copy first. */
  shared: boolean;
}

export class PoolMetadata {
  private readonly mappings: BTree;
  private readonly volumeTable: BTree;
  private readonly nameIndex: BTree;
  private readonly states = new Map<number, VolumeState>();
  private changed = false;
  private retired = false;

  private constructor(
    readonly tm: TransactionManager,
    readonly dataRefs: RefcountTable,
    private readonly dataLayout: SpaceMapLayout,
    private readonly metadataLayout: SpaceMapLayout,
    private superblock: Superblock,
    /** Space maps that did not load: the pool can be read, never changed (see `open`). */
    private readonly damage: readonly SpaceMapDamage[] = [],
  ) {
    const dataRefs_ = dataRefs;
    const mappingValues: ValueType = {
      valueBytes: MAPPING_VALUE_BYTES,
      increment: (value) => void dataRefs_.inc(decodeMapping(value).dataBlock),
      decrement: (value) => void dataRefs_.dec(decodeMapping(value).dataBlock),
    };
    this.mappings = new BTree(tm, mappingValues);
    const recordValues: ValueType = {
      valueBytes: VOLUME_RECORD_BYTES,
      increment: (value) => tm.incRef(decodeVolumeRecord(value, 0).mappingRoot),
      decrement: (value) => this.mappings.deleteTree(decodeVolumeRecord(value, 0).mappingRoot),
    };
    this.volumeTable = new BTree(tm, recordValues);
    this.nameIndex = new BTree(tm, plainValues(NAME_INDEX_VALUE_BYTES));
  }

  static async format(
    metaFile: StorageFile,
    dataBlockCount: number,
    dataPath: string,
    dataFile: StorageFile,
    cacheBlocks?: number,
    lineage?: PoolLineage,
  ): Promise<PoolMetadata> {
    const metadataRefs = new RefcountTable(INITIAL_METADATA_BLOCKS, BITMAP_ENTRIES);
    for (const slot of SUPERBLOCK_SLOTS) metadataRefs.allocateAt(slot);
    const tm = new TransactionManager(metaFile, metadataRefs, cacheBlocks);
    const dataRefs = new RefcountTable(dataBlockCount, BITMAP_ENTRIES);
    dataRefs.markAllDirty();
    const superblock: Superblock = {
      uuid: lineage?.uuid ?? newPoolUuid(),
      repairedCopy: lineage?.repairedCopy ?? false,
      transactionId: lineage?.transactionId ?? 0,
      snapshotTime: lineage?.snapshotTime ?? 0,
      volumeTableRoot: 0,
      nameIndexRoot: 0,
      nextVolumeId: lineage?.nextVolumeId ?? 1,
      createdAt: lineage?.createdAt ?? Date.now(),
      dataSpaceMap: { blockCount: dataBlockCount, indexHead: 0, overflowHead: 0, overflowCount: 0 },
      metadataSpaceMap: { blockCount: INITIAL_METADATA_BLOCKS, indexHead: 0, overflowHead: 0, overflowCount: 0 },
      dataPath,
    };
    const metadata = new PoolMetadata(tm, dataRefs, new SpaceMapLayout(), new SpaceMapLayout(), superblock);
    superblock.volumeTableRoot = metadata.volumeTable.createEmpty();
    superblock.nameIndexRoot = metadata.nameIndex.createEmpty();
    metadata.changed = true;
    await metadata.commit(dataFile);
    // Both slots hold the first commit, so a fresh pool never shows an unwritten slot.
    await metaFile.write(
      encodeSuperblock(metadata.superblock, 1 - (metadata.superblock.transactionId % 2)),
      (1 - (metadata.superblock.transactionId % 2)) * METADATA_BLOCK_BYTES,
    );
    await metaFile.sync();
    return metadata;
  }

  static async open(metaFile: StorageFile, metaPath: string, cacheBlocks?: number): Promise<PoolMetadata> {
    const { superblock } = await chooseSuperblock(metaFile, metaPath, SUPERBLOCK_SLOTS, (block, slot) =>
      decodeSuperblock(block, slot, metaPath),
    );
    // Before the space maps load, the superblock is the only word on the file's size.
    const readRaw = verifiedBlockReader(metaFile, superblock.metadataSpaceMap.blockCount, metaPath);
    // A damaged space map does not stop the pool opening: reads need only the trees, whose
    // blocks verify on their own. Its counts are unknown, so nothing may change until repair.
    const damage: SpaceMapDamage[] = [];
    const metadataSpaceMap = await loadSpaceMapOrNote("metadata", superblock.metadataSpaceMap, readRaw, metaPath, damage);
    const dataSpaceMap = await loadSpaceMapOrNote("data", superblock.dataSpaceMap, readRaw, metaPath, damage);
    const tm = new TransactionManager(metaFile, metadataSpaceMap.table, cacheBlocks);
    const metadata = new PoolMetadata(tm, dataSpaceMap.table, dataSpaceMap.layout, metadataSpaceMap.layout, superblock, damage);
    await metadata.loadVolumes();
    return metadata;
  }

  /** Every volume's record is held in memory (at most VOLUMES_MAX of them), so handles resolve at once. */
  private async loadVolumes(): Promise<void> {
    await this.volumeTable.forEachInRange(this.superblock.volumeTableRoot, 0, KEY_END, (id, value, _shared, leafIndex) => {
      this.states.set(id, { id, record: decodeVolumeRecord(value, leafIndex, legacyVolumeUuid(this.superblock.uuid, id)), dirty: false });
    });
  }

  get uuid(): string {
    return this.superblock.uuid;
  }

  /** Written by `thinp repair --output` and not yet opened in place (formats/data-file.md). */
  get repairedCopy(): boolean {
    return this.superblock.repairedCopy;
  }

  /**
   * The repaired copy is now the pool's metadata file: the next commit clears its flag and
   * names the data file, until then absolute, relative to where the file now is.
   */
  markInPlace(dataPath: string): void {
    if (!this.superblock.repairedCopy) return;
    assert(Buffer.byteLength(dataPath) <= DATA_PATH_BYTES_MAX, `data path of ${Buffer.byteLength(dataPath)} bytes`);
    this.superblock = { ...this.superblock, repairedCopy: false, dataPath };
    this.changed = true;
  }

  get transactionId(): number {
    return this.superblock.transactionId;
  }
  get dataPath(): string {
    return this.superblock.dataPath;
  }
  get snapshotTime(): number {
    return this.superblock.snapshotTime;
  }
  get hasUncommittedChanges(): boolean {
    return this.changed;
  }

  /** The first space map that did not load, or null when both did: the pool is then read-only. */
  get degraded(): SpaceMapDamage | null {
    return this.damage[0] ?? null;
  }

  /** Throws PoolDegradedError before any change to a pool whose counts are unknown. */
  assertNotDegraded(what: string): void {
    const damage = this.degraded;
    if (damage) throw new PoolDegradedError(what, damage);
  }

  /** Data blocks in use, or null when the data space map could not be read. */
  get dataBlocksUsed(): number | null {
    return this.damage.some((entry) => entry.spaceMap === "data") ? null : this.dataRefs.used;
  }

  /** Metadata blocks in use, or null when the metadata space map could not be read. */
  get metadataBlocksUsed(): number | null {
    return this.damage.some((entry) => entry.spaceMap === "metadata") ? null : this.tm.metadataRefs.used;
  }
  get committedSuperblock(): Readonly<Superblock> {
    return this.superblock;
  }

  // ---- volumes -------------------------------------------------------------------------

  async findVolume(name: string): Promise<VolumeState | null> {
    const found = await this.probeName(name);
    return found ? this.volumeById(found.volumeId) : null;
  }

  /** The volume named `name`, or NO_SUCH_VOLUME. */
  async requireVolume(name: string): Promise<VolumeState> {
    const state = await this.findVolume(name);
    if (!state) throw new NoSuchVolumeError(name);
    return state;
  }

  async volumeById(id: number): Promise<VolumeState | null> {
    return this.states.get(id) ?? null;
  }

  /** The live state of a volume, or undefined once it is deleted (or its creation rolled back). */
  stateById(id: number): VolumeState | undefined {
    return this.states.get(id);
  }

  /** Every volume, hidden ones too (a receive in progress, a hold), by id. */
  async listVolumes(): Promise<VolumeState[]> {
    return [...this.states.values()].sort((a, b) => a.id - b.id);
  }

  /** The listed volume with this identity, or null: what a receiver looks for as an incremental stream's base. */
  volumeByUuid(uuid: string): VolumeState | null {
    for (const state of this.states.values()) if (!state.record.hidden && state.record.uuid === uuid) return state;
    return null;
  }

  /** The volume's contents are those of its generation until they next change (see unseal). */
  seal(state: VolumeState): void {
    if (state.record.sealed) return;
    state.record.sealed = true;
    this.markDirty(state);
  }

  /** Before the first change to a sealed volume's contents: a new generation. Returns whether it was sealed. */
  unseal(state: VolumeState): boolean {
    if (!state.record.sealed) return false;
    state.record.sealed = false;
    state.record.generation++;
    this.markDirty(state);
    return true;
  }

  async createVolume(name: string, sizeBytes: number, now: number): Promise<VolumeState> {
    await this.checkNewVolume(name);
    const mappingRoot = this.mappings.createEmpty();
    return this.addVolume({
      name,
      sizeBytes,
      mappingRoot,
      mappedBlocks: 0,
      originId: null,
      readOnly: false,
      createdAt: now,
      snapshotAt: null,
      snapshotTime: this.superblock.snapshotTime,
      ...freshIdentity(),
    });
  }

  /** O(1): the snapshot shares the origin's mapping tree; shadowing copies it lazily. */
  async snapshot(origin: VolumeState, name: string, readOnly: boolean, now: number): Promise<VolumeState> {
    if (this.superblock.snapshotTime >= SNAPSHOT_TIME_MAX)
      throw new LimitExceededError(`the pool has taken ${SNAPSHOT_TIME_MAX} snapshots, its limit`);
    await this.checkNewVolume(name);
    this.tm.incRef(origin.record.mappingRoot);
    this.superblock.snapshotTime++;
    origin.record.snapshotTime = this.superblock.snapshotTime;
    this.markDirty(origin);
    return this.addVolume({
      name,
      sizeBytes: origin.record.sizeBytes,
      mappingRoot: origin.record.mappingRoot,
      mappedBlocks: origin.record.mappedBlocks,
      originId: origin.id,
      readOnly,
      createdAt: now,
      snapshotAt: now,
      snapshotTime: this.superblock.snapshotTime,
      ...freshIdentity(),
    });
  }

  /**
   * For repair: a volume again under the id it had in the pool this one was rebuilt from
   * (see PoolLineage), with every field of its record but an empty mapping tree.
   */
  /** For restore, which learns the ids it needs as it goes: ids below `end` are never handed out anew. */
  reserveVolumeIds(end: number): void {
    if (end <= this.superblock.nextVolumeId) return;
    this.superblock.nextVolumeId = end;
    this.changed = true;
  }

  async restoreVolume(id: number, record: Omit<VolumeRecord, "mappingRoot" | "mappedBlocks">): Promise<VolumeState> {
    assert(Number.isSafeInteger(id) && id > 0 && id < this.superblock.nextVolumeId, `restored volume id ${id}`);
    assert(!this.states.has(id), `volume ${id} restored twice`);
    await this.checkNewVolume(record.name);
    return this.addVolume({ ...record, mappingRoot: this.mappings.createEmpty(), mappedBlocks: 0 }, id);
  }

  async deleteVolume(state: VolumeState): Promise<void> {
    const removed = await this.volumeTable.remove(this.superblock.volumeTableRoot, state.id);
    assert(removed.previous !== null, `volume ${state.id} missing from the volume table`);
    this.superblock.volumeTableRoot = removed.root;
    await this.removeName(state.record.name, state.id);
    this.states.delete(state.id);
    this.changed = true;
    await this.mappings.deleteTree(state.record.mappingRoot);
  }

  /** The volume under another name: `name` must be free (checked here, before anything changes). */
  async renameVolume(state: VolumeState, name: string): Promise<void> {
    this.assertLive(state);
    if (await this.probeName(name)) throw new VolumeExistsError(name);
    await this.removeName(state.record.name, state.id);
    state.record.name = name;
    await this.insertName(name, state.id);
    this.markDirty(state);
  }

  markDirty(state: VolumeState): void {
    this.assertLive(state);
    state.dirty = true;
    this.changed = true;
  }

  /**
   * A transaction dropped by a rollback is never used again, and a volume's state belongs to
   * the transaction that loaded it: a caller holding either across a rollback is a bug.
   */
  retire(): void {
    this.retired = true;
  }

  private assertLive(state: VolumeState): void {
    assert(!this.retired, "metadata of a transaction that was rolled back");
    assert(this.states.get(state.id) === state, `state of volume ${state.id} from another transaction`);
  }

  // ---- mappings ------------------------------------------------------------------------

  async lookupMapping(state: VolumeState, virtualBlock: number): Promise<MappingLookup | null> {
    this.assertLive(state);
    const found = await this.mappings.lookup(state.record.mappingRoot, virtualBlock);
    if (!found) return null;
    const { dataBlock, time } = decodeMapping(found.value);
    if (!(dataBlock < this.dataRefs.blockCount)) {
      throw new CorruptBlockError(
        state.record.mappingRoot,
        "pointer-out-of-range",
        `volume '${state.record.name}' maps block ${virtualBlock} to data block ${dataBlock}, beyond the pool`,
      );
    }
    return { dataBlock, shared: this.writeNeedsCopy(state, dataBlock, time, found.sharedPath) };
  }

  /**
   * Counts say who shares a block now. A mapping older than the volume's last snapshot may
   * still be shared in the last commit (the snapshot, or its copy of the block, may have
   * gone in this transaction), and writing it in place would change that committed
   * snapshot, so it is copied too, as dm-thin does.
   */
  private writeNeedsCopy(state: VolumeState, dataBlock: number, time: number, sharedPath: boolean): boolean {
    return sharedPath || this.dataRefs.get(dataBlock) > 1 || time < state.record.snapshotTime;
  }

  /**
   * Calls `visit` for each mapping with from <= virtual block < to, in order, saying whether
   * another volume references its data block now, and whether a write would copy it first.
   */
  async forEachMapping(state: VolumeState, from: number, to: number, visit: MappingVisit): Promise<void> {
    this.assertLive(state);
    await this.mappings.forEachInRange(state.record.mappingRoot, from, to, this.mappingVisit(state, visit));
  }

  /**
   * forEachMapping without awaiting, when the cache holds every tree node it needs: for
   * reads and writes that need no section. Null when a node is not cached; the visits made
   * by then are to be discarded, and the caller looks up again in a section.
   */
  forEachMappingCached(state: VolumeState, from: number, to: number, visit: MappingVisit): boolean | null {
    this.assertLive(state);
    return this.mappings.forEachInRangeCached(state.record.mappingRoot, from, to, this.mappingVisit(state, visit));
  }

  /** Decodes and checks each entry a range walk meets, then hands it to `visit`. */
  private mappingVisit(state: VolumeState, visit: MappingVisit): RangeVisit {
    const dataBlockCount = this.dataRefs.blockCount;
    return (key, value, sharedPath, nodeIndex) => {
      const { dataBlock, time } = decodeMapping(value);
      if (!(dataBlock < dataBlockCount)) {
        throw new CorruptBlockError(
          nodeIndex,
          "pointer-out-of-range",
          `volume '${state.record.name}' maps block ${key} to data block ${dataBlock}, beyond the pool`,
        );
      }
      const sharedNow = sharedPath || this.dataRefs.get(dataBlock) > 1;
      visit(key, dataBlock, sharedNow, this.writeNeedsCopy(state, dataBlock, time, sharedPath));
    };
  }

  /**
   * The virtual blocks in [from, to) that `left` and `right` may map differently, with each
   * side's data block (null: unmapped there). Subtrees the two trees share are passed without
   * being read, so a block both map to one data block is visited only when it lies in a leaf
   * the trees do not share (or with `visitShared`, always).
   */
  async diffMappings(
    left: VolumeState,
    right: VolumeState,
    from: number,
    to: number,
    visit: (virtualBlock: number, leftDataBlock: number | null, rightDataBlock: number | null) => void,
    options: { visitShared?: boolean; visitsMax?: number } = {},
  ): Promise<TreeDiffCounts> {
    this.assertLive(left);
    this.assertLive(right);
    const dataBlockCount = this.dataRefs.blockCount;
    const dataBlockOf = (state: VolumeState, key: number, value: Buffer | null): number | null => {
      if (value === null) return null;
      const { dataBlock } = decodeMapping(value);
      if (!(dataBlock < dataBlockCount)) {
        throw new CorruptBlockError(
          state.record.mappingRoot,
          "pointer-out-of-range",
          `volume '${state.record.name}' maps block ${key} to data block ${dataBlock}, beyond the pool`,
        );
      }
      return dataBlock;
    };
    return diffTrees(
      (block) => this.mappings.readNode(block),
      left.record.mappingRoot,
      right.record.mappingRoot,
      (key, leftValue, rightValue) => visit(key, dataBlockOf(left, key, leftValue), dataBlockOf(right, key, rightValue)),
      { from, to, visitShared: options.visitShared, visitsMax: options.visitsMax },
    );
  }

  /** Up to `limit` mappings from virtual block `from` on, with the snapshot time each was written at. */
  async forEachMappingWithTime(
    state: VolumeState,
    from: number,
    to: number,
    limit: number,
    visit: (virtualBlock: number, dataBlock: number, time: number) => void,
  ): Promise<void> {
    this.assertLive(state);
    let seen = 0;
    await this.mappings.forEachInRange(state.record.mappingRoot, from, to, (key, value) => {
      const { dataBlock, time } = decodeMapping(value);
      visit(key, dataBlock, time);
      return ++seen < limit;
    });
  }

  /**
   * Maps a virtual block to a data block the caller allocated; the old data block loses a
   * reference. `time` is the pool's snapshot time now, except for a restore that keeps the
   * times a mapping had (thin/adopt/restore.ts), which are never later than now.
   */
  async mapBlock(state: VolumeState, virtualBlock: number, dataBlock: number, time = this.superblock.snapshotTime): Promise<void> {
    this.assertLive(state);
    assert(this.dataRefs.get(dataBlock) >= 1, `mapping unallocated data block ${dataBlock}`);
    assert(time <= this.superblock.snapshotTime, `mapping time ${time} after the pool's ${this.superblock.snapshotTime}`);
    const change = await this.mappings.insert(state.record.mappingRoot, virtualBlock, encodeMapping({ dataBlock, time }));
    state.record.mappingRoot = change.root;
    this.dataRefs.confirm(dataBlock);
    if (change.previous) this.dataRefs.dec(decodeMapping(change.previous).dataBlock);
    else state.record.mappedBlocks++;
    this.markDirty(state);
  }

  async unmapBlock(state: VolumeState, virtualBlock: number): Promise<boolean> {
    this.assertLive(state);
    const change = await this.mappings.remove(state.record.mappingRoot, virtualBlock);
    if (!change.previous) return false;
    state.record.mappingRoot = change.root;
    this.dataRefs.dec(decodeMapping(change.previous).dataBlock);
    state.record.mappedBlocks--;
    assert(state.record.mappedBlocks >= 0, `volume ${state.id} mapped count below zero`);
    this.markDirty(state);
    return true;
  }

  /**
   * A data block for a write in flight: it is persisted as free until `mapBlock` maps it,
   * so a commit while the write's data is still being written leaks nothing on a crash.
   */
  allocateDataBlock(): number | null {
    const block = this.dataRefs.allocateProvisional();
    if (block !== null) this.changed = true;
    return block;
  }

  releaseDataBlock(dataBlock: number): void {
    this.dataRefs.dec(dataBlock);
    this.changed = true;
  }

  growData(dataBlockCount: number): void {
    this.dataRefs.grow(dataBlockCount);
    this.changed = true;
  }

  // ---- commit --------------------------------------------------------------------------

  /**
   * Makes the transaction durable: new metadata blocks and the data file first, then the
   * superblock in the slot the previous commit did not use. See formats/metadata.md.
   */
  async commit(dataFile: StorageFile): Promise<void> {
    if (!this.changed) {
      await dataFile.sync();
      return;
    }
    // Counts that were never loaded would overwrite the damaged map with blanks: every change is refused first.
    assert(this.damage.length === 0, "commit of a pool whose space maps did not load");
    // A failure anywhere here leaves the last commit intact on disk; Pool then rolls back.
    for (const state of this.states.values()) {
      if (!state.dirty) continue;
      const change = await this.volumeTable.insert(this.superblock.volumeTableRoot, state.id, encodeVolumeRecord(state.record));
      this.superblock.volumeTableRoot = change.root;
      state.dirty = false;
    }
    const next: Superblock = { ...this.superblock, transactionId: this.superblock.transactionId + 1 };
    // The data space map's pieces are metadata blocks: its changes go first, so the metadata
    // space map, written last, counts them.
    next.dataSpaceMap = { ...persistDataSpaceMap(this.tm, this.dataRefs, this.dataLayout) };
    next.metadataSpaceMap = { ...persistMetadataSpaceMap(this.tm, this.metadataLayout) };
    await this.tm.writeDirtyBlocks();
    await dataFile.sync();
    await this.tm.file.sync();
    const slot = next.transactionId % 2;
    await this.tm.file.write(encodeSuperblock(next, slot), slot * METADATA_BLOCK_BYTES);
    await this.tm.file.sync();
    this.superblock = next;
    this.tm.endTransaction();
    this.changed = false;
  }

  /**
   * Data blocks freed before the commit may be reused after it; Pool calls this once reads
   * that looked up those blocks before they were freed have finished.
   */
  releaseDataFrees(): void {
    this.dataRefs.releasePendingFrees();
  }

  /** Data blocks this transaction freed, still free: once it is durable, their bytes may go back to the file system. */
  freedDataBlocks(): number[] {
    return this.dataRefs.pendingFreeBlocks();
  }

  // ---- the name index ------------------------------------------------------------------

  /** Every reason to refuse a new volume, checked before anything changes. */
  private async checkNewVolume(name: string): Promise<void> {
    if (await this.probeName(name)) throw new VolumeExistsError(name);
    if (this.volumeCount >= VOLUMES_MAX) throw new LimitExceededError(`the pool already holds ${VOLUMES_MAX} volumes, its limit`);
  }

  private async addVolume(record: VolumeRecord, restoredId?: number): Promise<VolumeState> {
    const id = restoredId ?? this.superblock.nextVolumeId++;
    const state: VolumeState = { id, record, dirty: true };
    this.states.set(id, state);
    const inserted = await this.volumeTable.insert(this.superblock.volumeTableRoot, id, encodeVolumeRecord(record));
    this.superblock.volumeTableRoot = inserted.root;
    await this.insertName(record.name, id);
    this.changed = true;
    return state;
  }

  /** Every volume's state is in memory, so this is exact. Hidden volumes count: they take ids and space. */
  get volumeCount(): number {
    return this.states.size;
  }

  /** The volumes a user sees: not a receive in progress or a hold. */
  get listedVolumeCount(): number {
    let count = 0;
    for (const state of this.states.values()) if (!state.record.hidden) count++;
    return count;
  }

  private async probeName(name: string): Promise<{ key: number; volumeId: number } | null> {
    const home = nameHash(name);
    for (let probe = 0; probe < NAME_PROBES_MAX; probe++) {
      const found = await this.nameIndex.lookup(this.superblock.nameIndexRoot, home + probe);
      if (!found) return null;
      const volumeId = readU64(found.value, 0);
      const state = await this.volumeById(volumeId);
      if (!state)
        throw new CorruptBlockError(this.superblock.nameIndexRoot, "bad-record", `name index points at missing volume ${volumeId}`);
      if (state.record.name === name) return { key: home + probe, volumeId };
    }
    return null;
  }

  private async insertName(name: string, volumeId: number): Promise<void> {
    const home = nameHash(name);
    for (let probe = 0; probe < NAME_PROBES_MAX; probe++) {
      if (await this.nameIndex.lookup(this.superblock.nameIndexRoot, home + probe)) continue;
      const value = Buffer.alloc(NAME_INDEX_VALUE_BYTES);
      writeU64(value, 0, volumeId);
      this.superblock.nameIndexRoot = (await this.nameIndex.insert(this.superblock.nameIndexRoot, home + probe, value)).root;
      return;
    }
    throw new LimitExceededError(`no free name-index slot for '${name}'; choose another name`);
  }

  /** Linear-probing delete: entries after the hole are re-inserted so probes still find them. */
  private async removeName(name: string, volumeId: number): Promise<void> {
    const found = await this.probeName(name);
    assert(found !== null && found.volumeId === volumeId, `name '${name}' missing from the name index`);
    this.superblock.nameIndexRoot = (await this.nameIndex.remove(this.superblock.nameIndexRoot, found.key)).root;
    for (let key = found.key + 1; key < found.key + NAME_PROBES_MAX; key++) {
      const next = await this.nameIndex.lookup(this.superblock.nameIndexRoot, key);
      if (!next) break;
      const movedId = readU64(next.value, 0);
      this.superblock.nameIndexRoot = (await this.nameIndex.remove(this.superblock.nameIndexRoot, key)).root;
      const moved = await this.volumeById(movedId);
      assert(moved !== null, `name index entry for missing volume ${movedId}`);
      await this.insertName(moved.record.name, movedId);
    }
  }
}

/**
 * Loads a space map; one that fails verification is noted in `damage` and stands in as a
 * table of the right size with unknown (zero) counts, which a degraded pool never writes.
 */
async function loadSpaceMapOrNote(
  spaceMap: SpaceMapDamage["spaceMap"],
  root: SpaceMapRoot,
  read: BlockReader,
  metaPath: string,
  damage: SpaceMapDamage[],
): Promise<{ table: RefcountTable; layout: SpaceMapLayout }> {
  try {
    return await loadSpaceMap(root, read);
  } catch (error) {
    if (!(error instanceof CorruptBlockError)) throw error;
    damage.push({
      spaceMap,
      blockIndex: error.blockIndex,
      message:
        `metadata block ${error.blockIndex} of ${metaPath} (${spaceMap} space map) is corrupt: ${error.reason}; ` +
        `the pool is read-only until 'thinp repair' rebuilds it`,
    });
    const layout = new SpaceMapLayout();
    layout.root = { ...root };
    return { table: new RefcountTable(root.blockCount, BITMAP_ENTRIES), layout };
  }
}

/** A new volume's identity: its own uuid, first generation, not handed out yet. */
function freshIdentity(): Pick<VolumeRecord, "uuid" | "generation" | "sealed" | "hidden" | "receiving"> {
  return { uuid: randomUUID(), generation: 0, sealed: false, hidden: false, receiving: null };
}
