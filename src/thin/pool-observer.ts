// What the engine tells a watcher as it works: commits and copies on write. `thinp serve`
// turns these into metrics; the engine itself knows nothing of how they are kept.

export interface PoolObserver {
  /** A commit made the transaction durable, taking `durationMs` (syncs included). */
  committed?(durationMs: number): void;
  /** A partial write to a block shared with a snapshot copied its old contents into a fresh block. */
  copiedOnWrite?(): void;
}

export const silentObserver: PoolObserver = {};
