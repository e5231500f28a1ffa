// The pool's mappings in thin-provisioning-tools' XML (what `thin_dump` prints and
// `thin_restore` reads), so a pool can be checked with `thin_check` or moved to Linux
// dm-thin: volumes become thin devices whose dev_id is the volume id, mapping the same
// data blocks of the same data file (64 KiB = 128 sectors per block).

import { LimitExceededError } from "../errors.js";
import { DATA_BLOCK_BYTES, DM_THIN_DEV_ID_MAX, DUMP_MAPPINGS_PER_STEP, SECTOR_BYTES } from "./limits.js";
import type { VolumeHold } from "./holds.js";
import type { Pool } from "./pool.js";

export { DM_THIN_DEV_ID_MAX };

export interface DumpedDevice {
  devId: number;
  name: string;
  sizeBytes: number;
}

interface Run {
  virtualBlock: number;
  dataBlock: number;
  length: number;
  time: number;
}

/** What a dump prints: the pool's counters and, for each device, where its mappings are read. */
export interface DumpPlan {
  snapshotTime: number;
  transactionId: number;
  dataBlocksTotal: number;
  devices: PlannedDevice[];
}

export interface PlannedDevice extends DumpedDevice {
  mappedBlocks: number;
  time: number;
  /** The volume whose mappings are dumped: the device itself, or a hold on it. */
  readId: number;
}

/** A dump of the pool as it is: every listed volume, read directly (nobody else may be writing). */
export async function restingDumpPlan(pool: Pool): Promise<DumpPlan> {
  const status = pool.status();
  const volumes = await pool.listVolumes();
  return pool.transactions.inspect((metadata) => ({
    snapshotTime: metadata.snapshotTime,
    transactionId: status.transactionId,
    dataBlocksTotal: status.dataBlocksTotal,
    devices: volumes.map((volume) => ({
      devId: volume.id,
      name: volume.name,
      sizeBytes: volume.sizeBytes,
      mappedBlocks: volume.mappedBlocks,
      time: metadata.stateById(volume.id)?.record.snapshotTime ?? 0,
      readId: volume.id,
    })),
  }));
}

/**
 * A dump of a served pool as of the commit that took `holds` (Pool.holdAll): each volume's
 * mappings are read from its hold, which no write changes, under the volume's own id and name.
 */
export async function heldDumpPlan(pool: Pool, holds: readonly VolumeHold[]): Promise<DumpPlan> {
  const status = pool.status();
  return pool.transactions.read(async (metadata) => {
    const devices: PlannedDevice[] = [];
    for (const hold of holds) {
      const held = await metadata.requireVolume(hold.holdName);
      devices.push({
        devId: hold.volumeId,
        name: hold.name,
        sizeBytes: hold.sizeBytes,
        mappedBlocks: hold.mappedBlocks,
        time: hold.snapshotTime,
        readId: held.id,
      });
    }
    return { snapshotTime: metadata.snapshotTime, transactionId: status.transactionId, dataBlocksTotal: status.dataBlocksTotal, devices };
  });
}

/** Yields the XML a line at a time; `onDevice` hears which volume each dev_id is. */
export async function* dmThinXml(
  pool: Pool,
  onDevice: (device: DumpedDevice) => void = () => undefined,
  plan?: DumpPlan,
): AsyncGenerator<string> {
  const { snapshotTime, transactionId, dataBlocksTotal, devices } = plan ?? (await restingDumpPlan(pool));
  for (const device of devices) {
    if (device.devId > DM_THIN_DEV_ID_MAX) {
      throw new LimitExceededError(`volume '${device.name}' has id ${device.devId}, beyond dm-thin's 24-bit device ids`);
    }
  }
  yield (
    `<superblock uuid="" time="${snapshotTime}" transaction="${transactionId}" flags="0" version="2" ` +
    `data_block_size="${DATA_BLOCK_BYTES / SECTOR_BYTES}" nr_data_blocks="${dataBlocksTotal}">\n`
  );
  for (const device of devices) {
    onDevice({ devId: device.devId, name: device.name, sizeBytes: device.sizeBytes });
    const times = device.time;
    yield `  <device dev_id="${device.devId}" mapped_blocks="${device.mappedBlocks}" transaction="0" creation_time="${times}" snap_time="${times}">\n`;
    let run: Run | null = null;
    for (let from = 0; ;) {
      const batch = await pool.transactions.read(async (metadata) => {
        const state = metadata.stateById(device.readId);
        const found: Run[] = [];
        if (!state) return found;
        await metadata.forEachMappingWithTime(
          state,
          from,
          Number.MAX_SAFE_INTEGER,
          DUMP_MAPPINGS_PER_STEP,
          (virtualBlock, dataBlock, time) => void found.push({ virtualBlock, dataBlock, length: 1, time }),
        );
        return found;
      });
      for (const mapping of batch) {
        if (
          run &&
          run.virtualBlock + run.length === mapping.virtualBlock &&
          run.dataBlock + run.length === mapping.dataBlock &&
          run.time === mapping.time
        ) {
          run.length++;
          continue;
        }
        if (run) yield mappingLine(run);
        run = mapping;
      }
      const last = batch.at(-1);
      if (last === undefined || batch.length < DUMP_MAPPINGS_PER_STEP) break;
      from = last.virtualBlock + 1;
    }
    if (run) yield mappingLine(run);
    yield "  </device>\n";
  }
  yield "</superblock>\n";
}

function mappingLine(run: Run): string {
  if (run.length === 1)
    return `    <single_mapping origin_block="${run.virtualBlock}" data_block="${run.dataBlock}" time="${run.time}"/>\n`;
  return `    <range_mapping origin_begin="${run.virtualBlock}" data_begin="${run.dataBlock}" length="${run.length}" time="${run.time}"/>\n`;
}
