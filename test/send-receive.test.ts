// Send and receive between two pools, through the library: whole and incremental streams,
// what the receiver refuses, every truncation and every flipped byte of a small stream
// (each leaves the receiving pool exactly as it was), and resuming a cut receive.

import { describe, expect, it } from "vitest";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { receiveStream } from "../src/thin/receive.js";
import { PoolReceiveTarget, interruptedReceive, type PoolReceiveOptions } from "../src/thin/receive-target.js";
import { decodeResumeToken } from "../src/thin/resume-token.js";
import { encodeSendStream, openSendSource, type SendOptions } from "../src/thin/send.js";

const POOL_BYTES = 512 * DATA_BLOCK_BYTES;
const B = DATA_BLOCK_BYTES;

interface MemoryPool {
  pool: Pool;
  meta: MemoryStorageFile;
  data: MemoryStorageFile;
}

async function memoryPool(): Promise<MemoryPool> {
  const meta = new MemoryStorageFile("meta");
  const data = new MemoryStorageFile("data");
  return { pool: await Pool.formatFiles(meta, data, { sizeBytes: POOL_BYTES }), meta, data };
}

async function send(pool: Pool, name: string, options: SendOptions = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of encodeSendStream(await openSendSource(pool, name, options))) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function receive(pool: Pool, name: string, stream: Buffer | Buffer[], options: PoolReceiveOptions = {}) {
  const target = new PoolReceiveTarget(pool, name, options);
  const chunks = Array.isArray(stream) ? stream : [stream];
  return {
    target,
    result: await receiveStream(
      (async function* () {
        yield* chunks;
      })(),
      target,
    ),
  };
}

async function contents(pool: Pool, name: string): Promise<Buffer> {
  const volume = await pool.volume(name);
  return volume.read(0, volume.sizeBytes);
}

async function fileBytes(file: MemoryStorageFile): Promise<Buffer> {
  const bytes = Buffer.alloc(await file.byteLength());
  await file.read(bytes, 0);
  return bytes;
}

/** Sender with base (8 blocks written), s1, then changes, s2. */
async function history(): Promise<MemoryPool> {
  const sender = await memoryPool();
  const { pool } = sender;
  await pool.createVolume("base", 16 * B);
  const base = await pool.volume("base");
  await base.write(0, Buffer.alloc(8 * B, 1));
  await pool.snapshot("base", "s1");
  await base.write(2 * B, Buffer.alloc(B, 2));
  await base.write(10 * B + 100, Buffer.alloc(300, 3));
  await base.discard(5 * B, B);
  await pool.snapshot("base", "s2");
  await pool.commit();
  return sender;
}

