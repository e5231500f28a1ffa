// The pools of the scale section: one volume whose every block is mapped, built through the
// metadata layer (bulk-mapping.ts) into a file pool with a sparse data file, then closed.
// For measuring, a pool is opened again over counting files, so a commit's metadata blocks
// and fsyncs can be told; its files are deleted when the section is done with them.

import { rm, stat } from "node:fs/promises";
import { NodeStorageFile } from "../../../src/io/node-storage-file.js";
import { DATA_BLOCK_BYTES } from "../../../src/thin/limits.js";
import { Pool } from "../../../src/thin/pool.js";
import { mapEveryBlock } from "./bulk-mapping.js";
import { CountingStorageFile } from "./counting-file.js";
import { formatCount, progress } from "./report.js";
import type { ScratchDir } from "./scratch-dir.js";

export const SCALE_VOLUME = "scale";
/** Room beyond the mapped blocks for the remaps the measurements make (each freed at its commit). */
const SPARE_DATA_BLOCKS = 4096;

export interface ScalePool {
  metaPath: string;
  dataPath: string;
  mappingCount: number;
  buildMs: number;
  metadataBlocksUsed: number;
  metadataBlocksTotal: number;
  dataFileBytes: number;
  /** Bytes the data file occupies on disk: it is sparse. */
  dataFileAllocatedBytes: number;
}

export interface CountedPool {
  pool: Pool;
  metaFile: CountingStorageFile;
  dataFile: CountingStorageFile;
}

export async function buildScalePool(scratch: ScratchDir, name: string, mappingCount: number): Promise<ScalePool> {
  const { dataPath, metaPath } = scratch.poolPaths(name);
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes: (mappingCount + SPARE_DATA_BLOCKS) * DATA_BLOCK_BYTES });
  try {
    await pool.createVolume(SCALE_VOLUME, mappingCount * DATA_BLOCK_BYTES);
    progress(`scale: mapping all ${formatCount(mappingCount)} blocks of a volume`);
    const started = performance.now();
    await mapEveryBlock(pool, SCALE_VOLUME, mappingCount, (mapped) => {
      if (mapped < mappingCount) progress(`scale: ${formatCount(mapped)} of ${formatCount(mappingCount)} mapped`);
    });
    const buildMs = performance.now() - started;
    const status = pool.status();
    const dataStat = await stat(dataPath);
    return {
      metaPath,
      dataPath,
      mappingCount,
      buildMs,
      // A pool just built has both space maps: the count is known.
      metadataBlocksUsed: status.metadataBlocksUsed!,
      metadataBlocksTotal: status.metadataBlocksTotal,
      dataFileBytes: dataStat.size,
      dataFileAllocatedBytes: dataStat.blocks * 512,
    };
  } finally {
    await pool.close();
  }
}

/** Opens a built pool over files that count what passes through them (no locks: the bench alone uses it). */
export async function openCounted(built: ScalePool): Promise<CountedPool> {
  const metaFile = new CountingStorageFile(await NodeStorageFile.open(built.metaPath, "read-write", "metadata file"));
  const dataFile = new CountingStorageFile(await NodeStorageFile.open(built.dataPath, "read-write", "data file"));
  return { pool: await Pool.openFiles(metaFile, dataFile), metaFile, dataFile };
}

export async function removeScalePool(built: ScalePool): Promise<void> {
  await Promise.all([rm(built.metaPath, { force: true }), rm(built.dataPath, { force: true })]);
}
