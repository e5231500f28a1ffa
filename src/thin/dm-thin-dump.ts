// The pool's mappings in thin-provisioning-tools' XML (what `thin_dump` prints and
// `thin_restore` reads), so a pool can be checked with `thin_check` or moved to Linux
// dm-thin: volumes become thin devices whose dev_id is the volume id, mapping the same
// data blocks of the same data file (64 KiB = 128 sectors per block).

import { LimitExceededError } from "../errors.js";
import { DATA_BLOCK_BYTES, DM_THIN_DEV_ID_MAX, DUMP_MAPPINGS_PER_STEP, SECTOR_BYTES } from "./limits.js";
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

/** Yields the XML a line at a time; `onDevice` hears which volume each dev_id is. */
export async function* dmThinXml(pool: Pool, onDevice: (device: DumpedDevice) => void = () => undefined): AsyncGenerator<string> {
  const status = pool.status();
  const snapshotTime = pool.transactions.inspect((metadata) => metadata.snapshotTime);
  const volumes = await pool.listVolumes();
  for (const volume of volumes) {
    if (volume.id > DM_THIN_DEV_ID_MAX) {
      throw new LimitExceededError(`volume '${volume.name}' has id ${volume.id}, beyond dm-thin's 24-bit device ids`);
    }
  }
  yield (
    `<superblock uuid="" time="${snapshotTime}" transaction="${status.transactionId}" flags="0" version="2" ` +
    `data_block_size="${DATA_BLOCK_BYTES / SECTOR_BYTES}" nr_data_blocks="${status.dataBlocksTotal}">\n`
  );
  for (const volume of volumes) {
    onDevice({ devId: volume.id, name: volume.name, sizeBytes: volume.sizeBytes });
    const times = pool.transactions.inspect((metadata) => metadata.stateById(volume.id)?.record.snapshotTime ?? 0);
    yield `  <device dev_id="${volume.id}" mapped_blocks="${volume.mappedBlocks}" transaction="0" creation_time="${times}" snap_time="${times}">\n`;
    let run: Run | null = null;
    for (let from = 0; ;) {
      const batch = await pool.transactions.read(async (metadata) => {
        const state = metadata.stateById(volume.id);
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
