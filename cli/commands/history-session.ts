// How diff, send and receive reach their pool: opened here when no server holds it.

import { refuseWhileServed, withPool, type SessionMode } from "../pool-session.js";
import type { Pool } from "../../src/thin/pool.js";

export async function historySession<T>(metaPath: string, mode: SessionMode, work: (pool: Pool) => Promise<T>): Promise<T> {
  await refuseWhileServed(metaPath, () => "");
  return withPool(metaPath, mode, work);
}
