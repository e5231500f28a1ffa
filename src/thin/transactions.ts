// The pool's metadata transaction, as a capability. The in-memory transaction (PoolMetadata)
// is reachable only as the argument of a section, and the section's kind says what it may
// do: `read` looks up, `reserve` looks up and takes free data blocks, `change` changes trees.
// Sections run one at a time; data reads and writes run concurrently around them.
//
// A `change` that fails part-way (an I/O error, a corrupt block met in the middle of a tree
// change) leaves the in-memory transaction untrustworthy: it is dropped, and the next
// section reloads the last commit, as a restart would. Reservations made before such a
// rollback belong to the dropped transaction; `settle` and `abandon` are the one place that
// knows it.

import { IoError, PoolFullError, ReadOnlyError, ThinpError, type ErrorCode } from "../errors.js";
import { assert } from "../io/assert.js";
import type { StorageFile } from "../io/storage-file.js";
import { DATA_BLOCK_BYTES } from "./limits.js";
import { Mutex } from "./locks.js";
import { PoolMetadata } from "./pool-metadata.js";
import { SpaceReclaim } from "./space-reclaim.js";
import { silentObserver, type PoolObserver } from "./pool-observer.js";

export interface TransactionSettings {
  /** Names the metadata file in errors, and reopens it after a rollback. */
  metaPath: string;
  readOnly: boolean;
  /** For tests: a tiny metadata cache makes tree operations read (and fail) from the file. */
  cacheBlocks?: number;
  /** Runs after each commit is durable, before the blocks it freed become allocatable. */
  afterCommit?: (metadata: PoolMetadata) => Promise<void>;
  /** Facts an operator should hear that fail nothing (the data file cannot punch holes). */
  warn?: (message: string) => void;
  /** What a write that needs a new block does when the pool is full (see FullPoolPolicy). */
  whenFull?: FullPoolPolicy;
}

/**
 * `error`: ENOSPC at once. `queue`: wait up to `timeoutMs` for space to be made (a resize,
 * a delete, a discard) and go on, else ENOSPC; as dm-thin's queue_if_no_space with its
 * no_space_timeout. Only writes that need a new block wait.
 */
export type FullPoolPolicy = { mode: "error" } | { mode: "queue"; timeoutMs: number };

/** Writes waiting for space at once, at most; more fail at once. Their data is the NBD server's, already bounded. */
export const SPACE_WAITERS_MAX = 4096;

/** Data blocks taken from the free space by one `reserve` section, until mapped or given back. */
export interface Reservation {
  readonly dataBlocks: readonly number[];
  /** The transaction they were taken in; a rollback since then took them back. */
  readonly generation: number;
}

type SectionKind = "read" | "reserve" | "change" | "commit";

export class PoolTransactions {
  private readonly mutex = new Mutex();
  /** Writes held while the pool is full (queue mode), each resolved when space may have come. */
  private readonly waitingForSpace = new Set<(made: boolean) => void>();
  /** A hold for space has been logged and has not ended. */
  private holdingForSpace = false;
  /** Reads between their lookup and the end of their data read (see commit). */
  private readonly readsInFlight = new Set<Promise<unknown>>();
  private failure: Error | null = null;
  /** A `change` section is running, and may be part-way through changing a tree. */
  private changing = false;
  /** Counts rollbacks: a reservation from an earlier generation was taken back by one. */
  private generation = 0;
  /** Data written in place since the last commit, which only a sync makes durable. */
  private dataWrittenSinceCommit = false;
  private closing = false;
  private closed = false;
  /** Told of commits and copies on write; see Pool.observe. */
  observer: PoolObserver = silentObserver;

  /** Gives freed data blocks back to the file system after each commit. */
  readonly reclaim: SpaceReclaim;

  constructor(
    private metadata: PoolMetadata,
    readonly dataFile: StorageFile,
    private readonly settings: TransactionSettings,
  ) {
    this.reclaim = new SpaceReclaim(dataFile, settings.warn ?? (() => undefined));
  }

  get metaPath(): string {
    return this.settings.metaPath;
  }

  get readOnly(): boolean {
    return this.settings.readOnly;
  }

  /** A section that only looks things up. */
  read<T>(section: (metadata: PoolMetadata) => Promise<T>): Promise<T> {
    return this.run("read", section);
  }

  /**
   * A lookup answered at once, outside the queue of sections, where that is safe: no section
   * is part-way through changing a tree (reads, reservations and commits leave every tree
   * whole, as do the gaps between sections) and no rollback is due. `look` must not await:
   * it answers from memory or returns null (a tree node not cached), and this returns null
   * too when it may not run now; the caller then looks up in a `read` section. Data reads
   * `look` starts must be registered with trackRead inside it, as in a section.
   */
  readNow<T>(look: (metadata: PoolMetadata) => T | null): T | null {
    if (this.changing || this.failure !== null || this.closing) return null;
    return look(this.metadata);
  }

