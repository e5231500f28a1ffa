// Adopting a dm-thin pool: a thinp metadata file for an existing data file, built from what
// the dm-thin metadata says (thin_dump's XML or the binary metadata, as events). The data
// file's bytes are never written: its block n is already where thinp keeps block n. Every
// mapping is inserted as repair inserts one (thin/repair/rebuilt-pool.ts), so a data block
// mapped by several devices gets that many references and the volumes share it, as the
// devices did; each mapping keeps its dm-thin time and each volume its snapshot time, which
// mean in thinp what they meant there. The result is checked as `thinp check` checks.

import { randomUUID } from "node:crypto";
import { unlink } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import { CorruptBlockError, FileExistsError, InvalidArgumentError, LimitExceededError } from "../../errors.js";
import { assert } from "../../io/assert.js";
import { formatSize } from "../../io/byte-units.js";
import { pathExists } from "../../io/path-exists.js";
import type { StorageFile } from "../../io/storage-file.js";
import { checkMetadataFile, type CheckReport } from "../check.js";
import { DataFileIdentityStore } from "../data-file-identity.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX, DM_THIN_DEV_ID_MAX, SNAPSHOT_TIME_MAX, VOLUME_BYTES_MAX } from "../limits.js";
import { openLockedDataFile, openLockedMetadataFile } from "../pool-files.js";
import type { VolumeState } from "../pool-metadata.js";
import { RebuiltPool } from "../repair/rebuilt-pool.js";
import type { DmThinDevice, DmThinEventSource, DmThinSuperblock } from "./dm-thin-source.js";

/** dm-thin block sizes are in 512-byte sectors: 128 of them are thinp's 64 KiB. */
export const DM_THIN_SECTORS_PER_BLOCK = DATA_BLOCK_BYTES / 512;

/** What to call the volume of a dm-thin device, and how large to make it; null skips the device. */
export type DeviceNaming = (devId: number) => { name: string; sizeBytes: number | null } | null;

export interface RestoredVolume {
  devId: number;
  name: string;
  sizeBytes: number;
  mappedBlocks: number;
  /** The device's own count, where it disagrees with the mappings found. */
  countedBlocks: number | null;
}

export interface RestoreReport {
  volumes: RestoredVolume[];
  /** Devices the naming skipped (Docker's deleted devices). */
  skippedDevices: number[];
  dataBlocks: number;
  dataBlocksUsed: number;
  transactionId: number;
  check: CheckReport;
  /** The data file's thinp identity this restore replaced: it named another pool's metadata. */
  replacedOwner: string | null;
}

/** The default naming: device N becomes volume `devN`, sized to its highest mapped block. */
export const defaultDeviceNaming: DeviceNaming = (devId) => ({ name: `dev${devId}`, sizeBytes: null });

export interface RestoreOptions {
  naming?: DeviceNaming;
  /** Mappings restored so far, for a progress bar. */
  onMappings?: (count: number) => void;
}

/**
 * Builds `metaPath`, which must not exist, over the existing data file `dataPath`, from
 * `source`. Refuses, naming the fact: a block size other than 64 KiB, a mapping past the
 * end of the data file, a virtual block mapped twice in a device, a device mapping past the
 * size it is given. A refused restore leaves no metadata file behind.
 */
