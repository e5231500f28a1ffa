// Reads and overwrites answered from the cached tree without waiting for a metadata section,
// and what a commit must still sync: each of these holds an I/O in flight at the moment that
// matters, through a data file whose writes or syncs wait until the test lets them go.

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { Pool } from "../src/thin/pool.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;

/** A data file whose next write or sync can be held until released; counts syncs and logs writes. */
class HeldDataFile extends MemoryStorageFile {
  syncs = 0;
  readonly writes: { position: number; length: number }[] = [];
  private holdWrites: Promise<void> | null = null;
  private holdSyncs: Promise<void> | null = null;

  /** Holds every write (or sync) from now until the returned function is called. */
  hold(what: "writes" | "syncs"): () => void {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    if (what === "writes") this.holdWrites = held;
    else this.holdSyncs = held;
    return () => {
      if (what === "writes") this.holdWrites = null;
      else this.holdSyncs = null;
      release();
    };
  }

  /** Held writes must wait, so none is taken on the calling thread meanwhile. */
  override writeNow(buf: Uint8Array, position: number): boolean {
    if (this.holdWrites !== null) return false;
    this.writes.push({ position, length: buf.length });
    return super.writeNow(buf, position);
  }

  override async write(buf: Uint8Array, position: number): Promise<void> {
    this.writes.push({ position, length: buf.length });
    if (this.holdWrites) await this.holdWrites;
    await super.write(buf, position);
  }

  override async sync(): Promise<void> {
    if (this.holdSyncs) await this.holdSyncs;
    this.syncs++;
    await super.sync();
  }
}

async function poolWithOneBlockWritten() {
  const data = new HeldDataFile("data");
  const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), data, { sizeBytes: 16 * MiB });
  await pool.createVolume("v", 4 * MiB);
  const volume = await pool.volume("v");
  await volume.write(0, Buffer.alloc(BLOCK, 1));
  await pool.commit();
  return { pool, data, volume };
}

/** Settles within a few turns of the event loop, or reports that it is still waiting. */
async function settlesSoon<T>(promise: Promise<T>): Promise<T | "still waiting"> {
  const waiting = new Promise<"still waiting">((resolve) => setTimeout(() => resolve("still waiting"), 50));
  return Promise.race([promise, waiting]);
}

