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
