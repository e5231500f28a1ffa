// Child process for `npm run bench:nbd`: prepares one pool (creates it, or deletes and adds
// volumes and snapshots in an existing one), commits, then serves it with the same pool service
// `thinp serve` runs. Independent of the CLI so the bench measures the engine and the NBD
// layer only. Prints "ready" once listening; stops (draining and committing, as `serve`
// does on SIGTERM) when signalled or when the parent's IPC channel closes, so a dying
// bench never leaves a server behind.

import { startPoolService } from "../../src/control/pool-service.js";
import { assert } from "../../src/io/assert.js";
import { Pool } from "../../src/thin/pool.js";
import { stopOnSignal } from "./stop-on-signal.js";

export interface ThinpServerSetup {
  dataPath: string;
  metaPath: string;
  /** Creates the pool with this size; absent, the pool already exists. */
  createPoolBytes?: number;
  /** Deleted first, then the volumes created, then the snapshots taken. */
  deleteVolumes?: string[];
  volumes: { name: string; sizeBytes: number }[];
  snapshots: { origin: string; name: string }[];
  port: number;
}

async function prepare(setup: ThinpServerSetup): Promise<void> {
  const pool =
    setup.createPoolBytes === undefined
      ? await Pool.open(setup.metaPath)
      : await Pool.create(setup.dataPath, setup.metaPath, { sizeBytes: setup.createPoolBytes });
  try {
    for (const name of setup.deleteVolumes ?? []) await pool.deleteVolume(name);
    for (const volume of setup.volumes) await pool.createVolume(volume.name, volume.sizeBytes);
    for (const snapshot of setup.snapshots) await pool.snapshot(snapshot.origin, snapshot.name);
    await pool.commit();
  } finally {
    await pool.close();
  }
}

async function main(): Promise<void> {
  const argument = process.argv[2];
  assert(argument !== undefined, "thinp-server takes its setup as one JSON argument");
  const setup = JSON.parse(argument) as ThinpServerSetup;
  await prepare(setup);
  const service = await startPoolService({
    metaPath: setup.metaPath,
    listen: { host: "127.0.0.1", port: setup.port },
    log: (message) => process.stderr.write(`thinp: ${message}\n`),
  });

  stopOnSignal(service);
  process.stdout.write("ready\n");
}

await main();
