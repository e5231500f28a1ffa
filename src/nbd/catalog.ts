// What the NBD server is given to serve: a set of named exports, each a VolumeHandle.
// The pool implements this; tests implement it over memory volumes.

import type { VolumeHandle } from "../thin/api.js";

export interface ExportListing {
  name: string;
  /** Shown to humans by `nbdinfo --list`; may be empty. */
  description: string;
}

/** A value now or later: the pool answers asynchronously, a test catalog at once. */
export type Eventually<T> = T | Promise<T>;

/** Bytes [offset, offset + length). */
export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * One export compared with one base volume, bound when a client selects the base's
 * qemu:dirty-bitmap: context, and asked again at every BLOCK_STATUS for that context.
 */
export interface ChangeTracker {
  /**
   * The ranges of [offset, offset + byteLength) in which the export differs from the base,
   * in order, not touching or overlapping, inside that range. Rejects with an operating error
   * when it cannot tell: NO_SUCH_VOLUME once the base (or the export) has been deleted.
   */
  changedRanges(offset: number, byteLength: number): Promise<ByteRange[]>;
}

export interface ExportCatalog {
  list(): Eventually<ExportListing[]>;
  /**
   * The export's handle, or null when there is no export of that name. An operating error
   * thrown here (a corrupt pool, say) is reported to the client as the export being unavailable.
   */
  open(name: string): Eventually<VolumeHandle | null>;
  /** Makes every write acknowledged so far, on any connection, durable (commits the pool). */
  flush(): Promise<void>;
  /**
   * A client is about to enter transmission on this export (called before the handshake's
   * final reply). The pool counts it and refuses to delete the volume until detach. An
   * operating error thrown here refuses the client as if the export were unavailable.
   */
  attach?(name: string, handle: VolumeHandle): void;
  /** That client's connection has closed and its requests have finished; once per attach. */
  detach?(name: string, handle: VolumeHandle): void;
  /**
   * The volumes export `name` can be compared with, each offered as the context
   * qemu:dirty-bitmap:BASE. Without this method (or with an empty answer), none.
   */
  comparisonBases?(name: string): Eventually<string[]>;
  /**
   * Binds export `name` to `baseName` for comparisons; null when `baseName` is not one of
   * comparisonBases(name), which SET_META_CONTEXT then skips as an unknown context.
   */
  compare?(name: string, baseName: string): Eventually<ChangeTracker | null>;
}