export async function restorePool(
  source: DmThinEventSource,
  dataPath: string,
  metaPath: string,
  options: RestoreOptions = {},
): Promise<RestoreReport> {
  const naming = options.naming ?? defaultDeviceNaming;
  metaPath = resolve(metaPath);
  dataPath = resolve(dataPath);
  if (await pathExists(metaPath)) throw new FileExistsError(metaPath);
  const storedDataPath = relative(dirname(metaPath), dataPath);
  if (Buffer.byteLength(storedDataPath) > DATA_PATH_BYTES_MAX) {
    throw new LimitExceededError(`the data file's path from ${dirname(metaPath)} is longer than ${DATA_PATH_BYTES_MAX} bytes`);
  }
  const dataFile = await openLockedDataFile(dataPath, metaPath, "read-write", "exclusive");
  let metaFile: StorageFile | null = null;
  let finished = false;
  try {
    metaFile = await openLockedMetadataFile(metaPath, "create", "exclusive");
    const built = await build(source, metaFile, dataFile, storedDataPath, naming, options);
    await built.pool.commit();
    const check = await checkMetadataFile(metaFile, metaPath);
    // A restore that does not check clean is a bug in thinp, as for repair.
    assert(check.clean, `the restored metadata does not check clean: ${check.problems.map((p) => p.message).join("; ")}`);
    const identity = new DataFileIdentityStore(dataFile, dataPath);
    const stored = await identity.read(metaPath).catch(() => null);
    await identity.write({ poolUuid: built.uuid, commit: built.pool.transactionId, metadataPath: relative(dirname(dataPath), metaPath) });
    finished = true;
    return {
      volumes: built.volumes,
      skippedDevices: built.skipped,
      dataBlocks: built.pool.dataBlockCount,
      dataBlocksUsed: built.pool.dataBlocksUsed,
      transactionId: built.pool.transactionId,
      check,
      replacedOwner: stored === null ? null : resolve(dirname(dataPath), stored.metadataPath),
    };
  } finally {
    await metaFile?.close();
    await dataFile.close();
    // A restore that did not finish leaves no metadata file behind.
    if (!finished && metaFile !== null) await unlink(metaPath).catch(() => undefined);
  }
}

interface Built {
  pool: RebuiltPool;
  uuid: string;
  volumes: RestoredVolume[];
  skipped: number[];
}

