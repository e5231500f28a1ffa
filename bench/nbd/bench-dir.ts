// Where the bench keeps its images: a directory on a real disk, since a tmpfs would measure
// memory copies and hide every fsync. /var/tmp first (never tmpfs by convention), then the
// OS temp dir.

import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MEMORY_FILESYSTEMS = new Set(["tmpfs", "ramfs", "devtmpfs"]);

export function filesystemType(path: string): string {
  const lines = execFileSync("df", ["--output=fstype", path], { encoding: "utf8" }).trim().split("\n");
  // df prints a header line, then the type; split gives at least one string.
  return (lines.at(-1) ?? "").trim();
}

export async function createBenchDir(): Promise<string> {
  const candidates = ["/var/tmp", tmpdir()];
  for (const parent of candidates) {
    let type: string;
    try {
      type = filesystemType(parent);
    } catch {
      continue;
    }
    if (!MEMORY_FILESYSTEMS.has(type)) return mkdtemp(join(parent, "thinp-bench-nbd-"));
  }
  throw new Error(`no disk-backed directory among ${candidates.join(", ")}; all are memory filesystems or missing`);
}
