// What a dm-thin pool's metadata says, as restore reads it: from thin_dump's XML
// (xml-source.ts) or from the kernel's binary metadata itself (dm-metadata-source.ts). Both
// yield the same events, in the order thin_dump prints them: the superblock, then each
// device with its mappings, so restore.ts builds a thinp pool from either.

/** The pool's superblock, as thin_dump prints it. */
export interface DmThinSuperblock {
  /** Often empty: dm-thin pools made by LVM and Docker leave it so. */
  uuid: string;
  /** Snapshots taken in the pool's life: the time mappings and devices are stamped with. */
  time: number;
  transaction: number;
  /** In 512-byte sectors: 128 is 64 KiB, the only size thinp takes. */
  dataBlockSectors: number;
  dataBlockCount: number;
}

export interface DmThinDevice {
  devId: number;
  mappedBlocks: number;
  transaction: number;
  creationTime: number;
  snapTime: number;
}

/**
 * A run of `length` virtual blocks from `virtualBegin` mapped to consecutive data blocks
 * from `dataBegin`, written at pool time `time` (a single mapping has length 1).
 */
export interface DmThinMapping {
  virtualBegin: number;
  dataBegin: number;
  length: number;
  time: number;
}

export type DmThinEvent =
  | { kind: "superblock"; superblock: DmThinSuperblock }
  | { kind: "device"; device: DmThinDevice }
  | { kind: "mapping"; mapping: DmThinMapping }
  | { kind: "end-device" };

/** Where an event came from, for messages: "line 12, column 5" of the XML, or a metadata block. */
export interface DmThinEventSource {
  events(): AsyncIterable<DmThinEvent>;
  /** Where the last event yielded was read from. */
  readonly position: string;
}
