// How every command except create-pool reaches its pool. When a `thinp serve` owns
// the pool, management commands ask it over the control socket, and commands that
// need the pool to themselves (import, export, check) are refused with a way round.
// Otherwise the command opens the pool, runs, commits only if it changes the pool
// and succeeded, and always closes: a failed command leaves the pool at its last
// commit, exactly as a crash at that moment would.

import { realpathSync } from "node:fs";
import path from "node:path";
import { ControlClient } from "../src/control/control-client.js";
import { controlSocketPath } from "../src/control/control-protocol.js";
import type { PoolOperations } from "../src/control/pool-operations.js";
import { FileMissingError, ThinpError, type ErrorCode } from "../src/errors.js";
import type { NbdServerAddress } from "../src/nbd/index.js";
import { Pool } from "../src/thin/pool.js";
import { LocalPoolOperations } from "./local-pool-operations.js";

export const POOL_ENV_VAR = "THINP_POOL";
export const POOL_PATH_DEFAULT = "meta.img";

/** `--pool`, else $THINP_POOL, else ./meta.img; relative paths are taken from the working directory. */
export function resolvePoolPath(poolOption: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = poolOption ?? (env[POOL_ENV_VAR] || undefined) ?? POOL_PATH_DEFAULT;
  return realPathIfExists(path.resolve(chosen));
}

/**
 * A pool reached through a symlink is the same pool: its control socket sits beside the real
 * metadata file, so `serve --pool alias.img` answers commands given `--pool meta.img`.
 */
function realPathIfExists(resolved: string): string {
  try {
    return realpathSync.native(resolved);
  } catch {
    return resolved;
  }
}

/** The pool's metadata file is not there: say how to name another pool, or make one. */
export class PoolMissingError extends ThinpError {
  readonly code: ErrorCode = "FILE_MISSING";
  constructor(readonly metaPath: string) {
    super(
      `metadata file ${metaPath} does not exist; name the pool with --pool META or ${POOL_ENV_VAR}=META, ` +
        `or make one with 'thinp create-pool DATA META'`,
    );
  }
}

/**
 * The engine reports a missing metadata file in its own terms, wherever a command opens
 * the pool (a session, check, dump, repair, serve); the CLI adds how a pool is named.
 */
export function explainMissingPool(failure: unknown): unknown {
  if (failure instanceof FileMissingError && failure.what === "metadata file") return new PoolMissingError(failure.path);
  return failure;
}

/** "read" opens the pool read-only and never commits; "write" commits when `work` succeeds. */
export type SessionMode = "read" | "write";

export async function withPool<T>(metaPath: string, mode: SessionMode, work: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = await Pool.open(metaPath, { readOnly: mode === "read" });
  if (mode === "read") warnIfDegraded(pool.degraded);
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

/**
 * Runs management `work` against the server that owns the pool, if one answers on
 * its control socket (the server commits each operation itself), else against the
 * pool opened here with withPool's open, work, commit, close.
 */
export async function withOperations<T>(metaPath: string, mode: SessionMode, work: (operations: PoolOperations) => Promise<T>): Promise<T> {
  const server = await ControlClient.connect(controlSocketPath(metaPath));
  if (server === null) return withPool(metaPath, mode, (pool) => work(new LocalPoolOperations(pool)));
  if (mode === "read") warnIfDegraded(server.degraded);
  try {
    return await work(server);
  } finally {
    server.close();
  }
}

/**
 * A pool with a damaged space map reads fine; each read says once what is wrong and the way
 * out. A change is refused with the same words instead (PoolDegradedError).
 */
export function warnIfDegraded(damage: { message: string } | null): void {
  if (damage) process.stderr.write(`thinp: warning: ${damage.message}\n`);
}

/** A running server owns the pool and the command needs it to itself. */
export class PoolServedError extends ThinpError {
  // The same status as any other holder of the pool's lock: scripts test for one number.
  readonly code: ErrorCode = "POOL_LOCKED";
  constructor(metaPath: string, serverPid: number, alternative: string) {
    super(`pool ${metaPath} is served by process ${serverPid}; stop it first${alternative ? `, or ${alternative}` : ""}`);
  }
}

/** The pool is held by a long command that takes no other changes until it finishes. */
export class PoolBusyError extends ThinpError {
  // The status of any other holder of the pool: scripts test for one number.
  readonly code: ErrorCode = "POOL_LOCKED";
  constructor(metaPath: string, holderPid: number, busyWith: string) {
    super(`pool ${metaPath} is busy with ${busyWith} by process ${holderPid}; retry when it finishes`);
  }
}

/**
 * Fails when another process holds the pool and answers its control socket: `thinp serve`
 * (PoolServedError, with `alternative`: how to do the job through the server instead,
 * given where its NBD exports listen, or "" when there is no such way), or a long command
 * such as an import, which takes no other work until it has finished (PoolBusyError).
 */
export async function refuseWhileServed(
  metaPath: string,
  alternative: (nbdAddress: NbdServerAddress | undefined) => string,
): Promise<void> {
  const holder = await ControlClient.connect(controlSocketPath(metaPath));
  if (holder === null) return;
  holder.close();
  if (holder.busyWith !== null) throw new PoolBusyError(metaPath, holder.serverPid, holder.busyWith);
  throw new PoolServedError(metaPath, holder.serverPid, alternative(holder.nbdAddresses[0]));
}