  /**
   * A section that looks up and takes free data blocks with `allocate`. Nothing else in the
   * metadata changes, so a failure leaves the transaction sound once the blocks taken are
   * given back, which this does. The blocks are then the caller's, to `settle` or `abandon`.
   */
  async reserve<T>(
    section: (metadata: PoolMetadata, allocate: () => Promise<number>) => Promise<T>,
  ): Promise<{ value: T; reservation: Reservation }> {
    const policy = this.settings.whenFull ?? { mode: "error" };
    const deadline = policy.mode === "queue" ? Date.now() + policy.timeoutMs : 0;
    for (;;) {
      try {
        return await this.reserveOnce(section);
      } catch (error) {
        // The section gave back what it took; it is run again, whole, once space may be there.
        if (!(error instanceof PoolFullError) || policy.mode !== "queue" || !(await this.waitForSpace(deadline))) throw error;
      }
    }
  }

  /** Writes waiting for space now (a gauge for metrics). */
  get spaceWaiters(): number {
    return this.waitingForSpace.size;
  }

  /** True when something may have made space before `deadline`; false at the deadline or when too many wait. */
  private waitForSpace(deadline: number): Promise<boolean> {
    const left = deadline - Date.now();
    if (left <= 0 || this.waitingForSpace.size >= SPACE_WAITERS_MAX || this.closing) return Promise.resolve(false);
    if (this.waitingForSpace.size === 0 && !this.holdingForSpace) {
      this.holdingForSpace = true;
      this.settings.warn?.(
        `the pool is full: holding writes that need a new block for up to ${Math.round(left / 1000)} s while space is made ` +
          `('thinp resize-pool', 'thinp delete', a discard); they fail with ENOSPC after that`,
      );
    }
    return new Promise<boolean>((resolve) => {
      const waiter = (made: boolean) => {
        clearTimeout(timer);
        this.waitingForSpace.delete(waiter);
        resolve(made);
      };
      const timer = setTimeout(() => waiter(false), left);
      this.waitingForSpace.add(waiter);
    });
  }

  /** After anything that may have made space: a change (a resize, a delete, a discard) or a commit that released frees. */
  private spaceMayHaveChanged(): void {
    for (const waiter of [...this.waitingForSpace]) waiter(true);
    // Said again at the next hold; those woken now and still short wait on within this one.
    if (this.waitingForSpace.size === 0) queueMicrotask(() => (this.holdingForSpace = this.waitingForSpace.size > 0));
  }

  private reserveOnce<T>(
    section: (metadata: PoolMetadata, allocate: () => Promise<number>) => Promise<T>,
  ): Promise<{ value: T; reservation: Reservation }> {
    return this.run("reserve", async (metadata) => {
      const dataBlocks: number[] = [];
      const allocate = async () => {
        const block = await this.allocateDataBlock();
        dataBlocks.push(block);
        return block;
      };
      try {
        const value = await section(metadata, allocate);
        return { value, reservation: { dataBlocks, generation: this.generation } };
      } catch (error) {
        // Unless a commit inside failed and the transaction is already being dropped.
        if (this.failure === null) for (const block of dataBlocks) this.metadata.releaseDataBlock(block);
        throw error;
      }
    });
  }

  /**
   * Maps what a reservation took, in a `change` section. Fails with an I/O error if a
   * rollback has taken the reservation back since: the blocks it names may be anyone's now.
   */
  async settle(reservation: Reservation, section: (metadata: PoolMetadata) => Promise<void>): Promise<void> {
    if (reservation.dataBlocks.length === 0) return;
    await this.change(async (metadata) => {
      if (reservation.generation !== this.generation) {
        throw new IoError(this.metaPath, new Error("the pool rolled back to its last commit after an I/O error during this write"));
      }
      await section(metadata);
    });
  }

  /** Gives back a reservation's blocks, unused; a rollback since has done so already. */
  async abandon(reservation: Reservation): Promise<void> {
    if (reservation.dataBlocks.length === 0) return;
    await this.change(async (metadata) => {
      if (reservation.generation !== this.generation) return;
      for (const block of reservation.dataBlocks) metadata.releaseDataBlock(block);
    });
  }

  /**
   * A section that changes metadata. If it fails for any reason but a refusal checked before
   * anything changed, the transaction is dropped and the next section reloads the last
   * commit. Writes acknowledged since that commit and never flushed may be lost, as after a
   * crash; a client that flushes learns of it from the failed flush.
   */
  change<T>(section: (metadata: PoolMetadata) => Promise<T>): Promise<T> {
    const changed = this.run("change", section);
    if (this.waitingForSpace.size > 0) void changed.finally(() => this.spaceMayHaveChanged()).catch(() => undefined);
    return changed;
  }