async function build(
  source: DmThinEventSource,
  metaFile: StorageFile,
  dataFile: StorageFile,
  storedDataPath: string,
  naming: DeviceNaming,
  options: RestoreOptions,
): Promise<Built> {
  const dataFileBlocks = Math.floor((await dataFile.byteLength()) / DATA_BLOCK_BYTES);
  let pool: RebuiltPool | null = null;
  let superblock: DmThinSuperblock | null = null;
  let uuid = "";
  const volumes: RestoredVolume[] = [];
  const skipped: number[] = [];
  const names = new Set<string>();
  let device: {
    info: DmThinDevice;
    state: VolumeState | null;
    name: string;
    sizeBytes: number | null;
    next: number;
    mapped: number;
  } | null = null;
  let mappingsRestored = 0;
  const refuse = (what: string): never => {
    throw new CorruptBlockError(0, "bad-record", `${source.position}: ${what}`);
  };

  for await (const event of source.events()) {
    if (event.kind === "superblock") {
      superblock = event.superblock;
      if (superblock.dataBlockSectors !== DM_THIN_SECTORS_PER_BLOCK) {
        const bytes = superblock.dataBlockSectors * 512;
        throw new InvalidArgumentError(
          `the pool's data blocks are ${superblock.dataBlockSectors} sectors (${formatSize(bytes)}); thinp pools use ${formatSize(DATA_BLOCK_BYTES)} blocks, ` +
            `so this data file cannot be adopted in place: it would take copying every volume out (through dm-thin, e.g. with dd from its device) into a new pool`,
        );
      }
      if (superblock.time > SNAPSHOT_TIME_MAX) refuse(`the pool's time ${superblock.time} is past ${SNAPSHOT_TIME_MAX}`);
      const dataBlocks = Math.min(superblock.dataBlockCount, dataFileBlocks);
      if (dataBlocks === 0) throw new InvalidArgumentError(`the data file holds no whole ${formatSize(DATA_BLOCK_BYTES)} block`);
      uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(superblock.uuid)
        ? superblock.uuid.toLowerCase()
        : randomUUID();
      pool = await RebuiltPool.format(metaFile, dataFile, dataBlocks, storedDataPath, {
        uuid,
        createdAt: Date.now(),
        snapshotTime: superblock.time,
        nextVolumeId: 1,
        transactionId: superblock.transaction,
        repairedCopy: false,
      });
      continue;
    }
    if (pool === null || superblock === null) return refuse("a device before the superblock");
    if (event.kind === "device") {
      const info = event.device;
      if (info.devId > DM_THIN_DEV_ID_MAX) refuse(`device id ${info.devId} is past dm-thin's ${DM_THIN_DEV_ID_MAX}`);
      if (info.snapTime > superblock.time)
        refuse(`device ${info.devId}'s snapshot time ${info.snapTime} is after the pool's ${superblock.time}`);
      const named = naming(info.devId);
      if (named === null) {
        skipped.push(info.devId);
        device = { info, state: null, name: "", sizeBytes: null, next: 0, mapped: 0 };
        continue;
      }
      if (names.has(named.name)) throw new InvalidArgumentError(`two devices would be named '${named.name}'; give each its own name`);
      names.add(named.name);
      const state = await pool.restoreVolume(info.devId + 1, {
        name: named.name,
        // Set from the mappings at the device's end, unless the naming gives it.
        sizeBytes: named.sizeBytes ?? DATA_BLOCK_BYTES,
        originId: null,
        readOnly: false,
        createdAt: Date.now(),
        snapshotAt: null,
        snapshotTime: info.snapTime,
        uuid: randomUUID(),
        generation: 0,
        sealed: false,
        hidden: false,
        receiving: null,
      });
      device = { info, state, name: named.name, sizeBytes: named.sizeBytes, next: 0, mapped: 0 };
      continue;
    }
    if (device === null) return refuse("a mapping outside any device");
    if (event.kind === "mapping") {
      const { virtualBegin, dataBegin, length, time } = event.mapping;
      if (length === 0) refuse("a mapping of no blocks");
      if (virtualBegin < device.next) {
        refuse(
          `device ${device.info.devId} maps virtual block ${virtualBegin} again, or out of order (blocks below ${device.next} were mapped already): ` +
            `the metadata is damaged; thin_restore would take it and leak blocks, thinp does not`,
        );
      }
      if (dataBegin + length > pool.dataBlockCount) {
        refuse(
          `device ${device.info.devId} maps data block ${dataBegin + length - 1}, past the data file's ${pool.dataBlockCount} blocks ` +
            `(${formatSize(pool.dataBlockCount * DATA_BLOCK_BYTES)}): the data file is the wrong one, or was truncated`,
        );
      }
      if (time > superblock.time) refuse(`device ${device.info.devId} has a mapping of time ${time}, after the pool's ${superblock.time}`);
      const end = virtualBegin + length;
      if (device.sizeBytes !== null && end * DATA_BLOCK_BYTES > device.sizeBytes + DATA_BLOCK_BYTES - 1) {
        throw new InvalidArgumentError(
          `device ${device.info.devId} ('${device.name}') maps block ${end - 1}, past the ${formatSize(device.sizeBytes)} it is given`,
        );
      }
      if (end * DATA_BLOCK_BYTES > VOLUME_BYTES_MAX)
        refuse(`device ${device.info.devId} maps block ${end - 1}, past thinp's largest volume`);
      if (device.state !== null) {
        for (let i = 0; i < length; i++) await pool.addMapping(device.state, virtualBegin + i, dataBegin + i, time);
        mappingsRestored += length;
        options.onMappings?.(mappingsRestored);
      }
      device.next = end;
      device.mapped += length;
      continue;
    }
    // end-device
    if (device.state !== null) {
      const sizeBytes = device.sizeBytes ?? Math.max(DATA_BLOCK_BYTES, device.next * DATA_BLOCK_BYTES);
      pool.setSize(device.state, sizeBytes);
      volumes.push({
        devId: device.info.devId,
        name: device.name,
        sizeBytes,
        mappedBlocks: device.mapped,
        countedBlocks: device.mapped === device.info.mappedBlocks ? null : device.info.mappedBlocks,
      });
    }
    device = null;
  }
  if (pool === null) return refuse("no superblock");
  if (device !== null) return refuse(`device ${device.info.devId} does not end`);
  return { pool, uuid, volumes, skipped };
}
