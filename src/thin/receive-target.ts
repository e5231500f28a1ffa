// A receive into a pool this process holds: the hidden volume, what it is checked against,
// and how it is published (formats/send-stream.md, "Receiving").

import { createHash } from "node:crypto";
import { BaseMismatchError, InvalidArgumentError, VolumeBusyError, VolumeExistsError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { VolumeIdentity } from "./api.js";
import { DATA_BLOCK_BYTES } from "./limits.js";
import { validateVolumeName } from "./names.js";
import type { Pool } from "./pool.js";
import type { PoolMetadata, VolumeState } from "./pool-metadata.js";
import type { ReceiveTarget } from "./receive.js";
import { encodeResumeToken } from "./resume-token.js";
import type { SendHeader } from "./send-stream.js";
import type { Volume } from "./volume.js";

export interface PoolReceiveOptions {
  /** Keep what was received when the stream fails, with a resume token, instead of dropping it. */
  resumable?: boolean;
  /** Go on with the receive of this name that an earlier, resumable one left. */
  resume?: boolean;
  /** How often a resumable receive commits its progress. */
  progressBytes?: number;
}

/** Commits of a resumable receive's progress: at most one per this many bytes received. */
export const RECEIVE_PROGRESS_BYTES = 64 << 20;

/** The hidden volume a receive of `name` writes into: fixed by the name, so a resume finds it. */
export function receivingVolumeName(name: string): string {
  return `.receive-${createHash("sha1").update(name).digest("hex").slice(0, 16)}`;
}

/** What an interrupted resumable receive of `name` kept, or null. */
export async function interruptedReceive(
  pool: Pool,
  name: string,
): Promise<{ token: string; nextBlock: number; sizeBytes: number } | null> {
  return pool.transactions.read(async (metadata) => {
    const state = await metadata.findVolume(receivingVolumeName(name));
    const progress = state?.record.receiving;
    if (!state || !progress) return null;
    return { token: tokenOf(state), nextBlock: progress.nextBlock, sizeBytes: state.record.sizeBytes };
  });
}

/** Drops what an interrupted resumable receive of `name` kept; false when there was none. */
export async function abandonReceive(pool: Pool, name: string): Promise<boolean> {
  const hidden = receivingVolumeName(name);
  const found = await pool.transactions.read(async (metadata) => (await metadata.findVolume(hidden)) !== null);
  if (!found) return false;
  await pool.deleteVolume(hidden);
  return true;
}

function tokenOf(state: VolumeState): string {
  const progress = state.record.receiving;
  assert(progress !== null, "a token for a volume being received");
  return encodeResumeToken({
    volume: { uuid: state.record.uuid, generation: state.record.generation },
    base: progress.baseUuid === null ? null : { uuid: progress.baseUuid, generation: progress.baseGeneration },
    nextBlock: progress.nextBlock,
  });
}

/** The hidden volumes receives in this process are writing now, per pool: one left by a crash is not among them. */
const receivesUnderWay = new WeakMap<Pool, Set<string>>();

function underWay(pool: Pool): Set<string> {
  let names = receivesUnderWay.get(pool);
  if (names === undefined) {
    names = new Set();
    receivesUnderWay.set(pool, names);
  }
  return names;
}

export class PoolReceiveTarget implements ReceiveTarget {
  private readonly hiddenName: string;
  private volume: Volume | null = null;
  private sizeBytes = 0;
  private bytesSinceProgress = 0;
  /** The resume token once a failed resumable receive has saved its progress. */
  resumeToken: string | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly name: string,
    private readonly options: PoolReceiveOptions = {},
  ) {
    validateVolumeName(name);
    this.hiddenName = receivingVolumeName(name);
  }

  async begin(header: SendHeader): Promise<{ resumeFrom: number }> {
    this.pool.assertWritable("the pool");
    const resumeFrom = await this.pool.transactions.change(async (metadata) => {
      if (await metadata.findVolume(this.name)) throw new VolumeExistsError(this.name);
      let partial = await metadata.findVolume(this.hiddenName);
      if (partial && underWay(this.pool).has(this.hiddenName)) {
        throw new VolumeBusyError(this.name, `another receive of '${this.name}' is under way; wait for it to finish`);
      }
      if (partial && partial.record.receiving?.resumable !== true) {
        // Left by a receive that a crash stopped and that did not ask to be kept.
        await metadata.deleteVolume(partial);
        partial = null;
      }
      if (this.options.resume) return this.resumeInto(metadata, partial, header);
      if (partial) {
        throw new VolumeExistsError(
          this.name,
          `an interrupted receive of '${this.name}' is kept, ${partial.record.receiving?.nextBlock ?? 0} blocks in: ` +
            `go on with 'thinp receive ${this.name} --resume' (its token: 'thinp receive ${this.name} --token'), or drop it with 'thinp receive ${this.name} --abort'`,
        );
      }
      if (header.firstBlock !== 0) {
        throw new InvalidArgumentError(
          `the stream goes on from block ${header.firstBlock} of an interrupted receive: receive it with --resume`,
        );
      }
      const held = metadata.volumeByUuid(header.volume.uuid);
      if (held) {
        throw new VolumeExistsError(this.name, `this pool holds the volume that stream carries already, as '${held.record.name}'`);
      }
      const state =
        header.base === null ? await this.createWhole(metadata, header) : await this.createFromBase(metadata, header, header.base);
      state.record.hidden = true;
      state.record.uuid = header.volume.uuid;
      state.record.generation = header.volume.generation;
      state.record.sealed = false;
      state.record.receiving = {
        baseUuid: header.base?.uuid ?? null,
        baseGeneration: header.base?.generation ?? 0,
        nextBlock: 0,
        resumable: this.keepsWhatCame,
      };
      metadata.markDirty(state);
      return 0;
    });
    underWay(this.pool).add(this.hiddenName);
    this.volume = await this.pool.volume(this.hiddenName);
    this.sizeBytes = header.sizeBytes;
    return { resumeFrom };
  }

  private resumeInto(metadata: PoolMetadata, partial: VolumeState | null, header: SendHeader): number {
    const progress = partial?.record.receiving;
    if (!partial || !progress) {
      throw new InvalidArgumentError(`no interrupted receive of '${this.name}' is kept here: receive it without --resume`);
    }
    const sameBase =
      header.base === null
        ? progress.baseUuid === null
        : progress.baseUuid === header.base.uuid && progress.baseGeneration === header.base.generation;
    if (partial.record.uuid !== header.volume.uuid || partial.record.generation !== header.volume.generation || !sameBase) {
      throw new BaseMismatchError(
        `the interrupted receive of '${this.name}' was taking in another stream (volume ${partial.record.uuid}, generation ` +
          `${partial.record.generation}): resume it with a stream from 'thinp send ... --resume-token $(thinp receive ${this.name} --token)'`,
      );
    }
    if (header.firstBlock > progress.nextBlock) {
      throw new BaseMismatchError(
        `the stream goes on from block ${header.firstBlock}, but the interrupted receive of '${this.name}' has only the blocks below ${progress.nextBlock}: ` +
          `send with the token 'thinp receive ${this.name} --token' prints`,
      );
    }
    if (partial.record.sizeBytes !== header.sizeBytes)
      throw new BaseMismatchError(`the stream's volume size is not the interrupted receive's`);
    return progress.nextBlock;
  }

  private async createWhole(metadata: PoolMetadata, header: SendHeader): Promise<VolumeState> {
    return metadata.createVolume(this.hiddenName, header.sizeBytes, Date.now());
  }

  private async createFromBase(metadata: PoolMetadata, header: SendHeader, base: VolumeIdentity): Promise<VolumeState> {
    const held = metadata.volumeByUuid(base.uuid);
    if (!held) {
      throw new BaseMismatchError(
        `the stream holds the changes since volume ${base.uuid} (generation ${base.generation}), which this pool does not hold: ` +
          `receive that volume first, or send '${this.name}' whole (thinp send without --from)`,
      );
    }
    if (held.record.generation !== base.generation || !held.record.sealed) {
      const which =
        held.record.generation < base.generation && held.record.sealed
          ? `the sender's copy has changed since this one was received (generation ${base.generation} there, ${held.record.generation} here)`
          : `it has changed here since it was received or sent (generation ${held.record.generation}${held.record.sealed ? "" : ", written since"}; the stream's base is generation ${base.generation})`;
      throw new BaseMismatchError(
        `'${held.record.name}' here is the stream's base, but ${which}, so the changes would not apply to it: ` +
          `send '${this.name}' whole (thinp send without --from), or from a snapshot both pools hold unchanged`,
      );
    }
    const state = await metadata.snapshot(held, this.hiddenName, false, Date.now());
    if (header.sizeBytes < state.record.sizeBytes) {
      // What lies past the new end goes first: the sent volume does not have it.
      const cut: number[] = [];
      await metadata.forEachMapping(
        state,
        Math.ceil(header.sizeBytes / DATA_BLOCK_BYTES),
        Number.MAX_SAFE_INTEGER,
        (block) => void cut.push(block),
      );
      for (const block of cut) await metadata.unmapBlock(state, block);
    }
    state.record.sizeBytes = header.sizeBytes;
    return state;
  }

  async writeData(firstBlock: number, data: Buffer): Promise<void> {
    await this.target().write(firstBlock * DATA_BLOCK_BYTES, data);
    this.bytesSinceProgress += data.length;
  }

  async unmap(firstBlock: number, blockCount: number): Promise<void> {
    const offset = firstBlock * DATA_BLOCK_BYTES;
    await this.target().discard(offset, Math.min(this.sizeBytes, offset + blockCount * DATA_BLOCK_BYTES) - offset);
  }

  async progress(nextBlock: number): Promise<void> {
    if (!this.keepsWhatCame) return;
    if (this.bytesSinceProgress < (this.options.progressBytes ?? RECEIVE_PROGRESS_BYTES)) return;
    await this.saveProgress(nextBlock);
  }

  private async saveProgress(nextBlock: number): Promise<void> {
    await this.pool.transactions.change(async (metadata) => {
      const state = await metadata.requireVolume(this.hiddenName);
      assert(state.record.receiving !== null, "the hidden volume of a receive records its progress");
      state.record.receiving = { ...state.record.receiving, nextBlock: Math.max(nextBlock, state.record.receiving.nextBlock) };
      metadata.markDirty(state);
    });
    await this.pool.commit();
    this.bytesSinceProgress = 0;
  }

  async publish(): Promise<void> {
    try {
      await this.pool.transactions.change(async (metadata) => {
        const state = await metadata.requireVolume(this.hiddenName);
        await metadata.renameVolume(state, this.name);
        state.record.hidden = false;
        state.record.receiving = null;
        state.record.sealed = true;
        metadata.markDirty(state);
      });
      await this.pool.commit();
    } finally {
      underWay(this.pool).delete(this.hiddenName);
    }
  }

  async abort(reachedBlock: number): Promise<void> {
    if (this.volume === null) return;
    try {
      if (this.keepsWhatCame) {
        await this.saveProgress(reachedBlock);
        this.resumeToken = (await interruptedReceive(this.pool, this.name))?.token ?? null;
        return;
      }
      await this.pool.deleteVolume(this.hiddenName);
    } finally {
      underWay(this.pool).delete(this.hiddenName);
    }
  }

  /** A resumable receive, or one going on with what a resumable one kept: what came is kept when the stream fails. */
  private get keepsWhatCame(): boolean {
    return this.options.resumable === true || this.options.resume === true;
  }

  private target(): Volume {
    assert(this.volume !== null, "records are applied after begin");
    return this.volume;
  }
}
