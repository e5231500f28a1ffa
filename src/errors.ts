// Operating errors: things a user or a disk can cause. Each has a stable `code`;
// the NBD errno for a code lives in src/nbd/errno.ts and the CLI exit code in
// cli/exit-codes.ts, one table each. Programmer errors are assertions
// (src/io/assert.ts), never one of these.

export type ErrorCode =
  | "NO_SUCH_VOLUME"
  | "VOLUME_EXISTS"
  | "INVALID_NAME"
  | "INVALID_SIZE"
  | "SHRINK_BELOW_MAPPED"
  | "POOL_FULL"
  | "METADATA_FULL"
  | "LIMIT_EXCEEDED"
  | "OUT_OF_RANGE"
  | "READ_ONLY"
  | "VOLUME_BUSY"
  | "CORRUPT"
  | "NOT_A_POOL"
  | "FILE_MISSING"
  | "FILE_EXISTS"
  | "POOL_LOCKED"
  | "IO_ERROR"
  | "SERVER_UNREACHABLE"
  | "INVALID_ARGUMENT"
  | "STREAM_CORRUPT"
  | "BASE_MISMATCH";

export abstract class ThinpError extends Error {
  abstract readonly code: ErrorCode;
  override get name(): string {
    return this.constructor.name;
  }
}

export class NoSuchVolumeError extends ThinpError {
  readonly code = "NO_SUCH_VOLUME";
  constructor(readonly volumeName: string) {
    super(`no volume named '${volumeName}' in this pool`);
  }
}

export class VolumeExistsError extends ThinpError {
  readonly code = "VOLUME_EXISTS";
  /** `detail` replaces the plain message where there is more to say (a receive kept, the same volume under another name). */
  constructor(
    readonly volumeName: string,
    detail?: string,
  ) {
    super(detail ?? `a volume named '${volumeName}' already exists`);
  }
}

export class InvalidNameError extends ThinpError {
  readonly code = "INVALID_NAME";
  constructor(
    readonly volumeName: string,
    reason: string,
  ) {
    super(`invalid volume name '${volumeName}': ${reason}`);
  }
}

export class InvalidSizeError extends ThinpError {
  readonly code = "INVALID_SIZE";
  constructor(message: string) {
    super(message);
  }
}

export class ShrinkBelowMappedError extends ThinpError {
  readonly code = "SHRINK_BELOW_MAPPED";
  constructor(
    readonly volumeName: string,
    readonly requestedBytes: number,
    readonly requiredBytes: number,
  ) {
    super(
      `cannot shrink '${volumeName}' to ${requestedBytes} bytes: it has data mapped up to byte ${requiredBytes}; ` +
        `discard that range first or choose a size of at least ${requiredBytes} bytes`,
    );
  }
}

export class PoolFullError extends ThinpError {
  readonly code = "POOL_FULL";
  constructor(
    readonly usedBlocks: number,
    readonly totalBlocks: number,
    readonly blockBytes: number,
  ) {
    super(
      `pool is full: ${usedBlocks} of ${totalBlocks} data blocks (${blockBytes / 1024} KiB each) are in use; ` +
        `delete volumes, discard data or grow the pool with 'thinp resize-pool'`,
    );
  }
}

export class MetadataFullError extends ThinpError {
  readonly code = "METADATA_FULL";
  constructor(readonly metadataBlocks: number) {
    super(`metadata file cannot grow past ${metadataBlocks} blocks`);
  }
}

export class LimitExceededError extends ThinpError {
  readonly code = "LIMIT_EXCEEDED";
  constructor(message: string) {
    super(message);
  }
}

export class OutOfRangeError extends ThinpError {
  readonly code = "OUT_OF_RANGE";
  constructor(
    readonly volumeName: string,
    readonly offset: number,
    readonly length: number,
    readonly volumeBytes: number,
  ) {
    super(`range ${offset}+${length} lies beyond the end of '${volumeName}' (${volumeBytes} bytes)`);
  }
}

