// One fuzz case: everything a user can do with a pool's metadata without changing it (open,
// list, read, map extents, check, repair), each held to the reader's contract. Returns the
// violations found; an empty list is a pass.

import { ThinpError } from "../../src/errors.js";
import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import type { Extent, VolumeInfo } from "../../src/thin/api.js";
import { checkMetadataFile, type CheckReport } from "../../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../../src/thin/limits.js";
import { Pool } from "../../src/thin/pool.js";
import { repairMetadataFile, type RepairReport } from "../../src/thin/repair.js";
import type { SeededRandom } from "../support/random.js";
import type { CorruptionFamily } from "./corruptions.js";
import type { FuzzPool } from "./fuzz-pools.js";

/** Volumes up to this size are read whole; larger ones in windows. */
const WHOLE_READ_BYTES_MAX = 1 << 20;
const READ_WINDOWS_PER_VOLUME = 6;
const READ_WINDOW_BLOCKS_MAX = 3;
/** A re-sealed record can claim any size: a repaired volume is mapped and read only this far. */
const VERIFY_SPAN_BYTES_MAX = 64 << 20;

export interface CaseOptions {
  family: CorruptionFamily;
  repair: boolean;
}

export async function exerciseCase(
  file: MemoryStorageFile,
  fuzzPool: FuzzPool,
  random: SeededRandom,
  options: CaseOptions,
): Promise<string[]> {
  const run = new CaseRun(fuzzPool, random, options.family === "detectable");
  const check = await run.attempt("check", () => checkMetadataFile(file, "meta"));
  const readFailures = await run.readEverything(file);
  if (run.mustNotLie && check?.clean && readFailures.length > 0) {
    run.violation(`check found the metadata clean, yet ${readFailures[0]}`);
  }
  if (options.repair) await run.repairAndVerify(file, check);
  return run.violations;
}

class CaseRun {
  readonly violations: string[] = [];

  constructor(
    private readonly fuzzPool: FuzzPool,
    private readonly random: SeededRandom,
    /** Detectable damage: a successful read must return exactly the original. */
    readonly mustNotLie: boolean,
  ) {}

  violation(message: string): void {
    this.violations.push(message);
  }

