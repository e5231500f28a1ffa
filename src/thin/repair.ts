// `thinp repair`: salvages what a damaged metadata file still holds and writes it into a new,
// consistent metadata file for the same data file. The old file is only read. Every block
// read is verified as the engine verifies it, so a mapping is salvaged only from a leaf the
// engine itself would trust; what cannot be read is reported, block by block, never guessed.
// See formats/metadata.md, "Repair".

import { constants } from "node:fs";
import { copyFile, link, realpath, rename, unlink } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import {
  CorruptBlockError,
  FileExistsError,
  FileMissingError,
  InvalidNameError,
  IoError,
  LimitExceededError,
  WrongDataFileError,
} from "../errors.js";
import { assert } from "../io/assert.js";
import { at } from "../io/checked-index.js";
import { alignUp, divCeil } from "../io/integers.js";
import { NodeStorageFile } from "../io/node-storage-file.js";
import type { StorageFile } from "../io/storage-file.js";
import type { RefcountTable } from "../pdata/refcount-table.js";
import { loadSpaceMap, type SpaceMapRoot } from "../pdata/space-map-store.js";
import { chooseSuperblock, type ChosenSuperblock } from "../pdata/superblock-choice.js";
import { checkMetadataFile } from "./check.js";
import { DataFileIdentityStore } from "./data-file-identity.js";
import { openLockedDataFile, openLockedMetadataFile } from "./pool-files.js";
import { syncPath } from "../io/sync-path.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX, RENAME_ATTEMPTS_MAX, SECTOR_BYTES } from "./limits.js";
import { MAPPING_VALUE_BYTES, decodeMapping } from "./mapping-value.js";
import { NAME_INDEX_VALUE_BYTES, validateVolumeName } from "./names.js";
import { DamagedMetadata } from "./repair/damaged-metadata.js";
import { RebuiltPool } from "./repair/rebuilt-pool.js";
import { REPORT_ITEMS_MAX, type LostVolumes, type RepairReport, type SpaceMapOutcome, type VolumeOutcome } from "./repair/repair-report.js";
import { KEY_END, salvageTree, type TreeDamage } from "./repair/salvage-tree.js";
import { SUPERBLOCK_SLOTS, decodeSuperblock, type Superblock } from "./superblock.js";
import { VOLUME_RECORD_BYTES, decodeVolumeRecord, legacyVolumeUuid, type VolumeRecord } from "./volume-record.js";
import { pathExists } from "../io/path-exists.js";

export type { RepairReport, VolumeOutcome, LostVolumes, SpaceMapOutcome } from "./repair/repair-report.js";
export { KEY_END, type KeyRange } from "./repair/salvage-tree.js";

/** How the repaired file relates to the pool's data file (formats/data-file.md, "Pool identity"). */
export interface RepairPlacement {
  /** The newest commit the data file records; the new file's commits come after it. */
  commitsSeen?: number;
  /** The new file is not in place: it is refused until it is. */
  repairedCopy?: boolean;
}

/**
 * Repairs `source` into `target`, an empty file, and verifies the result with the checker.
 * `targetDataPath` is the data file relative to the target's directory (default: as the
 * source names it, for a target in the same directory).
 */
