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
  | "SERVER_UNREACHABLE";

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
  constructor(readonly volumeName: string) {
    super(`a volume named '${volumeName}' already exists`);
  }
}

export class InvalidNameError extends ThinpError {
  readonly code = "INVALID_NAME";
  constructor(readonly volumeName: string, reason: string) {
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
  constructor(readonly volumeName: string, reason: string) {
    super(`volume '${volumeName}' is busy: ${reason}`);
  }
}

/** A metadata block failed verification: wrong checksum, wrong block number, or bad contents. */
export class CorruptBlockError extends ThinpError {
  readonly code = "CORRUPT";
  constructor(
    readonly blockIndex: number,
    readonly reason: string,
    readonly path?: string,
  ) {
    super(`metadata block ${blockIndex}${path ? ` of ${path}` : ""} is corrupt: ${reason}`);
  }
}

export class NotAPoolError extends ThinpError {
  readonly code = "NOT_A_POOL";
  constructor(readonly path: string, reason: string) {
    super(`${path} is not a thinp metadata file: ${reason}`);
  }
}

export class FileMissingError extends ThinpError {
  readonly code = "FILE_MISSING";
  constructor(readonly path: string, what: string) {
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
    readonly holderPid: number,
  ) {
    super(`pool ${metaPath} is in use by process ${holderPid}`);
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
  constructor(readonly socketPath: string, reason: string) {
    super(`cannot reach the thinp server at ${socketPath}: ${reason}`);
  }
}
