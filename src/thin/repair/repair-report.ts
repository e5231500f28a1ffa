// What `thinp repair` tells its user: everything it changed and everything it lost. Lists
// of blocks are cut at REPORT_ITEMS_MAX; the counts beside them are always exact.

import { REPORT_ITEMS_MAX } from "../limits.js";
import type { KeyRange } from "./salvage-tree.js";

// Its home is thin/limits.ts; the name stays here for the modules that import it from here.
export { REPORT_ITEMS_MAX };

export interface RepairReport {
  source: {
    path: string;
    transactionId: number;
    /** The superblock copy repair read: the newest valid one. */
    superblockSlot: number;
    /** The other copy: its transaction id, or why it could not be read. */
    otherSuperblock: { slot: number; transactionId: number } | { slot: number; unreadable: string };
  };
  output: {
    path: string;
    transactionId: number;
    volumes: number;
    mappings: number;
    dataBlocksUsed: number;
    metadataBlocksUsed: number;
    /** `thinp check` of the new file found nothing: always true for a report that is returned. */
    clean: boolean;
  };
  volumes: VolumeOutcome[];
  /** Volume records that could not be read: the volumes are gone from the new pool. */
  volumesLost: LostVolumes[];
  dataSpaceMap: SpaceMapOutcome;
  metadataSpaceMap: SpaceMapOutcome;
  /** Damage that cost nothing, such as an unreadable name index (rebuilt from the records). */
  notes: string[];
  /** Some volume or mapping could not be salvaged. */
  lostData: boolean;
}

export interface VolumeOutcome {
  id: number;
  /** The name in the new pool. */
  name: string;
  /** Set when the old name was invalid or taken by another salvaged volume. */
  renamedFrom?: string;
  sizeBytes: number;
  /** What the volume's record counted. */
  mappingsRecorded: number;
  mappingsKept: number;
  /** Refused entries plus, where subtrees were unreadable, the rest of what the record counted. */
  mappingsLost: number;
  /** Unreadable parts of the mapping tree, with the virtual blocks they covered (clamped to the volume). */
  lostSubtrees: { blockIndex: number; reason: string; virtualBlocks: KeyRange }[];
  refusedMappings: { virtualBlock: number | null; blockIndex: number; reason: string }[];
  refusedMappingCount: number;
  /** Record fields repair had to change, each said in words. */
  fixes: string[];
}

export interface LostVolumes {
  blockIndex: number;
  reason: string;
  /** Volume ids [first, end) whose records were there, as far as the volume table says. */
  volumeIds: KeyRange;
}

/**
 * The old space map against the references the old file's own trees make, counted as
 * `thinp check` counts them. The new file's counts are rebuilt from scratch either way; they
 * differ from the old ones also where snapshots shared tree nodes, which is no correction.
 */
export interface SpaceMapOutcome {
  /** False when the old map, or the trees it counts, could not be read whole. */
  compared: boolean;
  notComparedBecause?: string;
  blocksUsedBefore: number | null;
  blocksUsedAfter: number;
  /** Leaked: counted as used by the old map, referenced by nothing. Free in the new pool. */
  reclaimed: number;
  reclaimedBlocks: number[];
  /** Referenced, but counted wrong (or marked free) by the old map: `was` stored, `now` found. */
  corrected: number;
  correctedBlocks: { blockIndex: number; was: number; now: number }[];
  /**
   * Data space map only, when the trees were damaged: blocks the old map counted that no
   * salvaged mapping references, so they are free now (leaked, or held only by lost
   * mappings). Null when not known.
   */
  freedWithLostMappings: number | null;
}
