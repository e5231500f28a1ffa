// What an NBD conformance scenario runs against: the memory fake, or the real engine as
// `thinp serve` wires it (Pool behind ServedPool). Scenarios see only the catalog and
// VolumeHandles, so every client is checked against both.

import { join } from "node:path";
import { ServedPool } from "../../src/control/served-pool.js";
import type { ExportCatalog, ExportListing } from "../../src/nbd/catalog.js";
import type { VolumeHandle } from "../../src/thin/api.js";
import { Pool } from "../../src/thin/pool.js";
import { MemoryCatalog } from "./memory-catalog.js";
import { MemoryVolume } from "./memory-volume.js";

/** Wraps a catalog to count what the server asks of it. */
export class CountingCatalog implements ExportCatalog {
  flushes = 0;
  attaches = 0;
  detaches = 0;
  constructor(private readonly inner: ExportCatalog) {}
  list(): ExportListing[] | Promise<ExportListing[]> {
    return this.inner.list();
  }
  open(name: string): VolumeHandle | null | Promise<VolumeHandle | null> {
    return this.inner.open(name);
  }
  async flush(): Promise<void> {
    this.flushes++;
    await this.inner.flush();
  }
  attach(name: string, handle: VolumeHandle): void {
    this.inner.attach?.(name, handle);
    this.attaches++;
  }
  detach(name: string, handle: VolumeHandle): void {
    this.detaches++;
    this.inner.detach?.(name, handle);
  }
}

export interface ExportBackend {
  readonly catalog: CountingCatalog;
  createVolume(name: string, sizeBytes: number): Promise<void>;
  /** A read-only export holding `origin`'s current contents. */
  createReadOnlyCopy(origin: string, name: string): Promise<void>;
  close(): Promise<void>;
}

class MemoryBackend implements ExportBackend {
  private readonly memory = new MemoryCatalog();
  readonly catalog = new CountingCatalog(this.memory);

  async createVolume(name: string, sizeBytes: number): Promise<void> {
    this.memory.add(new MemoryVolume(name, sizeBytes), `memory volume ${name}`);
  }

  async createReadOnlyCopy(origin: string, name: string): Promise<void> {
    this.memory.add(MemoryVolume.copyOf(this.memory.open(origin)!, name, true), `copy of ${origin}`);
  }

  async close(): Promise<void> {}
}

class PoolBackend implements ExportBackend {
  private constructor(
    private readonly pool: Pool,
    private readonly served: ServedPool,
    readonly catalog: CountingCatalog,
  ) {}

  static async create(directory: string, poolBytes: number): Promise<PoolBackend> {
    const pool = await Pool.create(join(directory, "data.img"), join(directory, "meta.img"), { sizeBytes: poolBytes });
    const served = await ServedPool.start(pool);
    return new PoolBackend(pool, served, new CountingCatalog(served));
  }

  async createVolume(name: string, sizeBytes: number): Promise<void> {
    await this.served.createVolume(name, sizeBytes);
  }

  async createReadOnlyCopy(origin: string, name: string): Promise<void> {
    await this.served.snapshot(origin, name, { readOnly: true });
  }

  async close(): Promise<void> {
    await this.served.settle();
    await this.pool.commit();
    await this.pool.close();
  }
}

export type BackendKind = "memory" | "pool";

export async function createBackend(kind: BackendKind, directory: string): Promise<ExportBackend> {
  return kind === "memory" ? new MemoryBackend() : PoolBackend.create(directory, 512 * 1024 * 1024);
}
