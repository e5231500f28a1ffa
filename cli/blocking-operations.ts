// Reads, writes and opens of streams that run in libuv's thread pool. One an interruption
// abandons may stay blocked there, and exit() waits for every thread-pool thread, so they
// are counted: runInterruptible ends the process by its signal instead while any is left.

let operationsInFlight = 0;

export function blockingOperationsInFlight(): number {
  return operationsInFlight;
}

export function trackBlocking<T>(operation: Promise<T>): Promise<T> {
  operationsInFlight++;
  return operation.finally(() => operationsInFlight--);
}
