import { IoError } from "../errors.js";
import type { StorageFile } from "./storage-file.js";

export type FaultKind = "EIO" | "ENOSPC";

/**
 * Decides which operation fails. Operations are counted across every file that shares
 * the plan, so a test can fail "the N-th I/O of the workload" for each N in turn.
 */
export class FaultPlan {
  private operationCount = 0;
  private failAt: number | null = null;
  private kind: FaultKind = "EIO";
  private failuresLeft = 0;
  injected = 0;

  get operations(): number {
    return this.operationCount;
  }

  /** The `operationIndex`-th operation from now on (0 = the next one) fails, `times` times in a row. */
  failOperation(operationIndex: number, kind: FaultKind, times = 1): void {
    this.failAt = this.operationCount + operationIndex;
    this.kind = kind;
    this.failuresLeft = times;
  }

  clear(): void {
    this.failAt = null;
    this.failuresLeft = 0;
  }

  /** Throws the planned fault if this operation is the one to fail. */
  check(path: string, what: string): void {
    const index = this.operationCount++;
    if (this.failAt === null || index < this.failAt || this.failuresLeft === 0) return;
    this.failuresLeft--;
    this.injected++;
    const error = Object.assign(new Error(`${this.kind}: injected fault in ${what}`), { code: this.kind });
    throw new IoError(path, error);
  }
}

/** A StorageFile whose reads, writes, syncs and truncates fail when the plan says so. */
export class FaultInjectingStorageFile implements StorageFile {
  constructor(
    private readonly inner: StorageFile,
    private readonly plan: FaultPlan,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  async read(buf: Buffer, position: number): Promise<void> {
    this.plan.check(this.path, "read");
    await this.inner.read(buf, position);
  }

  async write(buf: Uint8Array, position: number): Promise<void> {
    this.plan.check(this.path, "write");
    await this.inner.write(buf, position);
  }

  async sync(): Promise<void> {
    this.plan.check(this.path, "sync");
    await this.inner.sync();
  }

  byteLength(): Promise<number> {
    return this.inner.byteLength();
  }

  async truncate(byteLength: number): Promise<void> {
    this.plan.check(this.path, "truncate");
    await this.inner.truncate(byteLength);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