export async function repairMetadataFile(
  source: StorageFile,
  sourcePath: string,
  target: StorageFile,
  targetPath: string,
  dataFile: StorageFile,
  targetDataPath?: string,
  placement: RepairPlacement = {},
): Promise<RepairReport> {
  const chosen = await chooseSourceSuperblock(source, sourcePath);
  const { superblock } = chosen;
  const damaged = new DamagedMetadata(source, sourcePath, superblock);
  const notes: string[] = [];
  let treesWhole = true;

  const oldMetadataMap = await loadOldSpaceMap(damaged, "metadata", superblock.metadataSpaceMap);
  const oldDataMap = await loadOldSpaceMap(damaged, "data", superblock.dataSpaceMap);

  const { records, volumesLost } = await salvageVolumeTable(damaged);
  if (volumesLost.length > 0) treesWhole = false;

  damaged.countReference(superblock.nameIndexRoot);
  const nameIndexDamage = await salvageTree(damaged, superblock.nameIndexRoot, NAME_INDEX_VALUE_BYTES, () => undefined);
  for (const lost of [...nameIndexDamage.lostSubtrees, ...nameIndexDamage.refusedEntries]) {
    treesWhole = false;
    notes.push(
      `the name index is damaged at metadata block ${lost.blockIndex} (${lost.reason}); it is rebuilt from the volume records, so nothing is lost`,
    );
  }
  if ("unreadable" in chosen.otherSlot) {
    notes.push(`superblock copy ${chosen.otherSlot.slot} is unreadable (${chosen.otherSlot.unreadable}); the new file has both copies`);
  }

  const maxId = records.reduce((max, { id }) => Math.max(max, id), 0);
  const rebuilt = await RebuiltPool.format(target, dataFile, superblock.dataSpaceMap.blockCount, targetDataPath ?? superblock.dataPath, {
    uuid: superblock.uuid,
    createdAt: superblock.createdAt,
    snapshotTime: superblock.snapshotTime,
    // Ids of lost and deleted volumes stay used: a snapshot may still name one as its origin.
    nextVolumeId: Math.max(superblock.nextVolumeId, maxId + 1),
    // Past every commit the data file has seen, so the file it replaces reads as older.
    transactionId: Math.max(superblock.transactionId, placement.commitsSeen ?? 0),
    repairedCopy: placement.repairedCopy ?? false,
  });
  const volumes: VolumeOutcome[] = [];
  for (const { id, record } of records) {
    const outcome = await salvageVolume(damaged, rebuilt, id, record, superblock.snapshotTime);
    if (outcome.lostSubtrees.length > 0 || outcome.refusedMappingCount > 0) treesWhole = false;
    volumes.push(outcome);
  }
  await rebuilt.commit();

  const verified = await checkMetadataFile(target, targetPath);
  assert(verified.clean, `repair wrote metadata that does not check clean: ${verified.problems.map((p) => p.message).join("; ")}`);

  const whyNotCompared =
    oldMetadataMap.failure ??
    oldDataMap.failure ??
    (treesWhole ? undefined : "some trees could not be read whole, so their references could not all be counted");
  const compared = whyNotCompared === undefined;
  const freedWithLostMappings = compared ? 0 : oldDataMap.table === null ? null : countFreed(oldDataMap.table, rebuilt);
  return {
    source: {
      path: sourcePath,
      transactionId: superblock.transactionId,
      superblockSlot: chosen.slot,
      otherSuperblock: chosen.otherSlot,
    },
    output: {
      path: targetPath,
      transactionId: rebuilt.transactionId,
      volumes: verified.verified.volumes,
      mappings: verified.verified.mappings,
      dataBlocksUsed: rebuilt.dataBlocksUsed,
      metadataBlocksUsed: rebuilt.metadataBlocksUsed,
      clean: verified.clean,
    },
    volumes,
    volumesLost,
    dataSpaceMap: {
      ...compareSpaceMap(oldDataMap.table, compared, whyNotCompared, rebuilt.dataBlocksUsed, (block) =>
        at(damaged.dataReferences, block, "the old map and the counts both cover the superblock's data blocks"),
      ),
      freedWithLostMappings,
    },
    metadataSpaceMap: {
      ...compareSpaceMap(oldMetadataMap.table, compared, whyNotCompared, rebuilt.metadataBlocksUsed, (block) =>
        at(damaged.references, block, "the old map and the counts both cover the superblock's metadata blocks"),
      ),
      freedWithLostMappings: null,
    },
    notes,
    lostData: volumesLost.length > 0 || volumes.some((volume) => volume.mappingsLost > 0 || volume.lostSubtrees.length > 0),
  };
}

/** The newest valid superblock, as opening the pool chooses it (formats/metadata.md, "Repair"). */
function chooseSourceSuperblock(source: StorageFile, path: string): Promise<ChosenSuperblock<Superblock>> {
  return chooseSuperblock(source, path, SUPERBLOCK_SLOTS, (block, slot) => decodeSuperblock(block, slot, path));
}

async function loadOldSpaceMap(
  damaged: DamagedMetadata,
  which: "data" | "metadata",
  root: SpaceMapRoot,
): Promise<{ table: RefcountTable | null; failure?: string }> {
  try {
    const { table, layout } = await loadSpaceMap(root, damaged.readBlock);
    for (const blockIndex of layout.allBlocks()) damaged.countReference(blockIndex);
    return { table };
  } catch (error) {
    if (!(error instanceof CorruptBlockError)) throw error;
    return { table: null, failure: `the old ${which} space map is unreadable: ${error.message}` };
  }
}

