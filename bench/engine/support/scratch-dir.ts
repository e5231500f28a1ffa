// Every file the bench makes lives under one temporary directory, removed at the end even
// when a section fails. Pool data files are sparse: a 64 GiB pool costs only the blocks
// written to it.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class ScratchDir {
  private constructor(readonly path: string) {}

  static async create(): Promise<ScratchDir> {
    return new ScratchDir(await mkdtemp(join(tmpdir(), "thinp-bench-")));
  }

  /** Paths for one pool's files: `<name>.data` and `<name>.meta`. */
  poolPaths(name: string): { dataPath: string; metaPath: string } {
    return { dataPath: join(this.path, `${name}.data`), metaPath: join(this.path, `${name}.meta`) };
  }

  file(name: string): string {
    return join(this.path, name);
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}
