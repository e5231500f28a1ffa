// Growing the data file by itself when it fills, as LVM's thin_pool_autoextend_threshold and
// _percent do: once data use reaches `atPercent`, the pool grows by `byPercent` of its size,
// never past `maxBytes` nor past what the file system holding the data file has free (a
// sparse file can outgrow its file system; growing it there would only move the failure).
// Each growth is logged.

import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { formatSize } from "../io/byte-units.js";
import { DATA_BLOCK_BYTES } from "../thin/limits.js";
import type { Pool } from "../thin/pool.js";
import { dataUsePercent } from "../thin/space-warning.js";

export interface AutoextendPolicy {
  atPercent: number;
  byPercent: number;
  maxBytes: number;
}

export class Autoextend {
  private growing: Promise<void> | null = null;
  /** The last refusal logged, so a pool stuck at its maximum is not logged every second. */
  private lastRefusal = "";

  constructor(
    private readonly pool: Pool,
    private readonly policy: AutoextendPolicy,
    private readonly log: (message: string) => void,
  ) {}

  /** Looks at data use and grows the pool if it has reached the threshold; one growth at a time. */
  check(): Promise<void> {
    this.growing ??= this.growIfNeeded().finally(() => (this.growing = null));
    return this.growing;
  }

  private async growIfNeeded(): Promise<void> {
    const status = this.pool.status();
    const percent = dataUsePercent(status);
    if (percent === null || percent < this.policy.atPercent || this.pool.readOnly) return;
    const current = status.dataBlocksTotal * DATA_BLOCK_BYTES;
    const wanted = current + Math.max(DATA_BLOCK_BYTES, (current * this.policy.byPercent) / 100);
    const free = await this.freeBytes();
    // What the data file takes on disk may grow by its new blocks: all of them, at worst.
    const limit = Math.min(this.policy.maxBytes, current + free);
    const target = Math.floor(Math.min(wanted, limit) / DATA_BLOCK_BYTES) * DATA_BLOCK_BYTES;
    if (target <= current) {
      const why =
        current >= this.policy.maxBytes
          ? `it is at its --autoextend-max of ${formatSize(this.policy.maxBytes)}`
          : `the file system holding ${this.pool.dataPath} has ${formatSize(free)} free`;
      const refusal = `warning: pool data space is ${percent.toFixed(1)}% used and cannot grow by itself: ${why}`;
      if (refusal !== this.lastRefusal) this.log(refusal);
      this.lastRefusal = refusal;
      return;
    }
    await this.pool.resize(target);
    await this.pool.commit();
    this.lastRefusal = "";
    this.log(`grew the pool's data file from ${formatSize(current)} to ${formatSize(target)}: data use had reached ${percent.toFixed(1)}%`);
  }

  private async freeBytes(): Promise<number> {
    try {
      const stats = await statfs(dirname(this.pool.dataPath));
      return stats.bavail * stats.bsize;
    } catch {
      return Number.MAX_SAFE_INTEGER;
    }
  }
}
