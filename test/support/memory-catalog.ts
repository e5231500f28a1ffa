// An ExportCatalog over memory volumes, recording flushes and attachments for tests.

import { VolumeBusyError } from "../../src/errors.js";
import type { ExportCatalog, ExportListing } from "../../src/nbd/catalog.js";
import type { MemoryVolume } from "./memory-volume.js";

export class MemoryCatalog implements ExportCatalog {
  private readonly exports = new Map<string, { volume: MemoryVolume; description: string }>();
  flushCount = 0;
  /** Error the next flush fails with, once. */
  flushFailure: Error | null = null;
  /** Connections in transmission per export. */
  readonly attached = new Map<string, number>();
  attachCount = 0;
  detachCount = 0;
  /** Exports that refuse new clients, as a volume being deleted would. */
  readonly busy = new Set<string>();

  add(volume: MemoryVolume, description = ""): MemoryVolume {
    this.exports.set(volume.name, { volume, description });
    return volume;
  }

  list(): ExportListing[] {
    return [...this.exports.entries()].map(([name, entry]) => ({ name, description: entry.description }));
  }

  open(name: string): MemoryVolume | null {
    return this.exports.get(name)?.volume ?? null;
  }

  async flush(): Promise<void> {
    this.flushCount++;
    const failure = this.flushFailure;
    this.flushFailure = null;
    if (failure !== null) throw failure;
  }

  attach(name: string): void {
    if (this.busy.has(name)) throw new VolumeBusyError(name, "it is being deleted");
    this.attachCount++;
    this.attached.set(name, (this.attached.get(name) ?? 0) + 1);
  }

  detach(name: string): void {
    this.detachCount++;
    const count = this.attached.get(name) ?? 0;
    if (count <= 0) throw new Error(`detach of '${name}' without attach`);
    if (count === 1) this.attached.delete(name);
    else this.attached.set(name, count - 1);
  }
}
