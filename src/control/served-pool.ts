// A pool while `thinp serve` owns it: the NBD server's catalog of exports and the
// operations the control socket performs, kept consistent with each other.

import { NoSuchVolumeError, ServedReadOnlyError, VolumeBusyError } from "../errors.js";
import type { ChangeTracker, ExportCatalog, ExportListing } from "../nbd/catalog.js";
import type { PoolStatus, VolumeHandle, VolumeInfo, VolumeUsage } from "../thin/api.js";
import type { Pool } from "../thin/pool.js";
import type { Volume } from "../thin/volume.js";
import type { PoolOperations, ResizeResult } from "./pool-operations.js";
import { volumeChanges } from "./volume-changes.js";

interface Export {
  volume: Volume;
  info: VolumeInfo;
  clients: number;
  deletePending: boolean;
}

export class ServedPool implements ExportCatalog, PoolOperations {
  private readonly exports = new Map<string, Export>();
  /** Deletes deferred until their last client left, still running; the service waits for them before its final commit. */
  private readonly deferredDeletes = new Set<Promise<void>>();

  private constructor(
    readonly pool: Pool,
    private readonly log: (message: string) => void,
    private readonly readOnlyReason: string,
  ) {}

  /** `readOnlyReason`: for a read-only pool, what a refused change tells the client (how the server was started). */
  static async start(
    pool: Pool,
    log: (message: string) => void = () => undefined,
    readOnlyReason = "the server opened it read-only",
  ): Promise<ServedPool> {
    const served = new ServedPool(pool, log, readOnlyReason);
    await served.refresh();
    return served;
  }

  /** Resolves when every deferred delete that has started has finished. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.deferredDeletes]);
  }

  // ---- ExportCatalog ---------------------------------------------------------------------

  list(): ExportListing[] {
    return [...this.exports.values()]
      .filter((entry) => !entry.deletePending)
      .map((entry) => ({ name: entry.info.name, description: describe(entry.info) }));
  }

  open(name: string): VolumeHandle | null {
    const entry = this.exports.get(name);
    return entry && !entry.deletePending ? entry.volume : null;
  }

  flush(): Promise<void> {
    return this.pool.commit();
  }

  attach(name: string): void {
    const entry = this.exports.get(name);
    if (!entry) return;
    entry.clients++;
    this.pool.openHandle(entry.volume.id);
  }

  detach(name: string): void {
    const entry = this.exports.get(name);
    if (!entry) return;
    entry.clients--;
    this.pool.closeHandle(entry.volume.id);
    if (entry.clients === 0 && entry.deletePending) {
      const deleting = this.deleteNow(name)
        .then(() => this.log(`deleted volume '${name}': its last NBD client disconnected`))
        .catch((error: unknown) => this.log(`deferred delete of '${name}' failed: ${(error as Error).message}`))
        .finally(() => this.deferredDeletes.delete(deleting));
      this.deferredDeletes.add(deleting);
    }
  }

  /** Every other volume of the pool: a diff compares any two, related or not. */
  comparisonBases(name: string): string[] {
    if (this.open(name) === null) return [];
    return this.list()
      .map((listing) => listing.name)
      .filter((other) => other !== name);
  }

  /**
   * Resolved now and followed by volume id, so a base deleted later (or replaced by a new
   * volume of its name) fails the client's BLOCK_STATUS with NO_SUCH_VOLUME rather than
   * answering for another volume.
   */
  async compare(name: string, baseName: string): Promise<ChangeTracker | null> {
    if (!this.comparisonBases(name).includes(baseName)) return null;
    let sides;
    try {
      sides = await this.pool.resolveDiff(baseName, name);
    } catch (error) {
      // Deleted while we looked it up: not offered.
      if (error instanceof NoSuchVolumeError) return null;
      throw error;
    }
    return volumeChanges(this.pool, sides);
  }

  // ---- PoolOperations --------------------------------------------------------------------