  /**
   * The in-memory state as it stands, without waiting for the running section: for facts
   * kept in memory (volume records, counters), never for tree lookups, which need a section.
   * After close it shows the state as it was left.
   */
  inspect<T>(look: (metadata: PoolMetadata) => T): T {
    return look(this.metadata);
  }

  assertWritable(what: string): void {
    this.metadata.assertNotDegraded(what);
    if (this.readOnly) throw new ReadOnlyError(`${what} (opened read-only)`);
  }

  async commit(): Promise<void> {
    if (this.readOnly) return;
    await this.run("commit", () => this.commitLocked());
  }

  /** Something a commit would make durable: metadata changes or data written in place. */
  get hasUncommittedWork(): boolean {
    return this.dataWrittenSinceCommit || this.metadata.hasUncommittedChanges;
  }

  /**
   * Called as a data write starts and again once it has finished, so a commit that began
   * while it was in flight (and may have synced before its bytes arrived) leaves the flag
   * set for the next one.
   */
  noteDataWritten(): void {
    this.dataWrittenSinceCommit = true;
  }

  /** Registers a read of data blocks a section looked up, until it ends: a commit waits for it. */
  trackRead<T>(read: Promise<T>): Promise<T> {
    this.readsInFlight.add(read);
    const done = () => void this.readsInFlight.delete(read);
    read.then(done, done);
    return read;
  }

  /** Drops the uncommitted transaction, as a crash would, and closes both files. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Writes held for space fail now rather than hold the pool open.
    for (const waiter of [...this.waitingForSpace]) waiter(false);
    await this.mutex.run(async () => {
      this.closed = true;
      await Promise.allSettled([...this.readsInFlight]);
      await this.dataFile.close();
      // Closing the files drops their OS locks.
      await this.metadata.tm.file.close();
    });
  }

  private run<T>(kind: SectionKind, section: (metadata: PoolMetadata) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      assert(!this.closed, "pool used after close");
      if (this.failure) await this.rollBack();
      // A commit changes no tree a lookup walks: reads answered during its syncs are sound.
      if (kind === "change") this.changing = true;
      try {
        await this.metadata.tm.trimDirty();
        return await section(this.metadata);
      } catch (error) {
        if ((kind === "change" || kind === "commit") && !isRefusal(error)) this.failure = error as Error;
        throw error;
      } finally {
        this.changing = false;
      }
    });
  }

  /** Reloads the last commit after a failed transaction; throws while the fault persists. */
  private async rollBack(): Promise<void> {
    await Promise.allSettled([...this.readsInFlight]);
    const dropped = this.metadata;
    this.metadata = await PoolMetadata.open(dropped.tm.file, this.metaPath, this.settings.cacheBlocks);
    dropped.retire();
    this.failure = null;
    this.generation++;
    this.dataWrittenSinceCommit = false;
  }

  /** Inside a section: a free data block, committing first if frees are pending. */
  private async allocateDataBlock(): Promise<number> {
    let block = this.metadata.allocateDataBlock();
    if (block === null && this.metadata.dataRefs.allocatableCount < this.metadata.dataRefs.free) {
      await this.commitLocked();
      block = this.metadata.allocateDataBlock();
    }
    if (block === null) {
      throw new PoolFullError(this.metadata.dataRefs.used, this.metadata.dataRefs.blockCount, DATA_BLOCK_BYTES);
    }
    return block;
  }

  private async commitLocked(): Promise<void> {
    // Nothing changed and no write finished since the last commit: all of it is durable.
    if (!this.hasUncommittedWork) return;
    this.dataWrittenSinceCommit = false;
    const startedMs = performance.now();
    try {
      await this.metadata.commit(this.dataFile);
    } catch (error) {
      // After a failed sync the page cache may have dropped the writes it held: roll back to
      // the last commit rather than retry and report success over lost data.
      this.failure = error as Error;
      throw error;
    }
    await this.settings.afterCommit?.(this.metadata);
    this.observer.committed?.(performance.now() - startedMs);
    // A read that looked up a block before it was freed may still be reading it.
    await Promise.allSettled([...this.readsInFlight]);
    // Durable now, read by no one, and not allocatable until released: safe to give back.
    await this.reclaim.punch(this.metadata.freedDataBlocks());
    this.metadata.releaseDataFrees();
    this.spaceMayHaveChanged();
  }
}

/** Refusals are checked before anything changes, so they leave the transaction sound. */
const REFUSAL_CODES = new Set<ErrorCode>([
  "NO_SUCH_VOLUME",
  "VOLUME_EXISTS",
  "INVALID_NAME",
  "INVALID_SIZE",
  "SHRINK_BELOW_MAPPED",
  "POOL_FULL",
  "LIMIT_EXCEEDED",
  "OUT_OF_RANGE",
  "READ_ONLY",
  "VOLUME_BUSY",
]);

function isRefusal(error: unknown): boolean {
  return error instanceof ThinpError && REFUSAL_CODES.has(error.code);
}
