// Making a file's or a folder's entry durable: a rename is durable only once its folder is
// synced, a file written through another descriptor only once the file is.

import { open } from "node:fs/promises";

export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