  /** Runs `work`; a typed error is an allowed outcome (null), anything else a violation. */
  async attempt<T>(what: string, work: () => Promise<T>, failures?: string[]): Promise<T | null> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof ThinpError) failures?.push(`${what} failed: ${error.message}`);
      else this.violation(`${what} threw ${describeError(error)}`);
      return null;
    }
  }

  /** Opens, lists and reads every volume; returns the typed failures met. */
  async readEverything(file: MemoryStorageFile): Promise<string[]> {
    const failures: string[] = [];
    const pool = await this.attempt("open", () => Pool.openFiles(file, this.fuzzPool.data), failures);
    if (pool === null) return failures;
    try {
      const transactionId = pool.status().transactionId;
      const expected = this.fuzzPool.listings.get(transactionId);
      if (expected === undefined) {
        // A stale superblock (a lost write) opens an older commit: no listing to hold it to.
        if (this.mustNotLie) this.violation(`opened at transaction ${transactionId}, neither of the last two commits`);
        return failures;
      }
      const listing = await this.attempt("list", () => pool.listVolumes(), failures);
      if (listing !== null && this.mustNotLie && !sameListing(listing, expected)) {
        this.violation(`list returned ${JSON.stringify(listing)}, not the listing of transaction ${transactionId}`);
      }
      for (const info of expected) await this.readVolume(pool, info, failures);
    } finally {
      await pool.close();
    }
    return failures;
  }

  private async readVolume(pool: Pool, info: VolumeInfo, failures: string[]): Promise<void> {
    const expected = this.fuzzPool.volumes.get(info.name)!;
    const volume = await this.attempt(`opening volume ${info.name}`, () => pool.volume(info.name), failures);
    if (volume === null) return;
    const extents = await this.attempt(`extents of ${info.name}`, () => volume.extents(0, info.sizeBytes), failures);
    if (extents !== null && this.mustNotLie && JSON.stringify(extents) !== JSON.stringify(expected.extents)) {
      this.violation(`extents of ${info.name} are ${JSON.stringify(extents)}, not ${JSON.stringify(expected.extents)}`);
    }
    for (const [offset, length] of this.readWindows(info.sizeBytes)) {
      const bytes = await this.attempt(`read of ${info.name} at ${offset}+${length}`, () => volume.read(offset, length), failures);
      if (bytes !== null && this.mustNotLie && !bytes.equals(expected.bytes.subarray(offset, offset + length))) {
        this.violation(`read of ${info.name} at ${offset}+${length} returned bytes the volume never held`);
      }
    }
  }

  private readWindows(sizeBytes: number): [number, number][] {
    if (sizeBytes <= WHOLE_READ_BYTES_MAX) return [[0, sizeBytes]];
    const windows: [number, number][] = [];
    for (let i = 0; i < READ_WINDOWS_PER_VOLUME; i++) {
      const offset = this.random.below(sizeBytes);
      const length = Math.min(sizeBytes - offset, 1 + this.random.below(READ_WINDOW_BLOCKS_MAX * DATA_BLOCK_BYTES));
      windows.push([offset, length]);
    }
    return windows;
  }

  /**
   * Repair must fail typed or write a pool that opens and reads without any error; from
   * detectable damage, every volume it keeps is an original one, every block it still
   * maps holds the original bytes, and it counts every mapping as kept or lost.
   */
  async repairAndVerify(file: MemoryStorageFile, check: CheckReport | null): Promise<void> {
    const output = new MemoryStorageFile("repaired");
    const report = await this.attempt("repair", () => repairMetadataFile(file, "meta", output, "repaired", this.fuzzPool.data));
    if (report === null) return;
    let repaired: Pool;
    try {
      repaired = await Pool.openFiles(output, this.fuzzPool.data);
    } catch (error) {
      this.violation(`the repaired pool does not open: ${describeError(error)}`);
      return;
    }
    try {
      await this.verifyRepaired(repaired, report, check);
    } catch (error) {
      this.violation(`reading the repaired pool failed: ${describeError(error)}`);
    } finally {
      await repaired.close();
    }
  }

  private async verifyRepaired(repaired: Pool, report: RepairReport, check: CheckReport | null): Promise<void> {
    const listing = await repaired.listVolumes();
    const original = this.fuzzPool.listings.get(report.source.transactionId);
    if (this.mustNotLie && original === undefined) {
      this.violation(`repair read transaction ${report.source.transactionId}, neither of the last two commits`);
      return;
    }
    for (const info of listing) {
      const volume = await repaired.volume(info.name);
      const span = Math.min(info.sizeBytes, VERIFY_SPAN_BYTES_MAX);
      const extents = await volume.extents(0, span);
      const windows = this.readWindows(span);
      const reads = await Promise.all(windows.map(([offset, length]) => volume.read(offset, length)));
      if (!this.mustNotLie) continue;
      const expected = original!.find((candidate) => candidate.id === info.id);
      if (
        expected === undefined ||
        expected.name !== info.name ||
        expected.sizeBytes !== info.sizeBytes ||
        expected.readOnly !== info.readOnly
      ) {
        this.violation(`repair made volume ${JSON.stringify(info)}, which the pool never had`);
        continue;
      }
      const outcome = report.volumes.find((entry) => entry.id === info.id)!;
      if (outcome.mappingsKept !== info.mappedBlocks || outcome.mappingsKept + outcome.mappingsLost !== expected.mappedBlocks) {
        this.violation(
          `repair of ${info.name} reports ${outcome.mappingsKept} kept + ${outcome.mappingsLost} lost of ${expected.mappedBlocks}, and the pool maps ${info.mappedBlocks}`,
        );
      }
      const image = this.fuzzPool.volumes.get(info.name)!.bytes;
      windows.forEach(([offset, length], i) => {
        const wanted = salvagedImage(image, extents, offset, length);
        if (!reads[i]!.equals(wanted))
          this.violation(`repaired ${info.name} at ${offset}+${length} holds bytes that are neither the original nor zeros where unmapped`);
      });
    }
    if (this.mustNotLie && check?.clean && (report.lostData || !sameListing(listing, original!))) {
      this.violation(`check found the metadata clean, yet repair lost data or changed the listing: ${JSON.stringify(report.volumesLost)}`);
    }
  }
}

/** The original bytes of a window where the repaired volume maps a block, zeros elsewhere. */
function salvagedImage(image: Buffer, extents: Extent[], offset: number, length: number): Buffer {
  const wanted = Buffer.alloc(length);
  for (const extent of extents) {
    if (!extent.mapped) continue;
    const from = Math.max(offset, extent.offset);
    const to = Math.min(offset + length, extent.offset + extent.length);
    if (from < to) image.copy(wanted, from - offset, from, to);
  }
  return wanted;
}

function sameListing(actual: VolumeInfo[], expected: VolumeInfo[]): boolean {
  return JSON.stringify(actual) === JSON.stringify(expected);
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const frames = (error.stack ?? "")
    .split("\n")
    .slice(1, 5)
    .map((line) => line.trim());
  return `${error.name}: ${error.message} [${frames.join(" | ")}]`;
}