describe("send and receive", () => {
  it("a whole stream, then an incremental one, make byte-identical volumes that share their unchanged blocks", async () => {
    const { pool: sender } = await history();
    const { pool: receiver, meta } = await memoryPool();
    const whole = await send(sender, "s1");
    const first = await receive(receiver, "s1", whole);
    expect(first.result.incremental).toBe(false);
    expect(first.result.dataBlocks).toBe(8);
    const incremental = await send(sender, "s2", { from: "s1" });
    expect(incremental.length).toBeLessThan(whole.length / 2);
    const second = await receive(receiver, "copy-of-s2", incremental);
    expect(second.result).toMatchObject({ incremental: true, dataBlocks: 2, unmappedBlocks: 1 });
    for (const [from, to] of [
      ["s1", "s1"],
      ["s2", "copy-of-s2"],
    ] as const) {
      expect((await contents(receiver, to)).equals(await contents(sender, from)), to).toBe(true);
    }
    const infos = await receiver.listVolumes();
    const senderInfos = await sender.listVolumes();
    expect(infos.find((v) => v.name === "copy-of-s2")!.uuid).toBe(senderInfos.find((v) => v.name === "s2")!.uuid);
    // 8 blocks from s1, of which s2 keeps 6 shared; 2 new ones; nothing hidden is left.
    expect(await receiver.usage("copy-of-s2")).toEqual({ mappedBlocks: 8, exclusiveBlocks: 2, sharedBlocks: 6 });
    expect(receiver.status().dataBlocksUsed).toBe(10);
    expect(infos.map((v) => v.name)).toEqual(["s1", "copy-of-s2"]);
    await receiver.close();
    expect((await checkMetadataFile(meta, "meta")).problems).toEqual([]);
  });

  it("refuses an incremental stream whose base it lacks, or holds changed", async () => {
    const { pool: sender } = await history();
    const { pool: receiver } = await memoryPool();
    const incremental = await send(sender, "s2", { from: "s1" });
    await expect(receive(receiver, "s2", incremental)).rejects.toThrow(/which this pool does not hold: receive that volume first/);
    await receive(receiver, "s1", await send(sender, "s1"));
    await (await receiver.volume("s1")).write(0, Buffer.alloc(512, 9));
    await expect(receive(receiver, "s2", incremental)).rejects.toMatchObject({
      code: "BASE_MISMATCH",
      message: expect.stringMatching(/'s1' here is the stream's base, but it has changed/),
    });
    expect((await receiver.listVolumes()).map((v) => v.name)).toEqual(["s1"]);
    await receiver.close();
  });

  it("a base written on the sending side after it was sent is refused on the receiving side", async () => {
    const { pool: sender } = await history();
    const { pool: receiver } = await memoryPool();
    await receive(receiver, "s1", await send(sender, "s1"));
    await (await sender.volume("s1")).write(B, Buffer.alloc(B, 7));
    await expect(receive(receiver, "s2", await send(sender, "s2", { from: "s1" }))).rejects.toMatchObject({
      code: "BASE_MISMATCH",
      message: expect.stringMatching(/the sender's copy has changed since this one was received \(generation 1 there, 0 here\)/),
    });
    await receiver.close();
  });

  it("refuses a stream of a volume it holds already", async () => {
    const { pool: sender } = await history();
    const { pool: receiver } = await memoryPool();
    const whole = await send(sender, "s1");
    await receive(receiver, "s1", whole);
    await expect(receive(receiver, "again", whole)).rejects.toThrow(/holds the volume that stream carries already, as 's1'/);
    await receiver.close();
  });

  // A volume of one block and a bit: the stream is an unmapped run, a short data record and the end.
  async function smallIncremental(): Promise<{ base: Buffer; incremental: Buffer; expected: Buffer }> {
    const { pool: sender } = await memoryPool();
    await sender.createVolume("v", B + 1024);
    const v = await sender.volume("v");
    await v.write(0, Buffer.alloc(B + 1024, 5));
    await sender.snapshot("v", "a");
    await v.discard(0, B);
    await v.write(B, Buffer.alloc(512, 6));
    await sender.snapshot("v", "b");
    const base = await send(sender, "a");
    const incremental = await send(sender, "b", { from: "a" });
    return { base, incremental, expected: await contents(sender, "b") };
  }

  it("a stream cut at any byte, or with any byte flipped, leaves the receiving pool exactly as it was", async () => {
    const { base, incremental, expected } = await smallIncremental();
    expect(incremental.length).toBeLessThan(1400);
    const { pool: receiver, meta, data } = await memoryPool();
    await receive(receiver, "a", base);
    await receiver.close();
    const metaBefore = await fileBytes(meta);
    const variants: { what: string; bytes: Buffer }[] = [];
    for (let cut = 0; cut < incremental.length; cut++) variants.push({ what: `cut at ${cut}`, bytes: incremental.subarray(0, cut) });
    for (let at = 0; at < incremental.length; at++) {
      const flipped = Buffer.from(incremental);
      flipped[at] = flipped[at]! ^ 0x20;
      variants.push({ what: `byte ${at} flipped`, bytes: flipped });
    }
    variants.push({ what: "a byte appended", bytes: Buffer.concat([incremental, Buffer.alloc(1)]) });
    for (const { what, bytes } of variants) {
      const pool = await Pool.openFiles(meta, data);
      // Some variants arrive a byte at a time, so every read boundary is crossed.
      const chunks = bytes.length % 5 !== 0 ? [bytes] : [...bytes].map((byte) => Buffer.of(byte));
      const failure = await receive(pool, "b", chunks).then(
        () => null,
        (error: Error) => error,
      );
      expect(failure, what).toMatchObject({ code: expect.stringMatching(/^(STREAM_CORRUPT|BASE_MISMATCH|INVALID_ARGUMENT)$/) });
      // As a failed command does: close without committing.
      await pool.close();
      expect((await fileBytes(meta)).equals(metaBefore), what).toBe(true);
    }
    const pool = await Pool.openFiles(meta, data);
    expect((await pool.listVolumes()).map((v) => v.name)).toEqual(["a"]);
    await receive(pool, "b", incremental);
    expect((await contents(pool, "b")).equals(expected)).toBe(true);
    await pool.close();
  });

  it("a resumable receive cut short keeps its progress, and goes on from a stream the token starts", async () => {
    const { pool: sender } = await history();
    await sender.createVolume("big", 64 * B);
    const big = await sender.volume("big");
    for (let block = 0; block < 64; block += 2) await big.write(block * B, Buffer.alloc(B, block + 1));
    await sender.commit();
    const whole = await send(sender, "big");
    const { pool: receiver } = await memoryPool();
    const cutAt = Math.floor(whole.length * 0.6);
    const failure = await receive(receiver, "big", whole.subarray(0, cutAt), { resumable: true, progressBytes: 4 * B }).then(
      () => null,
      (error: Error) => error,
    );
    expect(failure).toMatchObject({ code: "STREAM_CORRUPT" });
    expect((await receiver.listVolumes()).map((v) => v.name)).toEqual([]);
    const kept = await interruptedReceive(receiver, "big");
    expect(kept).not.toBeNull();
    const token = decodeResumeToken(kept!.token);
    expect(token.nextBlock).toBeGreaterThan(20);
    expect(token.nextBlock).toBeLessThan(64);
    // A plain receive of the same name is refused while the interrupted one is kept.
    await expect(receive(receiver, "big", whole)).rejects.toThrow(/an interrupted receive of 'big' is kept/);
    const rest = await send(sender, "big", { resume: token });
    expect(rest.length).toBeLessThan(whole.length * 0.7);
    const resumed = await receive(receiver, "big", rest, { resume: true });
    expect(resumed.result.resumedFrom).toBe(token.nextBlock);
    expect((await contents(receiver, "big")).equals(await contents(sender, "big"))).toBe(true);
    expect(await interruptedReceive(receiver, "big")).toBeNull();
    await receiver.close();
  });

  it("a crash anywhere in a resumable receive reopens to nothing listed, and resumes to the same volume", async () => {
    const { pool: sender } = await history();
    await sender.createVolume("big", 48 * B);
    const big = await sender.volume("big");
    for (let block = 0; block < 48; block += 3) await big.write(block * B, Buffer.alloc(2 * B, block + 1));
    await sender.commit();
    const whole = await send(sender, "big");
    const expected = await contents(sender, "big");
    for (const fraction of [0.1, 0.35, 0.6, 0.85, 0.999]) {
      const { pool: receiver, meta, data } = await memoryPool();
      let crashed: { meta: MemoryStorageFile; data: MemoryStorageFile } | null = null;
      const crashAt = Math.floor(whole.length * fraction);
      const source = async function* () {
        for (let at = 0; at < whole.length; at += 4096) {
          // What a power cut at this moment would leave.
          if (crashed === null && at >= crashAt) crashed = { meta: meta.durableCopy(), data: data.durableCopy() };
          yield whole.subarray(at, Math.min(whole.length, at + 4096));
        }
      };
      await receiveStream(source(), new PoolReceiveTarget(receiver, "big", { resumable: true, progressBytes: 3 * B }));
      await receiver.close();
      const after = await Pool.openFiles(crashed!.meta, crashed!.data);
      expect(await after.listVolumes(), `crash at ${fraction}`).toEqual([]);
      const kept = await interruptedReceive(after, "big");
      if (kept === null) {
        // The crash came before the first progress commit: start again.
        await receive(after, "big", whole);
      } else {
        await receive(after, "big", await send(sender, "big", { resume: decodeResumeToken(kept.token) }), { resume: true });
      }
      expect((await contents(after, "big")).equals(expected), `crash at ${fraction}`).toBe(true);
      await after.close();
      expect((await checkMetadataFile(crashed!.meta, "meta")).problems, `crash at ${fraction}`).toEqual([]);
    }
  });

  it("what a crash left of a receive that was not resumable is dropped by the next receive of that name", async () => {
    const { pool: sender } = await history();
    const whole = await send(sender, "s1");
    const { pool: receiver, meta, data } = await memoryPool();
    // As a server does: a commit of its own lands while the receive is under way, then the power goes.
    const target = new PoolReceiveTarget(receiver, "s1");
    const cut = receiveStream(
      (async function* () {
        yield whole.subarray(0, whole.length - 100);
        await receiver.commit();
        throw new Error("power cut");
      })(),
      target,
    );
    await expect(cut).rejects.toThrow("power cut");
    const crashed = await Pool.openFiles(meta.durableCopy(), data.durableCopy());
    expect(await interruptedReceive(crashed, "s1")).not.toBeNull();
    const again = await receive(crashed, "s1", whole);
    expect(again.result.dataBlocks).toBe(8);
    expect(await interruptedReceive(crashed, "s1")).toBeNull();
    expect((await contents(crashed, "s1")).equals(await contents(sender, "s1"))).toBe(true);
    await crashed.close();
    await receiver.close();
  });

  it("a token is refused by a sender whose volume has changed since", async () => {
    const { pool: sender } = await history();
    const whole = await send(sender, "s2");
    const { pool: receiver } = await memoryPool();
    await receive(receiver, "s2", whole.subarray(0, whole.length - 10), { resumable: true, progressBytes: 1 }).catch(() => undefined);
    const token = decodeResumeToken((await interruptedReceive(receiver, "s2"))!.token);
    await (await sender.volume("s2")).write(0, Buffer.alloc(512, 1));
    await expect(send(sender, "s2", { resume: token })).rejects.toThrow(/changed since; send it anew/);
    await receiver.close();
  });
});