describe("the data path without a metadata section", () => {
  it("answers a read while a commit waits for its sync, with the bytes last written", async () => {
    const { pool, data, volume } = await poolWithOneBlockWritten();
    await volume.write(BLOCK, Buffer.alloc(4 * KiB, 2)); // a fresh block: the commit has metadata to write
    const release = data.hold("syncs");
    const commit = pool.commit();
    const read = await settlesSoon(volume.read(BLOCK, 4 * KiB));
    expect(read).toEqual(Buffer.alloc(4 * KiB, 2));
    release();
    await commit;
    await pool.close();
  });

  it("writes in place, while a commit waits for its sync, without waiting for it", async () => {
    const { pool, data, volume } = await poolWithOneBlockWritten();
    await volume.write(BLOCK, Buffer.alloc(4 * KiB, 2));
    const release = data.hold("syncs");
    const commit = pool.commit();
    expect(await settlesSoon(volume.write(0, Buffer.alloc(4 * KiB, 3)))).toBeUndefined();
    release();
    await commit;
    expect(await volume.read(0, 4 * KiB)).toEqual(Buffer.alloc(4 * KiB, 3));
    await pool.close();
  });

  it("makes a read wait for a change section part-way through, and then see its result", async () => {
    const { pool, volume } = await poolWithOneBlockWritten();
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const state = await pool.transactions.read(async (metadata) => (await metadata.findVolume("v"))!);
    const change = pool.transactions.change(async (metadata) => {
      const live = metadata.stateById(state.id)!;
      await metadata.unmapBlock(live, 0);
      entered();
      await paused;
    });
    await inside;
    const read = volume.read(0, 4 * KiB);
    expect(await settlesSoon(read)).toBe("still waiting");
    resume();
    await change;
    expect(await read).toEqual(Buffer.alloc(4 * KiB));
    await pool.close();
  });

  it("answers a whole read on the calling thread with the same bytes and runs as the usual read", async () => {
    const { pool, volume } = await poolWithOneBlockWritten();
    await volume.write(3 * BLOCK + 512, Buffer.alloc(3 * KiB, 5));
    for (const [offset, length] of [
      [0, 4 * KiB],
      [BLOCK - 100, BLOCK + 200], // three blocks' pieces
      [2 * BLOCK, 2 * BLOCK],
    ] as const) {
      // Not a promise: answered on the calling thread.
      expect(volume.readSoon(offset, length)).toEqual(await volume.read(offset, length));
      expect(volume.readRunsSoon(offset, length)).toEqual(await volume.readRuns(offset, length));
    }
    await pool.close();
  });

  it("reads the usual way while a change section is part-way through", async () => {
    const { pool, volume } = await poolWithOneBlockWritten();
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    const change = pool.transactions.change(() => paused);
    await Promise.resolve();
    await settlesSoon(Promise.resolve());
    const waiting = volume.readSoon(0, 4 * KiB);
    expect(waiting).toBeInstanceOf(Promise);
    resume();
    await change;
    expect(await waiting).toEqual(Buffer.alloc(4 * KiB, 1));
    expect(volume.readSoon(0, 4 * KiB)).toEqual(Buffer.alloc(4 * KiB, 1));
    await pool.close();
  });

  it("overwrites a block the volume alone owns on the calling thread, and declines a fresh or shared one", async () => {
    const { pool, volume } = await poolWithOneBlockWritten();
    expect(volume.writeSoon(4 * KiB, Buffer.alloc(4 * KiB, 6))).toBeUndefined();
    expect(await volume.read(4 * KiB, 4 * KiB)).toEqual(Buffer.alloc(4 * KiB, 6));
    const fresh = volume.writeSoon(BLOCK, Buffer.alloc(4 * KiB, 6)); // unmapped: needs a section
    expect(fresh).toBeInstanceOf(Promise);
    await fresh;
    await pool.snapshot("v", "s");
    const copied = volume.writeSoon(0, Buffer.alloc(4 * KiB, 7)); // shared with s: copied first
    expect(copied).toBeInstanceOf(Promise);
    await copied;
    expect(await volume.read(BLOCK, 4 * KiB)).toEqual(Buffer.alloc(4 * KiB, 6));
    expect(await volume.read(0, 4 * KiB)).toEqual(Buffer.alloc(4 * KiB, 7));
    expect(await (await pool.volume("s")).read(0, 4 * KiB)).toEqual(Buffer.alloc(4 * KiB, 1));
    await pool.close();
  });

  it("hands the data file no write that spans two data blocks, so page-cache folios stay within one", async () => {
    const { pool, data, volume } = await poolWithOneBlockWritten();
    data.writes.length = 0;
    const bytes = Buffer.alloc(MiB + 8 * KiB, 9);
    await volume.write(BLOCK - 4 * KiB, bytes); // fresh blocks, provisioned back to back
    await volume.write(BLOCK - 4 * KiB, bytes); // the same, now in place
    expect(data.writes.length).toBeGreaterThan(0);
    for (const { position, length } of data.writes) {
      expect(Math.floor(position / BLOCK)).toBe(Math.floor((position + length - 1) / BLOCK));
    }
    expect(await volume.read(BLOCK - 4 * KiB, bytes.length)).toEqual(bytes);
    await pool.close();
  });

  it("still syncs the data file at a flush after an overwrite that finished while a commit ran", async () => {
    const { pool, data, volume } = await poolWithOneBlockWritten();
    const releaseWrite = data.hold("writes");
    const write = volume.write(0, Buffer.alloc(4 * KiB, 4));
    // This commit's sync comes before the overwrite's bytes reach the file.
    await pool.commit();
    releaseWrite();
    await write;
    const before = data.syncs;
    await pool.commit();
    expect(data.syncs).toBe(before + 1);
    await pool.close();
  });

  it("skips the sync of a flush with nothing written or changed since the last commit", async () => {
    const { pool, data } = await poolWithOneBlockWritten();
    const before = data.syncs;
    await pool.commit();
    await pool.commit();
    expect(data.syncs).toBe(before);
    await pool.close();
  });
});
