// Opening a pool's two files under OS locks. Whatever holds a pool open holds both its
// metadata file and its data file: readers share them, a writer has them to itself. So two
// names for one metadata file (links), or two metadata files for one data file (a copy, a
// repaired file), can never be open for writing at once.

import { DataFileLockedError, PoolLockedError, type ThinpError } from "../errors.js";
import { findLockHolder, type LockHolder, type LockMode } from "../io/file-lock.js";
import { NodeStorageFile, type OpenMode } from "../io/node-storage-file.js";

export type PoolAccess = "read" | "write";

export function lockModeFor(access: PoolAccess): LockMode {
  return access === "write" ? "exclusive" : "shared";
}

export function openModeFor(access: PoolAccess): OpenMode {
  return access === "write" ? "read-write" : "read-only";
}

/** Opens the metadata file and locks it, or fails naming the process that holds it. */
export function openLockedMetadataFile(metaPath: string, mode: OpenMode, lock: LockMode): Promise<NodeStorageFile> {
  return openLocked(
    metaPath,
    mode,
    lock,
    "metadata file",
    (holder) => new PoolLockedError(metaPath, holder?.pid ?? null, holder?.command ?? null),
  );
}

/** Opens the data file of the pool at `metaPath` and locks it, or fails naming its holder. */
export function openLockedDataFile(dataPath: string, metaPath: string, mode: OpenMode, lock: LockMode): Promise<NodeStorageFile> {
  return openLocked(
    dataPath,
    mode,
    lock,
    "data file",
    (holder) => new DataFileLockedError(dataPath, metaPath, holder?.pid ?? null, holder?.command ?? null),
  );
}

async function openLocked(
  path: string,
  mode: OpenMode,
  lock: LockMode,
  what: string,
  refusal: (holder: LockHolder | null) => ThinpError,
): Promise<NodeStorageFile> {
  const file = await NodeStorageFile.open(path, mode, what);
  try {
    if (!file.tryLock(lock)) {
      const { dev, ino } = await file.fileId();
      throw refusal(findLockHolder(dev, ino));
    }
    return file;
  } catch (error) {
    await file.close().catch(() => undefined);
    throw error;
  }
}