export class ReadOnlyError extends ThinpError {
  readonly code = "READ_ONLY";
  constructor(what: string) {
    super(`${what} is read-only`);
  }
}

export class VolumeBusyError extends ThinpError {
  readonly code = "VOLUME_BUSY";
  constructor(
    readonly volumeName: string,
    reason: string,
  ) {
    super(`volume '${volumeName}' is busy: ${reason}`);
  }
}

/**
 * What was wrong with a corrupt metadata block, stable for callers and tests to branch on
 * (formats/metadata.md, "Corruption kinds"); the message says it for people.
 */
export type CorruptionKind =
  /** The block's checksum does not match its contents. */
  | "checksum"
  /** The block says it is another block: a misdirected write. */
  | "wrong-block-number"
  /** The block is not of the type its reader expects (or is all zeros). */
  | "wrong-type"
  /** A B-tree node that verifies holds impossible contents: header, keys, their order. */
  | "bad-node"
  /** Pointers that loop: a tree deeper than any real one, a node reached again, a chain that cycles. */
  | "loop"
  /** A pointer beyond the metadata file (or 2^53), or a mapping beyond the pool's data blocks. */
  | "pointer-out-of-range"
  /** A superblock that verifies holds impossible fields, or no copy verifies. */
  | "bad-superblock"
  /** A space-map block that verifies disagrees with its chain, its chunk or the superblock. */
  | "bad-space-map"
  /** A value in a tree that does not decode or names what does not exist. */
  | "bad-record";

/** A metadata block failed verification: wrong checksum, wrong block number, or bad contents. */
export class CorruptBlockError extends ThinpError {
  readonly code = "CORRUPT";
  constructor(
    readonly blockIndex: number,
    readonly kind: CorruptionKind,
    readonly reason: string,
    readonly path?: string,
  ) {
    super(`metadata block ${blockIndex}${path ? ` of ${path}` : ""} is corrupt: ${reason}`);
  }
}

export class NotAPoolError extends ThinpError {
  readonly code = "NOT_A_POOL";
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path} is not a thinp metadata file: ${reason}`);
  }
}

export class FileMissingError extends ThinpError {
  readonly code = "FILE_MISSING";
  constructor(
    readonly path: string,
    readonly what: string,
  ) {
    super(`${what} ${path} does not exist`);
  }
}

export class FileExistsError extends ThinpError {
  readonly code = "FILE_EXISTS";
  constructor(readonly path: string) {
    super(`${path} already exists; refusing to overwrite it`);
  }
}

export class PoolLockedError extends ThinpError {
  readonly code = "POOL_LOCKED";
  constructor(
    readonly metaPath: string,
    /** null where the OS does not say who holds the lock. */
    readonly holderPid: number | null,
    holderCommand: string | null = null,
  ) {
    super(`pool ${metaPath} is in use by ${describeHolder(holderPid, holderCommand)}; wait for it to finish or stop it`);
  }
}

/** The data file is held by a process that opened it through another metadata file. */
export class DataFileLockedError extends ThinpError {
  readonly code = "POOL_LOCKED";
  constructor(
    readonly dataPath: string,
    readonly metaPath: string,
    readonly holderPid: number | null,
    holderCommand: string | null = null,
  ) {
    super(
      `data file ${dataPath} of pool ${metaPath} is in use by ${describeHolder(holderPid, holderCommand)}, ` +
        `which opened it through another metadata file (a copy, a link or a repaired file); ` +
        `two metadata files must never share a data file at once`,
    );
  }
}

function describeHolder(pid: number | null, command: string | null): string {
  if (pid === null) return "another process";
  return command ? `process ${pid} (${command})` : `process ${pid}`;
}

/**
 * The data file records which metadata file is its pool's (formats/data-file.md), and this
 * metadata file is not it: another pool's, an older copy, or a repaired file not yet in place.
 */
export class WrongDataFileError extends ThinpError {
  readonly code = "NOT_A_POOL";
  constructor(
    readonly metaPath: string,
    readonly dataPath: string,
    reason: string,
  ) {
    super(`${metaPath} cannot be used with data file ${dataPath}: ${reason}`);
  }
}

export class IoError extends ThinpError {
  readonly code = "IO_ERROR";
  constructor(
    readonly path: string,
    override readonly cause: unknown,
  ) {
    super(`I/O error on ${path}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

