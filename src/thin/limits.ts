// Every limit of a pool, by name, units last (formats/metadata.md lists them too). How they
// relate, to each other and to the persistent-data layer's limits, is asserted at the bottom
// when the module loads.

import { assert } from "../io/assert.js";
import { METADATA_BLOCKS_MAX, SPACE_MAP_CHAIN_BLOCKS_MAX } from "../pdata/limits.js";
import { BITMAP_ENTRIES, INDEX_ENTRIES, OVERFLOW_ENTRY } from "../pdata/space-map-format.js";

/** Data is allocated in blocks of this size; a snapshot shares and copies whole blocks. */
export const DATA_BLOCK_BYTES = 65536;
/** Volume sizes are whole sectors, as block devices are. */
export const SECTOR_BYTES = 512;
/** Longest volume name, in UTF-8 bytes (names are ASCII: letters, digits, '.', '_', '-'). */
export const NAME_BYTES_MAX = 128;
export const VOLUMES_MAX = 65536;
/** Mapping values keep a data block index in 40 bits. */
export const DATA_BLOCKS_MAX = 2 ** 40;
/** In-memory refcounts take one byte per data block: 2^32 blocks is 256 TiB of pool and 4 GiB of RAM. */
export const POOL_BYTES_MAX = 2 ** 32 * DATA_BLOCK_BYTES;
/** Virtual block indexes must stay exact as JavaScript numbers, and byte offsets too. */
export const VOLUME_BYTES_MAX = 2 ** 52;
export const DEFAULT_POOL_BYTES = 10 * 2 ** 30;
/** Mapping times count snapshots and wrap nowhere: 24 bits. */
export const SNAPSHOT_TIME_MAX = 2 ** 24 - 1;
/** The path of the data file, relative to the metadata file, as stored in the superblock. */
export const DATA_PATH_BYTES_MAX = 1024;

/** Linear probing bound in the name index; 48-bit hashes make even two probes rare. */
export const NAME_PROBES_MAX = 64;

/** Problems `thinp check` lists one by one before the rest are summarized. */
export const PROBLEMS_LISTED_MAX = 200;
/** Blocks and mappings `thinp repair` lists one by one; the counts beside them are exact. */
export const REPORT_ITEMS_MAX = 1000;
/** Attempts at a free `recovered-<id>` name for a salvaged volume whose own name cannot be used. */
export const RENAME_ATTEMPTS_MAX = 100;

/** Whole-range volume operations (discard, zeroing, extents) walk this many blocks per section. */
export const RANGE_STEP_BLOCKS = 65536;
/** Zeroes written per write when zeroing must keep blocks allocated (NBD's NO_HOLE). */
export const ZERO_WRITE_BYTES = 2 ** 20;
/** Mappings `thinp dump` reads per section, so a served pool is not held up by a long dump. */
export const DUMP_MAPPINGS_PER_STEP = 65536;
/** dm-thin keeps device ids in 24 bits: a volume id beyond this cannot be dumped for it. */
export const DM_THIN_DEV_ID_MAX = 2 ** 24 - 1;
/**
 * Deepest B-tree level read from dm-thin metadata, the kernel's DM_BTREE_CURSOR_MAX_DEPTH:
 * its trees keep every non-root node a third full, so even a 16 GiB metadata device holds none deeper than 5.
 */
export const DM_BTREE_DEPTH_MAX = 16;

/** The most data blocks a pool may have. */
export const POOL_BLOCKS_MAX = POOL_BYTES_MAX / DATA_BLOCK_BYTES;

// Sizes are whole sectors and whole blocks are whole sectors.
assert((DATA_BLOCK_BYTES & (DATA_BLOCK_BYTES - 1)) === 0 && DATA_BLOCK_BYTES % SECTOR_BYTES === 0, "data block of whole sectors");
// Byte offsets in a volume and in the data file stay exact as JavaScript numbers; so do the
// virtual block indexes that key a mapping tree.
assert(Number.isSafeInteger(VOLUME_BYTES_MAX) && VOLUME_BYTES_MAX % DATA_BLOCK_BYTES === 0, "volume size exact, whole blocks");
assert(Number.isSafeInteger(POOL_BYTES_MAX) && Number.isInteger(POOL_BLOCKS_MAX), "pool size exact, whole blocks");
// A mapping can name every data block of the largest pool.
assert(POOL_BLOCKS_MAX <= DATA_BLOCKS_MAX, "mapping values reach every data block");
assert(DEFAULT_POOL_BYTES <= POOL_BYTES_MAX && DEFAULT_POOL_BYTES % DATA_BLOCK_BYTES === 0, "default pool size");
// The largest pool's data space map fits the metadata file, and its index chain is not
// mistaken for a loop.
const POOL_BITMAPS_MAX = Math.ceil(POOL_BLOCKS_MAX / BITMAP_ENTRIES);
assert(Math.ceil(POOL_BITMAPS_MAX / INDEX_ENTRIES) <= SPACE_MAP_CHAIN_BLOCKS_MAX, "data space-map index chain within the chain bound");
assert(POOL_BITMAPS_MAX + Math.ceil(POOL_BITMAPS_MAX / INDEX_ENTRIES) < METADATA_BLOCKS_MAX, "data space map within the metadata file");
// A block's count is one per referrer: a data block's, one per leaf that maps it; a metadata
// block's, one per parent node plus one per volume record naming it as a root. Every leaf
// and node is a metadata block, so no count exceeds what an overflow entry's count holds.
assert(METADATA_BLOCKS_MAX + VOLUMES_MAX < 2 ** (8 * OVERFLOW_ENTRY.count.bytes), "every count fits an overflow entry");
// A range step's lookups stay within one section's worth of work, and zeroing writes whole blocks.
assert(
  RANGE_STEP_BLOCKS * DATA_BLOCK_BYTES <= VOLUME_BYTES_MAX && ZERO_WRITE_BYTES % DATA_BLOCK_BYTES === 0,
  "range step and zero write in whole blocks",
);
// Snapshot times are kept in the superblock's u32 field.
assert(SNAPSHOT_TIME_MAX < 2 ** 32, "snapshot time fits its superblock field");
assert(NAME_PROBES_MAX >= 1 && PROBLEMS_LISTED_MAX >= 1 && REPORT_ITEMS_MAX >= 1 && RENAME_ATTEMPTS_MAX >= 1, "list bounds");
