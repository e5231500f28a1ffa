// How a bench's server child stops: draining and committing, as `serve` does on SIGTERM,
// when signalled or when the parent's IPC channel closes, so a dying bench never leaves a
// server behind.

interface StoppableService {
  stop(): Promise<void>;
}

export function stopOnSignal(service: StoppableService): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    service.stop().then(
      // process.exit, not a natural exit, so --cpu-prof writes its profile right away.
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`thinp: stop failed: ${(error as Error).stack ?? String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("disconnect", stop);
}
