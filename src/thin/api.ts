// The engine's public shapes, shared by the NBD server, the control socket and the CLI.
// Sizes and offsets are bytes unless a name says blocks.

export interface VolumeInfo {
  id: number;
  name: string;
  /** The volume's identity, kept by send and receive: a volume received elsewhere has the same. */
  uuid: string;
  /** Virtual size in bytes. */
  sizeBytes: number;
  /** Number of virtual blocks that have a data block. */
  mappedBlocks: number;
  /** Name of the volume this one was snapshotted from, if it still exists. */
  originName: string | null;
  readOnly: boolean;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Milliseconds since the epoch of the snapshot that made this volume, or null for a fresh volume. */
  snapshotAt: number | null;
}

export interface VolumeUsage {
  mappedBlocks: number;
  /** Mapped blocks whose data block no other volume references; null when a damaged space map hides it. */
  exclusiveBlocks: number | null;
  /** Mapped blocks whose data block is referenced by another volume too; null when a damaged space map hides it. */
  sharedBlocks: number | null;
}

export interface PoolStatus {
  dataBlockBytes: number;
  /** Null when the data space map cannot be read (see `degraded`). */
  dataBlocksUsed: number | null;
  dataBlocksTotal: number;
  metadataBlockBytes: number;
  /** Null when the metadata space map cannot be read (see `degraded`). */
  metadataBlocksUsed: number | null;
  metadataBlocksTotal: number;
  transactionId: number;
  /** The volumes a user sees (`list`). */
  volumeCount: number;
  /** Volumes no one sees: holds of a diff, send or dump under way, and receives not yet published. */
  hiddenVolumeCount: number;
  /**
   * Bytes the data file takes on disk (a sparse file takes less than its size; punched-out
   * freed blocks take none); null where not measured.
   */
  dataFileAllocatedBytes: number | null;
  uuid: string;
  dataPath: string;
  metaPath: string;
  /** A space map failed to load: the pool is read-only until `thinp repair`; null when whole. */
  degraded: PoolDegradation | null;
}

/** Why a pool opened read-only: the space-map block that failed, and the fact to tell a user. */
export interface PoolDegradation {
  blockIndex: number;
  /** Names the block and the file, why it failed, and that `thinp repair` is the way out. */
  message: string;
}

/** A run of bytes within a volume whose blocks are alike in how they are mapped. */
export interface Extent {
  offset: number;
  length: number;
  /** False: no data block behind it; it reads as zeros. */
  mapped: boolean;
  /**
   * Mapped, but a write would first copy it to a new data block (it is shared with a
   * snapshot, or was when the pool last committed), so a write can fail when the pool is full.
   */
  copyOnWrite: boolean;
}

/** Part of a read: the bytes of a mapped run, or null for an unmapped run (zeros). */
export interface ReadRun {
  offset: number;
  length: number;
  data: Buffer | null;
}

/** What the NBD server and the CLI's import/export use to reach one volume's bytes. */
export interface VolumeHandle {
  readonly name: string;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** A buffer of the read's own: nothing else references it, and the caller may free its memory. */
  read(offset: number, length: number): Promise<Buffer>;
  /** A read that also says which runs are unmapped, from one lookup: they come back as null. */
  readRuns(offset: number, length: number): Promise<ReadRun[]>;
  /**
   * `read` and `readRuns` that answer on the calling thread, with no promise, when nothing
   * they need must be waited for, and otherwise return the promise of the same read, already
   * under way. Optional.
   */
  readSoon?(offset: number, length: number): Buffer | Promise<Buffer>;
  readRunsSoon?(offset: number, length: number): ReadRun[] | Promise<ReadRun[]>;
  /**
   * Once it resolves, every write of `bytes` has finished and nothing keeps a reference to
   * them (what the engine keeps, it copies): the caller may reuse or free their memory.
   */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /**
   * `write` that returns undefined when it was done on the calling thread (nothing had to be
   * waited for), and otherwise the promise of the same write, already under way. Keeps no
   * reference to `bytes` once done, like `write`. Optional.
   */
  writeSoon?(offset: number, bytes: Uint8Array): Promise<void> | undefined;
  /** Unmaps whole blocks in the range and zeroes the partial blocks at its ends. */
  discard(offset: number, length: number): Promise<void>;
  /** Makes the range read as zeros; unmaps whole blocks unless `keepAllocated`. */
  writeZeroes(offset: number, length: number, keepAllocated: boolean): Promise<void>;
  /** Mapped and unmapped runs covering exactly [offset, offset + length). */
  extents(offset: number, length: number): Promise<Extent[]>;
}

/**
 * How two volumes map one block, in the categories thin_delta uses: `same` (one data block),
 * `different` (both map it, to different data blocks), `left_only` / `right_only` (only the
 * first / second volume of the comparison maps it).
 */
export type DiffKind = "same" | "different" | "left_only" | "right_only";

/** Bytes [offset, offset + length) of two volumes that are alike in how they differ. */
export interface DiffRange {
  kind: DiffKind;
  offset: number;
  length: number;
}

/** A volume's identity and which state of its contents it names (formats/metadata.md, "Volume identity"). */
export interface VolumeIdentity {
  uuid: string;
  generation: number;
}
