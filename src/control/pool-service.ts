// `thinp serve`: one process owns the pool and serves every volume over NBD, takes
// management requests on the control socket, and commits in the background.

import { assert } from "../io/assert.js";
import { Pool } from "../thin/pool.js";
import type { FullPoolPolicy } from "../thin/transactions.js";
import { UseSteps, dataUsePercent, dataUseWarning, metadataUsePercent, metadataUseWarning } from "../thin/space-warning.js";
import { NBD_DEFAULT_PORT, startNbdServer, type NbdServer } from "../nbd/index.js";
import type { NbdLog } from "../nbd/nbd-log.js";
import type { NbdTlsOptions } from "../nbd/tls.js";
import { controlSocketPath } from "./control-protocol.js";
import { startControlServer, type ControlServer } from "./control-server.js";
import { BACKGROUND_COMMIT_INTERVAL_MS } from "./limits.js";
import { LiveHistory } from "./live-history.js";
import { Autoextend, type AutoextendPolicy } from "./autoextend.js";
import { startMetricsServer, type MetricsServer } from "./metrics-server.js";
import { PoolMetrics } from "./pool-metrics.js";
import { ServedPool } from "./served-pool.js";

// Its home is limits.ts; the name stays here for the modules that import it from here.
export { BACKGROUND_COMMIT_INTERVAL_MS };

export interface PoolServiceOptions {
  metaPath: string;
  /** TCP address; used when given, or when no socket path is given. */
  listen?: { host: string; port: number };
  socketPath?: string;
  /**
   * Listening sockets passed in (systemd's socket activation): one NBD server on each, and
   * then neither `listen` nor `socketPath`.
   */
  listenFds?: readonly number[];
  readOnly?: boolean;
  /** What writes that need a new block do when the pool is full. */
  whenFull?: FullPoolPolicy;
  /** Grow the data file by itself as it fills. */
  autoextend?: AutoextendPolicy;
  /** With readOnly: why, and how to serve the pool so that it takes changes; management refusals say it. */
  readOnlyReason?: string;
  log: (message: string) => void;
  nbdLog?: NbdLog;
  /** HTTP address for Prometheus metrics at /metrics; none when absent. */
  metrics?: { host: string; port: number };
  /** STARTTLS on every NBD listener; none when absent. */
  tls?: NbdTlsOptions;
}

export interface PoolService {
  readonly pool: Pool;
  readonly servers: NbdServer[];
  readonly control: ControlServer;
  /** The Prometheus listener, when options.metrics asked for one. */
  readonly metrics: MetricsServer | null;
  /** Stops accepting, drains in-flight requests, commits and releases the pool. */
  stop(): Promise<void>;
}

export async function startPoolService(options: PoolServiceOptions): Promise<PoolService> {
  const pool = await Pool.open(options.metaPath, {
    readOnly: options.readOnly,
    whenFull: options.whenFull,
    warn: (message) => options.log(`warning: ${message}`),
  });
  const servers: NbdServer[] = [];
  let metricsServer: MetricsServer | null = null;
  let control: ControlServer;
  let served: ServedPool;
  let history: LiveHistory;
  try {
    served = await ServedPool.start(pool, options.log, options.readOnlyReason);
    const exports = served;
    history = await LiveHistory.start(pool, () => exports.refresh(), options.log);
    // Without a listener nothing is counted: the data path pays nothing for metrics no one reads.
    const metrics = options.metrics
      ? new PoolMetrics(
          () => pool.status(),
          () => pool.transactions.spaceWaiters,
        )
      : null;
    if (metrics) pool.observe(metrics.poolObserver);
    const common = { catalog: served, readOnly: options.readOnly, log: options.nbdLog, observer: metrics?.nbdObserver, tls: options.tls };
    if (options.listenFds !== undefined) {
      assert(options.listenFds.length > 0 && !options.listen && !options.socketPath, "activated sockets replace every other listener");
      for (const fd of options.listenFds) servers.push(await startNbdServer({ ...common, fd }));
    } else {
      if (options.listen || !options.socketPath) {
        servers.push(await startNbdServer({ ...common, listen: options.listen ?? { host: "127.0.0.1", port: NBD_DEFAULT_PORT } }));
      }
      if (options.socketPath) servers.push(await startNbdServer({ ...common, socketPath: options.socketPath }));
    }
    // Before the control socket, which the catch below does not close.
    if (metrics && options.metrics) metricsServer = await startMetricsServer(options.metrics, metrics.registry);
    control = await startControlServer(
      controlSocketPath(options.metaPath),
      served,
      options.log,
      servers.map((server) => server.address),
      undefined,
      () => history.connect(),
    );
  } catch (error) {
    await Promise.allSettled([...servers.map((server) => server.close()), metricsServer?.close()]);
    await pool.close();
    throw error;
  }

  // Served anyway, read-only: the volumes can still be copied off before or instead of a repair.
  const damage = pool.degraded;
  if (damage) options.log(`warning: ${damage.message}; serving every volume read-only`);

  // Logged when use crosses 80, 85, 90 and 95 % (LVM's steps), each once per crossing, for
  // data and metadata both.
  const dataSteps = new UseSteps();
  const metadataSteps = new UseSteps();
  const autoextend = options.autoextend === undefined ? null : new Autoextend(pool, options.autoextend, options.log);
  const watchDataUse = () => {
    void autoextend?.check().catch((error: Error) => options.log(`warning: the pool could not grow by itself: ${error.message}`));
    const status = pool.status();
    if (dataSteps.crossed(dataUsePercent(status)) !== null) options.log(`warning: ${dataUseWarning(status, 0)}`);
    if (metadataSteps.crossed(metadataUsePercent(status)) !== null) options.log(`warning: ${metadataUseWarning(status)}`);
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
  const metricsListener = metricsServer;
  return {
    pool,
    servers,
    control: controlServer,
    metrics: metricsListener,
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
        // Last, so a scrape during the stop still answers; never after close, when the pool has no status.
        await metricsListener?.close();
        await pool.close();
      })();
      return stopping;
    },
  };
}
