// Child process for bench/memory/connection-memory.ts: creates a sparse pool with one
// volume, then serves it with the same pool service `thinp serve` runs, default limits and
// all. Talks to its parent over IPC: "ready" once listening, then every 100 ms a report of
// the NBD server's in-flight budget and process.memoryUsage(), so the parent can set the
// server's own counts beside the RSS it samples. Stops (draining and committing) on SIGTERM or when the parent's IPC
// channel closes, so a dying bench never leaves a server behind.
//
// With `thinpDist`, the pool service is taken from another build of thinp (an older
// commit's dist/, say) for comparison; such a build may have no budget to report.

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { assert } from "../../src/io/assert.js";
import type { PoolService, PoolServiceOptions } from "../../src/control/pool-service.js";
import type { Pool } from "../../src/thin/pool.js";
import { stopOnSignal } from "../nbd/stop-on-signal.js";

/** How often the server sends its parent a report. */
const REPORT_INTERVAL_MS = 100;

export interface BudgetServerSetup {
  dataPath: string;
  metaPath: string;
  poolBytes: number;
  volumeName: string;
  volumeBytes: number;
  port: number;
  /** A thinp build's dist/ directory to serve with instead of this one. */
  thinpDist?: string;
}

/** What NbdServer.inflight says; null from a build that has no budget. */
export interface InflightReport {
  capacityBytes: number;
  inUseBytes: number;
  peakBytes: number;
  waitedCount: number;
}

export type BudgetServerMessage =
  { kind: "ready"; pid: number } | { kind: "report"; inflight: InflightReport | null; memory: NodeJS.MemoryUsage };

interface ThinpModules {
  startPoolService: (options: PoolServiceOptions) => Promise<PoolService>;
  Pool: typeof Pool;
}

async function loadThinp(dist: string | undefined): Promise<ThinpModules> {
  if (dist === undefined) {
    const [service, pool] = await Promise.all([import("../../src/control/pool-service.js"), import("../../src/thin/pool.js")]);
    return { startPoolService: service.startPoolService, Pool: pool.Pool };
  }
  const from = (path: string) => pathToFileURL(resolve(dist, path)).href;
  const [service, pool] = (await Promise.all([import(from("src/control/pool-service.js")), import(from("src/thin/pool.js"))])) as [
    { startPoolService: ThinpModules["startPoolService"] },
    { Pool: ThinpModules["Pool"] },
  ];
  return { startPoolService: service.startPoolService, Pool: pool.Pool };
}

function send(message: BudgetServerMessage): void {
  // Once the parent has gone the server is stopping; a report then has nobody to go to.
  if (process.connected) process.send?.(message);
}

async function main(): Promise<void> {
  const argument = process.argv[2];
  assert(argument !== undefined && process.send !== undefined, "budget-server takes its setup as one JSON argument and an IPC channel");
  const setup = JSON.parse(argument) as BudgetServerSetup;
  const thinp = await loadThinp(setup.thinpDist);
  const pool = await thinp.Pool.create(setup.dataPath, setup.metaPath, { sizeBytes: setup.poolBytes });
  try {
    await pool.createVolume(setup.volumeName, setup.volumeBytes);
    await pool.commit();
  } finally {
    await pool.close();
  }
  const service = await thinp.startPoolService({
    metaPath: setup.metaPath,
    listen: { host: "127.0.0.1", port: setup.port },
    log: (message) => process.stderr.write(`thinp: ${message}\n`),
  });

  // Read loosely: an older build's server has no such property.
  const server = service.servers[0] as { inflight?: InflightReport } | undefined;
  const report = () => send({ kind: "report", inflight: server?.inflight ?? null, memory: process.memoryUsage() });
  setInterval(report, REPORT_INTERVAL_MS).unref();
  stopOnSignal(service);
  send({ kind: "ready", pid: process.pid });
}

await main();