async function salvageVolumeTable(
  damaged: DamagedMetadata,
): Promise<{ records: { id: number; record: VolumeRecord }[]; volumesLost: LostVolumes[] }> {
  const records: { id: number; record: VolumeRecord }[] = [];
  const volumesLost: LostVolumes[] = [];
  const root = damaged.superblock.volumeTableRoot;
  damaged.countReference(root);
  const damage = await salvageTree(damaged, root, VOLUME_RECORD_BYTES, (id, value, leafIndex) => {
    if (id === 0) {
      volumesLost.push({
        blockIndex: leafIndex,
        reason: "a record under volume id 0, which is never used",
        volumeIds: { first: 0, end: 1 },
      });
      return;
    }
    try {
      const record = decodeVolumeRecord(value, leafIndex, legacyVolumeUuid(damaged.superblock.uuid, id));
      damaged.countReference(record.mappingRoot);
      records.push({ id, record });
    } catch (error) {
      if (!(error instanceof CorruptBlockError)) throw error;
      volumesLost.push({ blockIndex: leafIndex, reason: error.reason, volumeIds: { first: id, end: id + 1 } });
    }
  });
  for (const lost of damage.lostSubtrees) volumesLost.push({ blockIndex: lost.blockIndex, reason: lost.reason, volumeIds: lost.keys });
  for (const refused of damage.refusedEntries) {
    const volumeIds = refused.key === null ? null : { first: refused.key, end: refused.key + 1 };
    volumesLost.push({ blockIndex: refused.blockIndex, reason: refused.reason, volumeIds });
  }
  return { records, volumesLost };
}

async function salvageVolume(
  damaged: DamagedMetadata,
  rebuilt: RebuiltPool,
  id: number,
  record: VolumeRecord,
  poolSnapshotTime: number,
): Promise<VolumeOutcome> {
  const fixes: string[] = [];
  const name = await usableName(rebuilt, id, record.name);
  if (name !== record.name) fixes.push(`renamed from '${record.name}': that name is invalid or another salvaged volume has it`);
  let sizeBytes = record.sizeBytes;
  if (sizeBytes % SECTOR_BYTES !== 0) {
    sizeBytes = alignUp(sizeBytes, SECTOR_BYTES);
    fixes.push(`size ${record.sizeBytes} rounded up to ${sizeBytes}, a whole number of sectors`);
  }
  let snapshotTime = record.snapshotTime;
  if (snapshotTime > poolSnapshotTime) {
    // A volume's snapshot time is the pool's at its last snapshot: it cannot be later.
    snapshotTime = poolSnapshotTime;
    fixes.push(`snapshot time ${record.snapshotTime} lowered to the pool's ${poolSnapshotTime}`);
  }
  const volume = await rebuilt.restoreVolume(id, {
    name,
    sizeBytes,
    originId: record.originId,
    readOnly: record.readOnly,
    createdAt: record.createdAt,
    snapshotAt: record.snapshotAt,
    snapshotTime,
    // Its identity is kept, but repair cannot vouch that the contents are the generation that
    // was handed out: an incremental stream onto it is refused until it is sent anew. A
    // receive cut short is shown under its recovered name, to be deleted or kept.
    uuid: record.uuid,
    generation: record.sealed ? record.generation + 1 : record.generation,
    sealed: false,
    hidden: false,
    receiving: null,
  });

  const virtualBlockCount = divCeil(sizeBytes, DATA_BLOCK_BYTES);
  const refused: VolumeOutcome["refusedMappings"] = [];
  let refusedCount = 0;
  const refuse = (virtualBlock: number | null, blockIndex: number, reason: string) => {
    refusedCount++;
    if (refused.length < REPORT_ITEMS_MAX) refused.push({ virtualBlock, blockIndex, reason });
  };
  let kept = 0;
  const damage: TreeDamage = await salvageTree(
    damaged,
    record.mappingRoot,
    MAPPING_VALUE_BYTES,
    async (virtualBlock, value, leafIndex, firstVisit) => {
      const { dataBlock } = decodeMapping(value);
      if (firstVisit) damaged.countDataReference(dataBlock);
      if (dataBlock >= rebuilt.dataBlockCount) {
        refuse(virtualBlock, leafIndex, `maps to data block ${dataBlock}, beyond the pool's ${rebuilt.dataBlockCount}`);
        return;
      }
      if (virtualBlock >= virtualBlockCount) {
        refuse(virtualBlock, leafIndex, `beyond the volume's ${virtualBlockCount} blocks`);
        return;
      }
      await rebuilt.addMapping(volume, virtualBlock, dataBlock);
      kept++;
    },
  );
  for (const entry of damage.refusedEntries) refuse(entry.key, entry.blockIndex, entry.reason);

  const lostSubtrees = damage.lostSubtrees.map(({ blockIndex, reason, keys }) => ({
    blockIndex,
    reason,
    virtualBlocks: keys === null ? null : { first: keys.first, end: Math.min(keys.end, virtualBlockCount, KEY_END) },
  }));
  // Where subtrees were unreadable, the record's count is the only word on how much they held.
  const lostInSubtrees = lostSubtrees.length > 0 ? Math.max(0, record.mappedBlocks - kept - refusedCount) : 0;
  if (lostSubtrees.length === 0 && record.mappedBlocks !== kept + refusedCount) {
    fixes.push(`the record counted ${record.mappedBlocks} mappings but the tree holds ${kept + refusedCount}`);
  }
  return {
    id,
    name,
    ...(name !== record.name ? { renamedFrom: record.name } : {}),
    sizeBytes,
    mappingsRecorded: record.mappedBlocks,
    mappingsKept: kept,
    mappingsLost: refusedCount + lostInSubtrees,
    lostSubtrees,
    refusedMappings: refused,
    refusedMappingCount: refusedCount,
    fixes,
  };
}

