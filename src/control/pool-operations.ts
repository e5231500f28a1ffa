import type { PoolStatus, VolumeInfo, VolumeUsage } from "../thin/api.js";

/** A resized volume's info, and how many NBD clients had it open when it shrank under them (0 when it did not). */
export interface ResizeResult extends VolumeInfo {
  shrunkUnderClients: number;
}

/**
 * The management operations the CLI performs, the same whether it opens the pool itself
 * or asks a running `thinp serve` over the control socket.
 */
export interface PoolOperations {
  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo>;
  snapshot(origin: string, name: string, options: { readOnly: boolean }): Promise<VolumeInfo>;
  /** With `defer`, a volume that clients have open is deleted when the last one leaves. */
  deleteVolume(name: string, options: { defer: boolean }): Promise<{ deferred: boolean }>;
  /** A shrink while NBD clients have the volume open is refused as busy unless `force`. */
  resizeVolume(name: string, sizeBytes: number, options: { force: boolean }): Promise<ResizeResult>;
  resizePool(sizeBytes: number): Promise<PoolStatus>;
  listVolumes(): Promise<VolumeInfo[]>;
  usage(name: string): Promise<VolumeUsage>;
  status(): Promise<PoolStatus>;
}
