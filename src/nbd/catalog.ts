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
}