/** The volume's own name if the new pool can take it, else `recovered-<id>`. */
async function usableName(rebuilt: RebuiltPool, id: number, name: string): Promise<string> {
  if (isValidName(name) && !(await rebuilt.hasName(name))) return name;
  for (let attempt = 0; attempt < RENAME_ATTEMPTS_MAX; attempt++) {
    const candidate = attempt === 0 ? `recovered-${id}` : `recovered-${id}-${attempt}`;
    if (!(await rebuilt.hasName(candidate))) return candidate;
  }
  throw new LimitExceededError(`no free name for salvaged volume ${id} after ${RENAME_ATTEMPTS_MAX} attempts`);
}

function isValidName(name: string): boolean {
  try {
    validateVolumeName(name);
    return true;
  } catch (error) {
    if (error instanceof InvalidNameError) return false;
    throw error;
  }
}

/** The old map against the references found in the old file, block by block. */
function compareSpaceMap(
  old: RefcountTable | null,
  compared: boolean,
  notComparedBecause: string | undefined,
  blocksUsedAfter: number,
  found: (block: number) => number,
): Omit<SpaceMapOutcome, "freedWithLostMappings"> {
  const outcome: Omit<SpaceMapOutcome, "freedWithLostMappings"> = {
    compared,
    ...(compared ? {} : { notComparedBecause }),
    blocksUsedBefore: old?.used ?? null,
    blocksUsedAfter,
    reclaimed: 0,
    reclaimedBlocks: [],
    corrected: 0,
    correctedBlocks: [],
  };
  if (!compared || old === null) return outcome;
  for (let block = 0; block < old.blockCount; block++) {
    const was = old.get(block);
    const now = found(block);
    if (was === now) continue;
    if (now === 0) {
      outcome.reclaimed++;
      if (outcome.reclaimedBlocks.length < REPORT_ITEMS_MAX) outcome.reclaimedBlocks.push(block);
    } else {
      outcome.corrected++;
      if (outcome.correctedBlocks.length < REPORT_ITEMS_MAX) outcome.correctedBlocks.push({ blockIndex: block, was, now });
    }
  }
  return outcome;
}

/** Data blocks the old map counted that no salvaged mapping references. */
function countFreed(old: RefcountTable, rebuilt: RebuiltPool): number {
  let freed = 0;
  for (let block = 0; block < old.blockCount; block++) {
    if (old.get(block) > 0 && rebuilt.dataReferences(block) === 0) freed++;
  }
  return freed;
}

// ---- files ---------------------------------------------------------------------------------

export interface RepairPoolOptions {
  /** Where to write the new metadata file; default `<meta>.repaired`. Must not exist. */
  outputPath?: string;
  /** Replace the metadata file, keeping the old one as `<meta>.before-repair`. */
  inPlace?: boolean;
}

export interface RepairPoolResult {
  report: RepairReport;
  /** Where the repaired metadata now is: the output file, or the pool's own path in place. */
  outputPath: string;
  backupPath: string | null;
}

/**
 * Repairs the pool at `metaPath`, holding its lock as `thinp check` does. The original is
 * never written: the new file is made beside it, and with `inPlace` renamed over it once
 * durable, the original keeping a second name as the backup.
 */
