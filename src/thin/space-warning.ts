import type { PoolStatus } from "./api.js";

/** dm-thin users lose pools that fill up unnoticed: warn well before the last block goes. */
export const DATA_USE_WARNING_PERCENT_DEFAULT = 80;

/** Null when the data space map cannot be read, so use is unknown. */
export function dataUsePercent(status: PoolStatus): number | null {
  if (status.dataBlocksUsed === null) return null;
  return status.dataBlocksTotal === 0 ? 0 : (100 * status.dataBlocksUsed) / status.dataBlocksTotal;
}

/** A warning when data use has reached `thresholdPercent`, else null (also when use is unknown). */
export function dataUseWarning(status: PoolStatus, thresholdPercent = DATA_USE_WARNING_PERCENT_DEFAULT): string | null {
  const percent = dataUsePercent(status);
  if (percent === null || status.dataBlocksUsed === null || percent < thresholdPercent) return null;
  const free = status.dataBlocksTotal - status.dataBlocksUsed;
  return (
    `pool data space is ${percent.toFixed(1)}% used (${status.dataBlocksUsed} of ${status.dataBlocksTotal} blocks, ${free} free): ` +
    `writes to new or shared blocks fail when it is full; delete volumes, discard data, or grow it with 'thinp resize-pool'`
  );
}

/** The steps at which a running server warns, as LVM's dmeventd does for thin pools. */
export const USE_WARNING_STEPS_PERCENT: readonly number[] = [80, 85, 90, 95];

/**
 * Follows one space map's use and says when it crosses a step upward: each crossing once,
 * and again only after use has fallen back below that step.
 */
export class UseSteps {
  /** The highest step reached when last looked at; -1: below every step. */
  private reached = -1;

  constructor(private readonly steps: readonly number[] = USE_WARNING_STEPS_PERCENT) {}

  /** The step crossed since the last call, or null (also when use is unknown). */
  crossed(percent: number | null): number | null {
    if (percent === null) return null;
    let highest = -1;
    for (const [index, step] of this.steps.entries()) if (percent >= step) highest = index;
    const before = this.reached;
    this.reached = highest;
    return highest > before ? this.steps[highest]! : null;
  }
}

/** Metadata blocks in use, as a percentage; null when unknown. */
export function metadataUsePercent(status: PoolStatus): number | null {
  if (status.metadataBlocksUsed === null) return null;
  return status.metadataBlocksTotal === 0 ? 0 : (100 * status.metadataBlocksUsed) / status.metadataBlocksTotal;
}

/** The line a server logs when metadata use crosses a step. */
export function metadataUseWarning(status: PoolStatus): string | null {
  const percent = metadataUsePercent(status);
  if (percent === null || status.metadataBlocksUsed === null) return null;
  return (
    `pool metadata space is ${percent.toFixed(1)}% used (${status.metadataBlocksUsed} of ${status.metadataBlocksTotal} blocks): ` +
    `the metadata file grows by itself while its file system has room; make room there before it is full`
  );
}
