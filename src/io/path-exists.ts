import { access } from "node:fs/promises";

/** Whether anything is at `path`, for refusing to overwrite files or naming a missing one. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
