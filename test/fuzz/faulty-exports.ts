// Exports that misbehave the way an engine can: one whose operations sometimes fail with an
// operating error (or a plain Error) and sometimes answer late, so replies come back out of
// order; and one that cannot even be opened. The server must turn every such failure into a
// protocol answer and carry on.

import { CorruptBlockError, IoError, PoolFullError } from "../../src/errors.js";
import type { ExportCatalog, ExportListing } from "../../src/nbd/catalog.js";
import type { Extent, ReadRun, VolumeHandle } from "../../src/thin/api.js";
import type { MemoryCatalog } from "../support/memory-catalog.js";
import type { MemoryVolume } from "../support/memory-volume.js";

/** One call in this many fails. */
const FAILURE_PERIOD = 7;
/** One call in this many answers after a short timer instead of at once. */
const DELAY_PERIOD = 4;
const DELAY_MS_MAX = 3;

/** A memory volume whose calls fail or lag on a fixed rhythm (not at random: replays stay close). */
export class FlakyVolume implements VolumeHandle {
  private callCount = 0;

  constructor(private readonly inner: MemoryVolume) {}

  get name(): string {
    return this.inner.name;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  private async misbehave(): Promise<void> {
    const call = ++this.callCount;
    const mixed = Math.imul(call, 0x9e3779b1) >>> 0;
    if (mixed % DELAY_PERIOD === 0) await new Promise((resolve) => setTimeout(resolve, mixed % (DELAY_MS_MAX + 1)));
    if (mixed % FAILURE_PERIOD !== 0) return;
    switch ((mixed >>> 8) % 4) {
      case 0:
        throw new IoError("flaky volume", new Error("injected read error"));
      case 1:
        throw new PoolFullError(1, 1, 65536);
      case 2:
        throw new CorruptBlockError(7, "checksum", "injected corruption");
      default:
        // Not an operating error at all: the server must still answer (EIO), not crash.
        throw new Error("injected plain error");
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    await this.misbehave();
    return this.inner.read(offset, length);
  }
  async readRuns(offset: number, length: number): Promise<ReadRun[]> {
    await this.misbehave();
    return this.inner.readRuns(offset, length);
  }
  async write(offset: number, bytes: Uint8Array): Promise<void> {
    await this.misbehave();
    return this.inner.write(offset, bytes);
  }
  async discard(offset: number, length: number): Promise<void> {
    await this.misbehave();
    return this.inner.discard(offset, length);
  }
  async writeZeroes(offset: number, length: number, keepAllocated: boolean): Promise<void> {
    await this.misbehave();
    return this.inner.writeZeroes(offset, length, keepAllocated);
  }
  async extents(offset: number, length: number): Promise<Extent[]> {
    await this.misbehave();
    return this.inner.extents(offset, length);
  }
}

/**
 * The memory catalog plus exports it cannot hold: flaky ones, and broken ones that are
 * listed but whose open fails with an operating error.
 */
export class FuzzCatalog implements ExportCatalog {
  private readonly flaky = new Map<string, FlakyVolume>();
  private readonly broken = new Set<string>();

  constructor(readonly inner: MemoryCatalog) {}

  addFlaky(volume: FlakyVolume): void {
    this.flaky.set(volume.name, volume);
  }

  addBroken(name: string): void {
    this.broken.add(name);
  }

  list(): ExportListing[] {
    const extra = [...this.flaky.keys(), ...this.broken].map((name) => ({ name, description: "" }));
    return [...this.inner.list(), ...extra];
  }

  open(name: string): VolumeHandle | null {
    if (this.broken.has(name)) throw new CorruptBlockError(3, "checksum", `export '${name}' is broken on purpose`);
    return this.flaky.get(name) ?? this.inner.open(name);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  /** Counted by the memory catalog for every export, so the fuzzer can check each attach has its detach. */
  attach(name: string): void {
    this.inner.attach(name);
  }

  detach(name: string): void {
    this.inner.detach(name);
  }
}
