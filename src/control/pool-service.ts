// `thinp serve`: one process owns the pool and serves every volume over NBD, takes
// management requests on the control socket, and commits in the background.

import { Pool } from "../thin/pool.js";
import { dataUseWarning } from "../thin/space-warning.js";
import { NBD_DEFAULT_PORT, startNbdServer, type NbdServer } from "../nbd/index.js";
import type { NbdLog } from "../nbd/nbd-log.js";
import type { NbdTlsOptions } from "../nbd/tls.js";
import { controlSocketPath } from "./control-protocol.js";
import { startControlServer, type ControlServer } from "./control-server.js";
import { BACKGROUND_COMMIT_INTERVAL_MS } from "./limits.js";
import { LiveHistory } from "./live-history.js";
import { ServedPool } from "./served-pool.js";

// Its home is limits.ts; the name stays here for the modules that import it from here.
export { BACKGROUND_COMMIT_INTERVAL_MS };

export interface PoolServiceOptions {
  metaPath: string;
  /** TCP address; used when given, or when no socket path is given. */
  listen?: { host: string; port: number };
  socketPath?: string;
  readOnly?: boolean;
  /** With readOnly: why, and how to serve the pool so that it takes changes; management refusals say it. */
  readOnlyReason?: string;
  log: (message: string) => void;
  nbdLog?: NbdLog;
  /** STARTTLS on every NBD listener; none when absent. */
  tls?: NbdTlsOptions;
}

export interface PoolService {
  readonly pool: Pool;
  readonly servers: NbdServer[];
  readonly control: ControlServer;
  /** Stops accepting, drains in-flight requests, commits and releases the pool. */
  stop(): Promise<void>;
}

export async function startPoolService(options: PoolServiceOptions): Promise<PoolService> {
  const pool = await Pool.open(options.metaPath, { readOnly: options.readOnly });
  const servers: NbdServer[] = [];
  let control: ControlServer;
  let served: ServedPool;
  let history: LiveHistory;
  try {
    served = await ServedPool.start(pool, options.log, options.readOnlyReason);
    const exports = served;
    history = await LiveHistory.start(pool, () => exports.refresh(), options.log);
    const common = { catalog: served, readOnly: options.readOnly, log: options.nbdLog, tls: options.tls };
    if (options.listen || !options.socketPath) {
      servers.push(await startNbdServer({ ...common, listen: options.listen ?? { host: "127.0.0.1", port: NBD_DEFAULT_PORT } }));
    }
    if (options.socketPath) servers.push(await startNbdServer({ ...common, socketPath: options.socketPath }));
    control = await startControlServer(
      controlSocketPath(options.metaPath),
      served,
      options.log,
      servers.map((server) => server.address),
      undefined,
      () => history.connect(),
    );
  } catch (error) {
    await Promise.allSettled(servers.map((server) => server.close()));
    await pool.close();
    throw error;
  }

  // Served anyway, read-only: the volumes can still be copied off before or instead of a repair.
  const damage = pool.degraded;
  if (damage) options.log(`warning: ${damage.message}; serving every volume read-only`);

  // Logged when data use first reaches the threshold, and again after it has dropped below.
  let warnedFull = false;
  const watchDataUse = () => {
    const warning = dataUseWarning(pool.status());
    if (warning && !warnedFull) options.log(`warning: ${warning}`);
    warnedFull = warning !== null;
  };
  watchDataUse();

  let committing: Promise<void> | null = null;
  const timer = setInterval(() => {
    watchDataUse();
    if (committing || !pool.hasUncommittedWork) return;
    committing = pool
      .commit()
      .catch((error) => options.log(`background commit failed: ${(error as Error).message}`))
      .finally(() => (committing = null));
  }, BACKGROUND_COMMIT_INTERVAL_MS);

  let stopping: Promise<void> | null = null;
  const controlServer = control;
  const servedPool = served;
  const liveHistory = history;
  return {
    pool,
    servers,
    control: controlServer,
    stop() {
      stopping ??= (async () => {
        clearInterval(timer);
        await Promise.all(servers.map((server) => server.close()));
        await controlServer.close();
        // Holds released and unfinished receives aborted, so the last commit keeps none of them.
        await liveHistory.close();
        // Closing connections may have released a volume whose delete was deferred; let it
        // finish so the final commit includes it and nothing touches the pool after close.
        await servedPool.settle();
        await committing;
        await pool.commit();
        await pool.close();
      })();
      return stopping;
    },
  };
}
