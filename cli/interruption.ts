// SIGINT and SIGTERM during import and export. Left to their default action they kill
// the process where it stands: an export leaves a file of the volume's full size that is
// mostly wrong, an import leaves its control socket behind. Caught, they stop the copy at
// its next step; the command undoes what it made, says so in one line, and exits with
// 128 + the signal's number, the status a shell gives a process the signal killed.

import { constants } from "node:os";
import { blockingOperationsInFlight } from "./blocking-operations.js";

const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];

/** Thrown out of the copy when a stop signal arrives; caught by runInterruptible, never shown as an error. */
export class InterruptedError extends Error {
  constructor(readonly signal: StopSignal) {
    super(`interrupted by ${signal}`);
  }
}

export class Interruption {
  private received: StopSignal | null = null;
  /** False once the command is finishing (committing, renaming into place): too late to stop. */
  private armed = true;
  private reject!: (error: InterruptedError) => void;
  private readonly interrupted: Promise<never>;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    // A second signal while the first is being handled changes nothing: clean-up is short.
    if (this.received !== null || !this.armed) return;
    this.received = signal as StopSignal;
    this.reject(new InterruptedError(this.received));
  };

  constructor() {
    this.interrupted = new Promise<never>((_resolve, reject) => (this.reject = reject));
    // Nobody may be racing it when the signal arrives; check() reports it then.
    this.interrupted.catch(() => undefined);
    for (const signal of STOP_SIGNALS) process.on(signal, this.onSignal);
  }

  /** Throws InterruptedError if a stop signal has arrived. */
  check(): void {
    if (this.received !== null) throw new InterruptedError(this.received);
  }

  /**
   * Settles as `step` does, unless a stop signal arrives first. For steps that can wait
   * without end (a pipe nobody writes to or reads from): the step is abandoned, and the
   * process exits soon after.
   */
  race<T>(step: Promise<T>): Promise<T> {
    this.check();
    return Promise.race([step, this.interrupted]);
  }

  /** From here the command finishes whatever comes: a signal now is ignored, as after the work is done. */
  disarm(): void {
    this.check();
    this.armed = false;
  }

  /** Restores the default actions. */
  dispose(): void {
    for (const signal of STOP_SIGNALS) process.off(signal, this.onSignal);
  }
}

/**
 * Runs `work` with SIGINT and SIGTERM caught. When one stops it, `work` has already
 * undone what it made (its own finally and catch blocks ran as the error passed); this
 * prints `thinp: <what> interrupted by SIGTERM; <aftermath>` and exits 130 or 143.
 */
export async function runInterruptible<T>(
  what: string,
  work: (interruption: Interruption) => Promise<T>,
  aftermath: () => string,
): Promise<T> {
  const interruption = new Interruption();
  try {
    return await work(interruption);
  } catch (failure) {
    if (!(failure instanceof InterruptedError)) throw failure;
    process.stderr.write(`thinp: ${what} interrupted by ${failure.signal}; ${aftermath()}\n`);
    if (blockingOperationsInFlight() > 0) {
      // A read or write on a pipe is still blocked in the thread pool, and exit() would wait
      // for it until the other end acts. Dying of the signal itself ends the process at
      // once; a shell reports the same status, 128 + its number.
      interruption.dispose();
      process.kill(process.pid, failure.signal);
    }
    // main() maps operating errors to statuses 1 to 8; a signal's status is the shell's
    // convention instead, so it is set here. Node writes stderr synchronously on Linux
    // (file, pipe or terminal), so the line above is out before the process ends.
    process.exit(128 + constants.signals[failure.signal]);
  } finally {
    interruption.dispose();
  }
}