  async createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    this.assertWritable();
    const info = await this.pool.createVolume(name, sizeBytes);
    await this.pool.commit();
    await this.refresh();
    return info;
  }

  async snapshot(origin: string, name: string, options: { readOnly: boolean }): Promise<VolumeInfo> {
    this.assertWritable();
    const info = await this.pool.snapshot(origin, name, options);
    await this.pool.commit();
    await this.refresh();
    return info;
  }

  async deleteVolume(name: string, options: { defer: boolean }): Promise<{ deferred: boolean }> {
    this.assertWritable();
    const entry = this.exports.get(name);
    if (!entry || entry.deletePending) throw new NoSuchVolumeError(name);
    if (entry.clients > 0) {
      if (!options.defer) {
        throw new VolumeBusyError(
          name,
          `${entry.clients} NBD client${entry.clients === 1 ? " has" : "s have"} it open; disconnect ${entry.clients === 1 ? "it" : "them"} or use --defer`,
        );
      }
      entry.deletePending = true;
      return { deferred: true };
    }
    await this.deleteNow(name);
    return { deferred: false };
  }

  /**
   * A client keeps the size it was told at connection: after a shrink its requests past the
   * new end fail. So a shrink under clients is refused, as delete is, unless forced.
   */
  async resizeVolume(name: string, sizeBytes: number, options: { force: boolean }): Promise<ResizeResult> {
    this.assertWritable();
    const entry = this.exports.get(name);
    if (!entry || entry.deletePending) throw new NoSuchVolumeError(name);
    const clients = entry.clients;
    const shrinks = sizeBytes < entry.volume.sizeBytes;
    if (shrinks && clients > 0 && !options.force) {
      throw new VolumeBusyError(
        name,
        `${clients} NBD client${clients === 1 ? " has" : "s have"} it open and would see errors past the new end; ` +
          `disconnect ${clients === 1 ? "it" : "them"} or use --force`,
      );
    }
    const info = await this.pool.resizeVolume(name, sizeBytes, { force: options.force });
    await this.pool.commit();
    await this.refresh();
    return { ...info, shrunkUnderClients: shrinks ? clients : 0 };
  }

  async resizePool(sizeBytes: number): Promise<PoolStatus> {
    this.assertWritable();
    const status = await this.pool.resize(sizeBytes);
    await this.pool.commit();
    return status;
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    return (await this.pool.listVolumes()).filter((info) => !this.exports.get(info.name)?.deletePending);
  }

  usage(name: string): Promise<VolumeUsage> {
    return this.pool.usage(name);
  }

  async status(): Promise<PoolStatus> {
    // A volume whose delete is deferred is already gone from list and exports; count it gone here too.
    const pendingCount = [...this.exports.values()].filter((entry) => entry.deletePending).length;
    const status = await this.pool.measuredStatus();
    return { ...status, volumeCount: status.volumeCount - pendingCount };
  }

  /**
   * The pool would refuse too, in its own terms ("opened read-only"); the client did not
   * open it, so it is told how the server was started instead.
   */
  private assertWritable(): void {
    // A damaged space map is the graver reason, and the one with a way out: say it first.
    this.pool.transactions.inspect((metadata) => metadata.assertNotDegraded("the pool"));
    if (this.pool.readOnly) throw new ServedReadOnlyError(this.pool.metaPath, this.readOnlyReason);
  }

  private async deleteNow(name: string): Promise<void> {
    await this.pool.deleteVolume(name);
    await this.pool.commit();
    await this.refresh();
  }

  /** Brings the exports in line with the pool's volumes (after a live receive, too); open handles stay valid. */
  async refresh(): Promise<void> {
    const infos = await this.pool.listVolumes();
    const names = new Set(infos.map((info) => info.name));
    for (const [name, entry] of this.exports) {
      if (!names.has(name) && entry.clients === 0) this.exports.delete(name);
    }
    for (const info of infos) {
      const existing = this.exports.get(info.name);
      if (existing && existing.volume.id === info.id) existing.info = info;
      else this.exports.set(info.name, { volume: await this.pool.volume(info.name), info, clients: 0, deletePending: false });
    }
  }
}

function describe(info: VolumeInfo): string {
  const gib = (info.sizeBytes / 2 ** 30).toFixed(info.sizeBytes % 2 ** 30 === 0 ? 0 : 2);
  const origin = info.originName ? `, snapshot of ${info.originName}` : "";
  return `thin volume, ${gib} GiB${origin}${info.readOnly ? ", read-only" : ""}`;
}
