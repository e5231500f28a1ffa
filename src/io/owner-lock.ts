import { open, readFile, unlink } from "node:fs/promises";
import { IoError, PoolLockedError } from "../errors.js";

/**
 * One process owns a pool at a time. The owner holds `<meta>.lock` containing its pid;
 * a lock whose pid no longer runs was left by a crash and is taken over.
 */
export class OwnerLock {
  private constructor(readonly lockPath: string) {}

  static async acquire(metaPath: string): Promise<OwnerLock> {
    const lockPath = `${metaPath}.lock`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const handle = await open(lockPath, "wx", 0o644);
        await handle.writeFile(`${process.pid}\n`);
        await handle.close();
        return new OwnerLock(lockPath);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw new IoError(lockPath, error);
      }
      const holderPid = await readHolderPid(lockPath);
      if (holderPid !== null && holderPid !== process.pid && isRunning(holderPid)) {
        throw new PoolLockedError(metaPath, holderPid);
      }
      if (holderPid === process.pid) throw new PoolLockedError(metaPath, holderPid);
      await unlink(lockPath).catch(() => undefined);
    }
    throw new IoError(lockPath, new Error("could not take the lock file"));
  }

  async release(): Promise<void> {
    await unlink(this.lockPath).catch(() => undefined);
  }
}

async function readHolderPid(lockPath: string): Promise<number | null> {
  try {
    const pid = Number.parseInt((await readFile(lockPath, "utf8")).trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
