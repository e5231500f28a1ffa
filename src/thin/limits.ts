// Every limit of a pool, by name, units last (formats/metadata.md lists them too).

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
