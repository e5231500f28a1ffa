// How every command except create-pool and check reaches its pool: find the
// metadata file, open it, run, commit only if the command changes the pool and
// succeeded, and always close. A failed command therefore leaves the pool at
// its last commit, exactly as a crash at that moment would.

import path from "node:path";
import { Pool } from "../src/thin/pool.js";

export const POOL_ENV_VAR = "THINP_POOL";
export const POOL_PATH_DEFAULT = "meta.img";

/** `--pool`, else $THINP_POOL, else ./meta.img; relative paths are taken from the working directory. */
export function resolvePoolPath(poolOption: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = poolOption ?? (env[POOL_ENV_VAR] || undefined) ?? POOL_PATH_DEFAULT;
  return path.resolve(chosen);
}

/** "read" opens the pool read-only and never commits; "write" commits when `work` succeeds. */
export type SessionMode = "read" | "write";

export async function withPool<T>(metaPath: string, mode: SessionMode, work: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = await Pool.open(metaPath, { readOnly: mode === "read" });
  let result: T;
  try {
    result = await work(pool);
    if (mode === "write") await pool.commit();
  } catch (failure) {
    // Close without committing. If closing fails too, the user needs the
    // first error (what went wrong), not the second (a symptom of it).
    await pool.close().catch(() => undefined);
    throw failure;
  }
  await pool.close();
  return result;
}
