// Every limit of the persistent-data layer, by name, units last (formats/metadata.md lists
// the ones a pool's files show). How they relate is asserted at the bottom, when the module
// loads: a change to one that breaks another stops every program and test at once.

import { assert } from "../io/assert.js";

/** Every metadata block, whatever it holds, is this size; block n starts at byte n × this. */
export const METADATA_BLOCK_BYTES = 4096;
/** The metadata file never grows past this (256 GiB). */
export const METADATA_BLOCKS_MAX = 2 ** 26;
/** A new metadata file: the superblocks, the first trees and room to grow into. */
export const INITIAL_METADATA_BLOCKS = 256;
/** Metadata blocks held back so a commit always has room for the space maps. */
export const METADATA_RESERVE_BLOCKS = 64;
/** The metadata file grows by at least this much at a time... */
export const METADATA_GROWTH_BLOCKS_MIN = 256;
/** ...and by at least 1 / this of its size, so growing a large file is rare. */
export const METADATA_GROWTH_FILE_DIVISOR = 4;

/** Metadata blocks kept in memory (32 MiB); dirty blocks stay until written, whatever this says. */
export const CACHE_BLOCKS_MAX = 8192;
/** Dirty blocks written out early (they are unreachable from the last commit) past this. */
export const DIRTY_BLOCKS_MAX = 2048;
/** Metadata blocks written concurrently when dirty blocks go out. */
export const METADATA_WRITE_BATCH_BLOCKS = 32;

/** Space-map bitmaps read concurrently when a space map loads. */
export const BITMAP_READ_BATCH_BLOCKS = 64;
/** Longest index or overflow chain a space map may have; a longer one is a loop. */
export const SPACE_MAP_CHAIN_BLOCKS_MAX = 2 ** 20;
/** Attempts to size the metadata space map before the file's growth must have settled it. */
export const SPACE_MAP_SIZE_ROUNDS_MAX = 8;

/**
 * The deepest a B-tree may be; a node deeper than this is reached only through pointers
 * that loop. Far deeper than any tree this engine builds: a mapping tree's nodes hold 254
 * entries, so even a few levels cover a volume of VOLUME_BYTES_MAX.
 */
export const TREE_DEPTH_MAX = 16;

/** The largest value a B-tree leaf holds: a volume record (src/thin/volume-record.ts). */
export const NODE_VALUE_BYTES_MAX = 256;
/**
 * The fewest entries a node may be made to hold. Splitting a full node must leave two
 * non-empty halves with room in the half that takes the new key, and a grown root holds two
 * children: two entries is the least that works.
 */
export const NODE_ENTRIES_MIN = 2;

// Byte offsets in the metadata file stay exact as JavaScript numbers.
assert(Number.isSafeInteger(METADATA_BLOCKS_MAX * METADATA_BLOCK_BYTES), "metadata file size exact");
// Blocks are checksummed and written whole; a power of two keeps them aligned to pages.
assert((METADATA_BLOCK_BYTES & (METADATA_BLOCK_BYTES - 1)) === 0, "metadata block size a power of two");
// A new file must be able to hold its superblocks and a first commit beside the reserve.
assert(INITIAL_METADATA_BLOCKS > METADATA_RESERVE_BLOCKS + 2, "initial metadata file above the reserve");
assert(INITIAL_METADATA_BLOCKS <= METADATA_BLOCKS_MAX, "initial metadata file within the limit");
// One growth step always refills the reserve it was asked for.
assert(METADATA_GROWTH_BLOCKS_MIN > METADATA_RESERVE_BLOCKS, "growth refills the reserve");
assert(METADATA_GROWTH_FILE_DIVISOR >= 1, "growth divisor");
// Dirty blocks cannot be evicted: writing them out early keeps room in the cache for the
// clean blocks an operation reads.
assert(DIRTY_BLOCKS_MAX < CACHE_BLOCKS_MAX, "dirty blocks bounded below the cache");
assert(METADATA_WRITE_BATCH_BLOCKS <= DIRTY_BLOCKS_MAX, "write batch within the dirty bound");
// A chain lives in metadata blocks: no chain is longer than the file.
assert(SPACE_MAP_CHAIN_BLOCKS_MAX <= METADATA_BLOCKS_MAX, "chain bound within the metadata file");
assert(NODE_VALUE_BYTES_MAX < METADATA_BLOCK_BYTES, "node value within a block");
