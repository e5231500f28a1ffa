// An import holds its pool for writing from start to end, and commits only at the end.
// Meanwhile it answers the pool's control socket as `thinp serve` would, so `list` and
// `status` (which try the socket first, see withOperations) still work. Changes are
// refused: committing one halfway through would commit half an import with it.

import { startControlServer, type ControlServer } from "../src/control/control-server.js";
import { controlSocketPath } from "../src/control/control-protocol.js";
import type { Pool } from "../src/thin/pool.js";
import { LocalPoolOperations } from "./local-pool-operations.js";
import { PoolBusyError } from "./pool-session.js";

export function describeImport(volumeName: string): string {
  return `an import into '${volumeName}'`;
}

/** What the control socket answers while an import runs: reads from the live pool, every change refused. */
class ImportingPoolOperations extends LocalPoolOperations {
  constructor(
    pool: Pool,
    private readonly busyWith: string,
  ) {
    super(pool);
  }

  // The changes take no arguments here: each is refused, whatever it asks. Reads are the
  // local ones: what the import has written so far counts, as in `thinp serve` before its
  // next commit.
  override createVolume(): Promise<never> {
    return this.refuse();
  }
  override snapshot(): Promise<never> {
    return this.refuse();
  }
  override deleteVolume(): Promise<never> {
    return this.refuse();
  }
  override resizeVolume(): Promise<never> {
    return this.refuse();
  }
  override resizePool(): Promise<never> {
    return this.refuse();
  }

  private async refuse(): Promise<never> {
    throw new PoolBusyError(this.pool.metaPath, process.pid, this.busyWith);
  }
}

/**
 * Starts answering the pool's control socket for the import into `volumeName`. Null, with
 * a warning, when the socket cannot be made: the import works without it, only `list` and
 * `status` then wait for it like any other command.
 */
export async function answerDuringImport(pool: Pool, metaPath: string, volumeName: string): Promise<ControlServer | null> {
  const busyWith = describeImport(volumeName);
  const socketPath = controlSocketPath(metaPath);
  try {
    // Its log is for malformed requests from other programs; an import's output stays its own.
    return await startControlServer(socketPath, new ImportingPoolOperations(pool, busyWith), () => undefined, [], busyWith);
  } catch (failure) {
    process.stderr.write(
      `thinp: warning: list and status will wait for the import: cannot listen on ${socketPath}: ${(failure as Error).message}\n`,
    );
    return null;
  }
}
