// Files the user names for import and export. Node reports their failures as
// errno errors; the user should see the same operating errors the engine uses,
// with the same exit codes.

import { promises as fs } from "node:fs";
import path from "node:path";
import { FileExistsError, FileMissingError, FolderMissingError, IoError, ThinpError } from "../src/errors.js";

function asOperatingError(failure: unknown, filePath: string, what: string): unknown {
  if (failure instanceof ThinpError) return failure;
  const errno = (failure as NodeJS.ErrnoException | null)?.code;
  if (errno === "ENOENT") return new FileMissingError(filePath, what);
  if (errno === "EEXIST") return new FileExistsError(filePath);
  if (typeof errno === "string") return new IoError(filePath, failure);
  return failure;
}

/** Runs one file-system step, turning errno failures into operating errors that name `filePath`. */
export async function onUserFile<T>(filePath: string, what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (failure) {
    throw asOperatingError(failure, filePath, what);
  }
}

/** Creates the output file; an existing file is replaced only when `overwrite` is set. */
export async function createOutputFile(filePath: string, overwrite: boolean): Promise<fs.FileHandle> {
  return onUserFile(filePath, "output directory for", () => fs.open(filePath, overwrite ? "w" : "wx"));
}

/**
 * Refuses, naming the folder, when a file to be created at `filePath` has no folder to go
 * in; otherwise creating it fails with a bare ENOENT that names a file instead.
 */
export async function requireFolderOf(filePath: string): Promise<void> {
  const folder = path.dirname(filePath);
  const stats = await fs.stat(folder).catch((failure: NodeJS.ErrnoException) => {
    if (failure.code === "ENOENT") return null;
    throw asOperatingError(failure, folder, "folder");
  });
  if (stats === null) throw new FolderMissingError(folder);
  if (!stats.isDirectory()) throw new IoError(folder, new Error("not a folder"));
}
