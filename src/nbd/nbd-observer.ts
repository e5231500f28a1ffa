// What the NBD server tells a watcher: connections coming and going, and each request
// answered. `thinp serve` turns these into metrics; tests usually pass nothing.
//
// A request's report goes to an object asked for once per transmission, for the export
// the client chose, so a watcher can do its per-export work (finding labelled counters)
// then and not on every request.

export interface NbdObserver {
  connectionOpened(): void;
  connectionClosed(): void;
  /** A client entered transmission on `exportName`: what its requests are reported to. */
  exportServed(exportName: string): NbdRequestObserver;
}

export interface NbdRequestObserver {
  /**
   * A request's reply was queued: its NBD command, the length it asked for, the NBD errno
   * it failed with (0 on success), and the seconds from its header being read to its reply.
   */
  answered(command: number, byteLength: number, errno: number, seconds: number): void;
}

export const silentRequests: NbdRequestObserver = { answered: () => {} };

export const silentObserver: NbdObserver = {
  connectionOpened: () => {},
  connectionClosed: () => {},
  exportServed: () => silentRequests,
};
