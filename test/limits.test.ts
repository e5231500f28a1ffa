// The limits modules assert how their limits relate when they load; these tests check the
// relations that only an encoding can show: that a value at every limit at once still fits
// the bytes its format gives it, and reads back unchanged.

import { describe, expect, it } from "vitest";
import { METADATA_BLOCKS_MAX } from "../src/pdata/limits.js";
import {
  DATA_BLOCKS_MAX,
  DATA_BLOCK_BYTES,
  DATA_PATH_BYTES_MAX,
  NAME_BYTES_MAX,
  POOL_BLOCKS_MAX,
  SNAPSHOT_TIME_MAX,
  VOLUME_BYTES_MAX,
} from "../src/thin/limits.js";
import { decodeMapping, encodeMapping } from "../src/thin/mapping-value.js";
import { decodeSuperblock, encodeSuperblock, type Superblock } from "../src/thin/superblock.js";
import { VOLUME_RECORD_BYTES, decodeVolumeRecord, encodeVolumeRecord, type VolumeRecord } from "../src/thin/volume-record.js";

describe("values at their limits fit their formats", () => {
  it("a volume record with the longest name and every number at its largest fits its 256 bytes", () => {
    const record: VolumeRecord = {
      name: "n".repeat(NAME_BYTES_MAX),
      sizeBytes: VOLUME_BYTES_MAX,
      mappingRoot: METADATA_BLOCKS_MAX - 1,
      mappedBlocks: VOLUME_BYTES_MAX / DATA_BLOCK_BYTES,
      // Volume ids are never reused, so an origin id is bounded only by exactness.
      originId: Number.MAX_SAFE_INTEGER,
      readOnly: true,
      createdAt: Number.MAX_SAFE_INTEGER,
      snapshotAt: Number.MAX_SAFE_INTEGER,
      snapshotTime: SNAPSHOT_TIME_MAX,
      uuid: "ffffffff-ffff-ffff-ffff-ffffffffffff",
      generation: Number.MAX_SAFE_INTEGER,
      sealed: true,
      hidden: true,
      receiving: null,
    };
    const value = encodeVolumeRecord(record);
    expect(value.length).toBe(VOLUME_RECORD_BYTES);
    expect(decodeVolumeRecord(value, 7)).toEqual(record);
  });

  it("a hidden volume mid-receive, its name as long as receive makes them, fits its 256 bytes", () => {
    const record: VolumeRecord = {
      name: ".receive-" + "f".repeat(16),
      sizeBytes: VOLUME_BYTES_MAX,
      mappingRoot: METADATA_BLOCKS_MAX - 1,
      mappedBlocks: VOLUME_BYTES_MAX / DATA_BLOCK_BYTES,
      originId: Number.MAX_SAFE_INTEGER,
      readOnly: true,
      createdAt: Number.MAX_SAFE_INTEGER,
      snapshotAt: Number.MAX_SAFE_INTEGER,
      snapshotTime: SNAPSHOT_TIME_MAX,
      uuid: "ffffffff-ffff-ffff-ffff-ffffffffffff",
      generation: Number.MAX_SAFE_INTEGER,
      sealed: false,
      hidden: true,
      receiving: {
        baseUuid: "ffffffff-ffff-ffff-ffff-ffffffffffff",
        baseGeneration: Number.MAX_SAFE_INTEGER,
        nextBlock: VOLUME_BYTES_MAX / DATA_BLOCK_BYTES,
        resumable: true,
      },
    };
    const value = encodeVolumeRecord(record);
    expect(value.length).toBe(VOLUME_RECORD_BYTES);
    expect(decodeVolumeRecord(value, 7)).toEqual(record);
  });

  it("a superblock with the longest data path and every number at its largest reads back", () => {
    const largest = Number.MAX_SAFE_INTEGER;
    const superblock: Superblock = {
      uuid: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0",
      repairedCopy: true,
      transactionId: largest,
      snapshotTime: SNAPSHOT_TIME_MAX,
      volumeTableRoot: METADATA_BLOCKS_MAX - 1,
      nameIndexRoot: METADATA_BLOCKS_MAX - 2,
      nextVolumeId: largest,
      createdAt: largest,
      dataSpaceMap: {
        blockCount: POOL_BLOCKS_MAX,
        indexHead: METADATA_BLOCKS_MAX - 3,
        overflowHead: METADATA_BLOCKS_MAX - 4,
        overflowCount: POOL_BLOCKS_MAX,
      },
      metadataSpaceMap: { blockCount: METADATA_BLOCKS_MAX, indexHead: METADATA_BLOCKS_MAX - 5, overflowHead: 0, overflowCount: 0 },
      dataPath: "é".repeat(DATA_PATH_BYTES_MAX / 2),
    };
    expect(decodeSuperblock(encodeSuperblock(superblock, 1), 1, "meta")).toEqual(superblock);
  });

  it("a mapping of the last data block at the last snapshot time reads back", () => {
    const mapping = { dataBlock: DATA_BLOCKS_MAX - 1, time: SNAPSHOT_TIME_MAX };
    expect(decodeMapping(encodeMapping(mapping))).toEqual(mapping);
    expect(decodeMapping(encodeMapping({ dataBlock: POOL_BLOCKS_MAX - 1, time: 0 }))).toEqual({ dataBlock: POOL_BLOCKS_MAX - 1, time: 0 });
  });
});