export class ServerUnreachableError extends ThinpError {
  readonly code = "SERVER_UNREACHABLE";
  constructor(
    readonly socketPath: string,
    reason: string,
  ) {
    super(`cannot reach the thinp server at ${socketPath}: ${reason}`);
  }
}

/** A file is to be made in a folder that does not exist; thinp never makes folders itself. */
export class FolderMissingError extends ThinpError {
  readonly code = "FILE_MISSING";
  constructor(readonly path: string) {
    super(`folder ${path} does not exist; create it first (mkdir -p ${path})`);
  }
}

/**
 * A change asked of a pool its server opened read-only. `reason` comes from whoever
 * started the server: how it was started, and how to start it so that it takes changes.
 */
export class ServedReadOnlyError extends ThinpError {
  readonly code = "READ_ONLY";
  constructor(
    readonly metaPath: string,
    reason: string,
  ) {
    super(`pool ${metaPath} is served read-only: ${reason}`);
  }
}

/**
 * The data file is shorter than the blocks the metadata counts: cut short, or another
 * pool's. Not NOT_A_POOL: the metadata is sound, and the file at fault is the data file.
 */
export class DataFileTruncatedError extends ThinpError {
  readonly code = "CORRUPT";
  constructor(
    readonly dataPath: string,
    readonly byteLength: number,
    readonly neededBytes: number,
  ) {
    super(`${DataFileTruncatedError.describe(dataPath, byteLength, neededBytes)}, then run 'thinp check'`);
  }

  /** The fact and the way past it, as `thinp check` lists it. */
  static describe(dataPath: string, byteLength: number, neededBytes: number): string {
    return (
      `data file ${dataPath} is ${byteLength} bytes but the pool has ${neededBytes} bytes of blocks: ` +
      `it was truncated or is not this pool's data file; restore it from a backup, or grow it back with ` +
      `'truncate -s ${neededBytes} ${dataPath}' (the blocks that were cut off then read as zeros)`
    );
  }
}

/** Which space map of a pool could not be loaded, and the whole fact to tell a user. */
export interface SpaceMapDamage {
  spaceMap: "data" | "metadata";
  blockIndex: number;
  /** Names the block, the file, why it failed, and that `thinp repair` is the way out. */
  message: string;
}

/**
 * A change asked of a pool whose space map is damaged. Reads still work (they need only the
 * trees); a change needs the counts, which only `thinp repair` can rebuild.
 */
export class PoolDegradedError extends ThinpError {
  readonly code = "CORRUPT";
  constructor(
    what: string,
    readonly damage: SpaceMapDamage,
  ) {
    super(`${what} cannot be changed: ${damage.message}`);
  }
}

/** A send stream that is cut short, damaged, or not a stream at all (formats/send-stream.md). */
export class StreamCorruptError extends ThinpError {
  readonly code = "STREAM_CORRUPT";
  constructor(
    /** Where in the stream (bytes from its start) the fault was found. */
    readonly streamOffset: number,
    readonly reason: string,
  ) {
    super(`the send stream is unusable at byte ${streamOffset}: ${reason}`);
  }
}

/**
 * An incremental stream whose base this pool does not hold as it was sent from: missing, or
 * changed since (its generation moved on). The message names the base and the way round.
 */
export class BaseMismatchError extends ThinpError {
  readonly code = "BASE_MISMATCH";
  constructor(message: string) {
    super(message);
  }
}

/** A value given on the command line (or over the control socket) that means nothing here. */
export class InvalidArgumentError extends ThinpError {
  readonly code = "INVALID_ARGUMENT";
  constructor(message: string) {
    super(message);
  }
}
