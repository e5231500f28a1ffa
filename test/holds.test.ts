// Holds (src/thin/holds.ts, Pool.hold): hidden snapshots that keep a volume's contents while
// a reader goes through them, whatever is written to the volume meanwhile.

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { receiveStream } from "../src/thin/receive.js";
import { PoolReceiveTarget } from "../src/thin/receive-target.js";
import { encodeSendStream, openHeldSendSource } from "../src/thin/send.js";

const B = DATA_BLOCK_BYTES;

async function memoryPool(): Promise<{ pool: Pool; meta: MemoryStorageFile }> {
  const meta = new MemoryStorageFile("meta");
  const pool = await Pool.formatFiles(meta, new MemoryStorageFile("data"), { sizeBytes: 256 * B });
  return { pool, meta };
}

async function contents(pool: Pool, name: string): Promise<Buffer> {
  const volume = await pool.volume(name);
  return volume.read(0, volume.sizeBytes);
}

describe("holds", () => {
  it("a hold keeps the volume's contents as sealed, and a stream made from it names that generation", async () => {
    const { pool } = await memoryPool();
    await pool.createVolume("vol", 8 * B);
    const volume = await pool.volume("vol");
    await volume.write(0, Buffer.alloc(2 * B, 1));
    // A write in flight when the hold is asked for is in it: the gate lets it finish first.
    const inFlight = volume.write(4 * B, Buffer.alloc(B, 4));
    const held = await pool.hold("vol", { seal: true });
    await inFlight;
    const asHeld = await contents(pool, "vol");
    expect(asHeld.subarray(4 * B, 5 * B).equals(Buffer.alloc(B, 4))).toBe(true);

    await volume.write(0, Buffer.alloc(B, 9));
    await volume.discard(4 * B, B);
    expect((await contents(pool, held.holdName)).equals(asHeld)).toBe(true);
    const info = (await pool.listVolumes()).find((listed) => listed.name === "vol")!;
    expect(held.identity.uuid).toBe(info.uuid);
    // The write unsealed the volume and raised its generation; the hold names the sealed one.
    const now = await pool.transactions.read(async (metadata) => (await metadata.requireVolume("vol")).record);
    expect(now.generation).toBe(held.identity.generation + 1);
    expect(now.sealed).toBe(false);

    const source = await openHeldSendSource(pool, {
      volume: { name: "vol", readName: held.holdName, identity: held.identity },
      base: null,
      release: () => pool.releaseHolds([held.holdName]),
    });
    const chunks: Buffer[] = [];
    for await (const chunk of encodeSendStream(source)) chunks.push(Buffer.from(chunk));
    await source.close();
    const { pool: receiver } = await memoryPool();
    const stream = (async function* () {
      yield* chunks;
    })();
    const received = await receiveStream(stream, new PoolReceiveTarget(receiver, "vol"));
    expect(received.header.volume).toEqual(held.identity);
    expect((await contents(receiver, "vol")).equals(asHeld)).toBe(true);
  });

  it("holds are hidden, and once released (or released as leftovers) the pool counts only its volumes and checks clean", async () => {
    const { pool, meta } = await memoryPool();
    await pool.createVolume("a", 4 * B);
    await pool.createVolume("b", 4 * B);
    await (await pool.volume("a")).write(0, Buffer.alloc(B, 1));
    const all = await pool.holdAll();
    expect(all.map((hold) => hold.name)).toEqual(["a", "b"]);
    const one = await pool.hold("a", { seal: false });
    // Every volume the pool holds, hidden ones too; status counts only what a user sees.
    const held = () => pool.transactions.inspect((metadata) => metadata.volumeCount);
    expect((await pool.listVolumes()).map((info) => info.name)).toEqual(["a", "b"]);
    expect(held()).toBe(5);
    expect(pool.status().volumeCount).toBe(2);
    await (await pool.volume("a")).write(0, Buffer.alloc(B, 2));
    await pool.releaseHolds([one.holdName]);
    expect(held()).toBe(4);
    // As after a crash: the holds nobody released.
    expect(await pool.releaseLeftoverHolds()).toBe(2);
    expect(held()).toBe(2);
    expect((await checkMetadataFile(meta, "meta")).problems).toEqual([]);
    expect((await contents(pool, "a")).subarray(0, B).equals(Buffer.alloc(B, 2))).toBe(true);
  });
});
