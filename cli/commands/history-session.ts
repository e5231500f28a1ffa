// How diff, send, receive and dump reach their pool: opened here when no server holds it,
// else through the running `thinp serve`, which reads from holds while it serves
// (src/control/live-history.ts). Either way the output and exit statuses are the same.

import { ControlClient } from "../../src/control/control-client.js";
import { controlSocketPath } from "../../src/control/control-protocol.js";
import type { Pool } from "../../src/thin/pool.js";
import { PoolBusyError, warnIfDegraded, withPool, type SessionMode } from "../pool-session.js";

export async function historySession<T>(
  metaPath: string,
  mode: SessionMode,
  local: (pool: Pool) => Promise<T>,
  served: (server: ControlClient) => Promise<T>,
): Promise<T> {
  const server = await ControlClient.connect(controlSocketPath(metaPath));
  if (server === null) return withPool(metaPath, mode, local);
  try {
    // A long command such as an import answers only reads, and not these.
    if (server.busyWith !== null) throw new PoolBusyError(metaPath, server.serverPid, server.busyWith);
    if (mode === "read") warnIfDegraded(server.degraded);
    return await served(server);
  } finally {
    server.close();
  }
}
