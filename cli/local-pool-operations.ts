// PoolOperations on a pool this process has opened itself, for when no `thinp serve`
// owns it. The session around it (cli/pool-session.ts) opens, commits and closes;
// each operation here is the engine's, unchanged.

import type { PoolOperations, ResizeResult } from "../src/control/pool-operations.js";
import type { PoolStatus, VolumeInfo, VolumeUsage } from "../src/thin/api.js";
import type { Pool } from "../src/thin/pool.js";

export class LocalPoolOperations implements PoolOperations {
  constructor(protected readonly pool: Pool) {}

  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.pool.createVolume(name, sizeBytes);
  }

  snapshot(origin: string, name: string, options: { readOnly: boolean }): Promise<VolumeInfo> {
    return this.pool.snapshot(origin, name, options);
  }

  /** Nothing but this process has the pool open, so no client can hold the volume: never deferred. */
  async deleteVolume(name: string, _options: { defer: boolean }): Promise<{ deferred: boolean }> {
    await this.pool.deleteVolume(name);
    return { deferred: false };
  }

  /** As with delete, no client can hold the volume: nothing to force past. */
  async resizeVolume(name: string, sizeBytes: number, options: { force: boolean }): Promise<ResizeResult> {
    return { ...(await this.pool.resizeVolume(name, sizeBytes, options)), shrunkUnderClients: 0 };
  }

  resizePool(sizeBytes: number): Promise<PoolStatus> {
    return this.pool.resize(sizeBytes);
  }

  listVolumes(): Promise<VolumeInfo[]> {
    return this.pool.listVolumes();
  }

  usage(name: string): Promise<VolumeUsage> {
    return this.pool.usage(name);
  }

  status(): Promise<PoolStatus> {
    return this.pool.measuredStatus();
  }
}
