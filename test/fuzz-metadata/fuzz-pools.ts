// Valid pools for the metadata fuzzer to corrupt, each with what a correct reader must see.
//
// Every pool ends with a commit that only creates an empty volume, `last`. Its previous
// commit therefore holds the same data in every other volume, so a reader that falls
// back to the older superblock copy (when the newer is damaged) has one exact expected
// state too: the listing without `last`.

import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import type { SparsePages } from "../../src/io/sparse-pages.js";
import type { Extent, VolumeInfo } from "../../src/thin/api.js";
import { DATA_BLOCK_BYTES } from "../../src/thin/limits.js";
import { Pool } from "../../src/thin/pool.js";
import { SeededRandom } from "../support/random.js";

const MiB = 1 << 20;

export interface ExpectedVolume {
  info: VolumeInfo;
  bytes: Buffer;
  extents: Extent[];
}

export interface FuzzPool {
  name: string;
  /** The committed metadata file: clone its pages for each case, never write it. */
  meta: MemoryStorageFile;
  data: MemoryStorageFile;
  /** Listings by the transaction a reader may open: the last commit and the one before. */
  listings: Map<number, VolumeInfo[]>;
  volumes: Map<string, ExpectedVolume>;
  /** Metadata blocks holding anything, the targets worth corrupting. */
  usedBlocks: number[];
  /** The file as each earlier commit left it, for stale-block corruptions. */
  history: SparsePages[];
}

type Workload = (pool: Pool, random: SeededRandom, commit: () => Promise<void>) => Promise<void>;

async function writeBlocks(pool: Pool, name: string, blocks: Iterable<number>, random: SeededRandom): Promise<void> {
  const volume = await pool.volume(name);
  for (const block of blocks) {
    // Partial blocks too, so reads cross mapped and unmapped bytes within a block.
    const length = random.below(4) === 0 ? 512 * (1 + random.below(127)) : DATA_BLOCK_BYTES;
    await volume.write(block * DATA_BLOCK_BYTES, random.bytes(length));
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** One volume in one leaf: the smallest pool with every kind of block. */
const single: Workload = async (pool, random, commit) => {
  await pool.createVolume("only", MiB);
  await writeBlocks(pool, "only", [0, 3, 4, 15], random);
  await commit();
};

/** A two-level mapping tree shared with a snapshot that then diverged; a read-only snapshot. */
const snapshots: Workload = async (pool, random, commit) => {
  await pool.createVolume("base", 20 * MiB);
  await writeBlocks(pool, "base", range(0, 300), random);
  await commit();
  await pool.snapshot("base", "snap");
  await writeBlocks(pool, "base", range(0, 6), random);
  await writeBlocks(pool, "snap", [299, 310], random);
  await pool.createVolume("other", 2 * MiB);
  await writeBlocks(pool, "other", range(3, 12), random);
  await pool.snapshot("other", "other-ro", { readOnly: true });
  await pool.volume("other").then((volume) => volume.discard(4 * DATA_BLOCK_BYTES, 2 * DATA_BLOCK_BYTES));
  await commit();
};

/** Enough volumes for a two-level volume table, with deletes leaving freed blocks behind. */
const manyVolumes: Workload = async (pool, random, commit) => {
  for (let i = 0; i < 40; i++) {
    await pool.createVolume(`vol-${i}`, 512 * 1024);
    await writeBlocks(pool, `vol-${i}`, [i % 8], random);
  }
  await commit();
  for (let i = 0; i < 40; i += 7) await pool.deleteVolume(`vol-${i}`);
  await pool.snapshot("vol-3", "vol-3-snap");
  await writeBlocks(pool, "vol-3", [3], random);
  await commit();
};

const WORKLOADS: [string, Workload][] = [
  ["single", single],
  ["snapshots", snapshots],
  ["many-volumes", manyVolumes],
];

export async function buildFuzzPools(): Promise<FuzzPool[]> {
  const pools: FuzzPool[] = [];
  for (const [name, workload] of WORKLOADS) pools.push(await buildFuzzPool(name, workload));
  return pools;
}

async function buildFuzzPool(name: string, workload: Workload): Promise<FuzzPool> {
  const meta = new MemoryStorageFile(`${name}.meta`);
  const data = new MemoryStorageFile(`${name}.data`);
  const pool = await Pool.formatFiles(meta, data, { sizeBytes: 32 * MiB });
  const history: SparsePages[] = [meta.pages.clone()];
  const commit = async () => {
    await pool.commit();
    history.push(meta.pages.clone());
  };
  await workload(pool, new SeededRandom(name.length * 7919), commit);
  const before = await pool.listVolumes();
  await pool.createVolume("last", MiB);
  await pool.commit();
  const after = await pool.listVolumes();
  const volumes = new Map<string, ExpectedVolume>();
  for (const info of after) {
    const volume = await pool.volume(info.name);
    volumes.set(info.name, { info, bytes: await volume.read(0, info.sizeBytes), extents: await volume.extents(0, info.sizeBytes) });
  }
  const transactionId = pool.status().transactionId;
  await pool.close();
  return {
    name,
    meta,
    data,
    listings: new Map([
      [transactionId, after],
      [transactionId - 1, before],
    ]),
    volumes,
    usedBlocks: await nonZeroBlocks(meta),
    history,
  };
}

async function nonZeroBlocks(file: MemoryStorageFile): Promise<number[]> {
  const blocks: number[] = [];
  const block = Buffer.alloc(4096);
  const blockCount = Math.ceil((await file.byteLength()) / 4096);
  for (let blockIndex = 0; blockIndex < blockCount; blockIndex++) {
    await file.read(block, blockIndex * 4096);
    if (!block.every((byte) => byte === 0)) blocks.push(blockIndex);
  }
  return blocks;
}