export async function repairPool(metaPath: string, options: RepairPoolOptions = {}): Promise<RepairPoolResult> {
  assert(!(options.inPlace && options.outputPath !== undefined), "repair: an output path and in-place together");
  metaPath = resolve(metaPath);
  if (!(await pathExists(metaPath))) throw new FileMissingError(metaPath, "metadata file");
  const backupPath = options.inPlace ? `${metaPath}.before-repair` : null;
  if (backupPath !== null && (await pathExists(backupPath))) throw new FileExistsError(backupPath);
  const finalPath = options.inPlace ? metaPath : resolve(options.outputPath ?? `${metaPath}.repaired`);
  const writePath = options.inPlace ? `${metaPath}.repairing` : finalPath;
  if (!(await pathExists(dirname(writePath)))) throw new FileMissingError(dirname(writePath), "directory");
  // Held as a writer holds them, so no process has the pool open while it is rebuilt.
  const source = await openLockedMetadataFile(metaPath, "read-only", "exclusive");
  try {
    const { superblock } = await chooseSourceSuperblock(source, metaPath);
    const dataPath = resolve(dirname(await realpath(metaPath)), superblock.dataPath);
    // A copy not yet in place names the data file absolutely, so it still finds it once
    // moved into place; its first commit there makes the path relative again.
    const targetDataPath = options.inPlace ? relative(dirname(finalPath), dataPath) : dataPath;
    if (Buffer.byteLength(targetDataPath) > DATA_PATH_BYTES_MAX) {
      throw new LimitExceededError(
        `the data file's path from ${dirname(finalPath)} is longer than ${DATA_PATH_BYTES_MAX} bytes; write the repaired file nearer to it`,
      );
    }
    const dataFile = await openLockedDataFile(dataPath, metaPath, "read-only", "exclusive");
    try {
      const identity = new DataFileIdentityStore(dataFile, dataPath);
      const stored = await identity.read(metaPath);
      if (stored !== null && stored.poolUuid !== superblock.uuid) {
        throw new WrongDataFileError(
          metaPath,
          dataPath,
          `the data file belongs to pool ${stored.poolUuid}, and this is pool ${superblock.uuid}; repair the pool's own metadata file`,
        );
      }
      const ownerPath = relative(dirname(dataPath), metaPath);
      const placement = { commitsSeen: stored?.commit ?? superblock.transactionId, repairedCopy: !options.inPlace };
      const report = await writeRepaired(source, metaPath, writePath, finalPath, dataFile, targetDataPath, placement);
      if (backupPath !== null) {
        await replaceKeepingBackup(metaPath, writePath, backupPath);
        // The backup holds older commits than the data file now records, so it is refused.
        await identity.write({ poolUuid: superblock.uuid, commit: report.output.transactionId, metadataPath: ownerPath });
      } else if (stored === null) {
        // The output is refused until it is where the data file says its metadata is.
        await identity.write({ poolUuid: superblock.uuid, commit: superblock.transactionId, metadataPath: ownerPath });
      }
      return { report, outputPath: finalPath, backupPath };
    } finally {
      await dataFile.close();
    }
  } finally {
    await source.close();
  }
}

/** Writes the new file at `writePath`; on any failure removes it, so no half-written file is left. */
async function writeRepaired(
  source: StorageFile,
  metaPath: string,
  writePath: string,
  finalPath: string,
  dataFile: StorageFile,
  targetDataPath: string,
  placement: RepairPlacement,
): Promise<RepairReport> {
  const target = await NodeStorageFile.open(writePath, "create", "repaired metadata file");
  try {
    // The commit inside syncs the new file before it returns.
    const report = await repairMetadataFile(source, metaPath, target, finalPath, dataFile, targetDataPath, placement);
    await target.close();
    return report;
  } catch (error) {
    await target.close().catch(() => undefined);
    await unlink(writePath).catch(() => undefined);
    throw error;
  }
}

/**
 * The original gets its second name first, then the new file is renamed over it: at every
 * moment `metaPath` names a whole metadata file, old or new, and the old one is never lost.
 */
async function replaceKeepingBackup(metaPath: string, newPath: string, backupPath: string): Promise<void> {
  try {
    await link(metaPath, backupPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new FileExistsError(backupPath);
    // A file system without hard links: a copy, made durable, serves as well.
    try {
      await copyFile(metaPath, backupPath, constants.COPYFILE_EXCL);
      await syncPath(backupPath);
    } catch (copyError) {
      throw new IoError(backupPath, copyError);
    }
  }
  try {
    await rename(newPath, metaPath);
    await syncPath(dirname(metaPath));
  } catch (error) {
    throw new IoError(metaPath, error);
  }
}
