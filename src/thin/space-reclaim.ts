// Space that comes back to the host: once a commit that freed data blocks is durable, their
// 64 KiB are punched out of the data file (fallocate PUNCH_HOLE | KEEP_SIZE), so the file's
// allocated size falls after a delete, a discard or a TRIM. Only then: before that commit is
// durable, the last commit still maps them, and a crash must find their bytes there. And
// before they can be allocated again: a punch after a new write would zero that write.

import { assert } from "../io/assert.js";
import type { StorageFile } from "../io/storage-file.js";
import { DATA_BLOCK_BYTES } from "./limits.js";

export class SpaceReclaim {
  /** The file system refused a punch once: it is not asked again. */
  private unsupported = false;
  /** Blocks given back so far, for tests and status. */
  blocksPunched = 0;

  constructor(
    private readonly dataFile: StorageFile,
    private readonly warn: (message: string) => void,
  ) {}

  /** Punches `blocks` (free, committed free, and not allocatable again yet), a run at a time. */
  async punch(blocks: readonly number[]): Promise<void> {
    if (this.unsupported || blocks.length === 0 || this.dataFile.punchHole === undefined) return;
    const sorted = [...blocks].sort((a, b) => a - b);
    let first = sorted[0]!;
    let count = 0;
    for (let i = 0; i <= sorted.length; i++) {
      const block = sorted[i];
      if (block !== undefined && block === first + count) {
        count++;
        continue;
      }
      if (!(await this.punchRun(first, count))) return;
      if (block === undefined) break;
      assert(block > first + count - 1, `freed block ${block} listed twice`);
      first = block;
      count = 1;
    }
  }

  private async punchRun(first: number, count: number): Promise<boolean> {
    try {
      if (await this.dataFile.punchHole!(first * DATA_BLOCK_BYTES, count * DATA_BLOCK_BYTES)) {
        this.blocksPunched += count;
        return true;
      }
      this.unsupported = true;
      this.warn(
        `the file system holding ${this.dataFile.path} cannot punch holes (fallocate PUNCH_HOLE): ` +
          `freed blocks stay allocated in the data file, reused by later writes, and its size on disk will not fall`,
      );
    } catch (error) {
      // The commit is durable already: a block left allocated costs only space.
      this.unsupported = true;
      this.warn(`punching freed blocks out of ${this.dataFile.path} failed (${(error as Error).message}); no more will be tried`);
    }
    return false;
  }
}
