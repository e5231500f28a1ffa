// The process-level half of the oracle: no uncaught exception or unhandled rejection (the
// server leaves a failed assertion unhandled on purpose, so that is how a server bug shows),
// and RSS growth over the run below a fixed bound.

const MiB = 1024 * 1024;
/** RSS growth allowed over a run when a full GC can be forced before measuring. */
export const RSS_GROWTH_MAX_BYTES = 200 * MiB;
/** Without --expose-gc, garbage not yet collected counts too. */
export const RSS_GROWTH_MAX_NO_GC_BYTES = 400 * MiB;

export class CrashGuard {
  private readonly onError: (error: unknown) => void;

  constructor(report: (error: Error) => void) {
    this.onError = (error: unknown) => report(error instanceof Error ? error : new Error(String(error)));
    process.on("uncaughtException", this.onError);
    process.on("unhandledRejection", this.onError);
  }

  remove(): void {
    process.off("uncaughtException", this.onError);
    process.off("unhandledRejection", this.onError);
  }
}

type GlobalWithGc = typeof globalThis & { gc?: () => void };

export class MemoryMeter {
  private baseline = 0;
  private peak = 0;
  private readonly gc = (globalThis as GlobalWithGc).gc;

  private rss(): number {
    this.gc?.();
    return process.memoryUsage().rss;
  }

  start(): void {
    this.baseline = this.rss();
    this.peak = this.baseline;
    if (process.env.FUZZ_MEMORY_TRACE) console.log(`memory: baseline rss ${(this.baseline / 2 ** 20).toFixed(0)} MiB`);
  }

  sample(): void {
    if (this.baseline === 0) return;
    this.peak = Math.max(this.peak, this.rss());
    if (process.env.FUZZ_MEMORY_TRACE) {
      const usage = process.memoryUsage();
      const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
      console.log(
        `memory: rss ${mib(usage.rss)} heap ${mib(usage.heapUsed)}/${mib(usage.heapTotal)} external ${mib(usage.external)} arrayBuffers ${mib(usage.arrayBuffers)}`,
      );
    }
  }

  result(): { growthBytes: number; boundBytes: number; gcAvailable: boolean } {
    return {
      growthBytes: this.baseline === 0 ? 0 : this.peak - this.baseline,
      boundBytes: this.gc ? RSS_GROWTH_MAX_BYTES : RSS_GROWTH_MAX_NO_GC_BYTES,
      gcAvailable: this.gc !== undefined,
    };
  }
}
