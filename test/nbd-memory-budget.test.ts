// The server-wide budget for bytes in flight: many connections together never hold more
// request payload and reply data than limits.serverInflightBytesMax, a connection whose next
// request does not fit waits without reading its payload, and every request still gets its
// reply with the right bytes.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { IoError } from "../src/errors.js";
import { AssertionError } from "../src/io/assert.js";
import { ByteBudget } from "../src/nbd/byte-budget.js";
import {
  DEFAULT_LIMITS,
  FREED_PAYLOAD_BYTES_MIN,
  REQUEST_BYTES_MAX,
  SERVER_BUFFER_BYTES_MAX,
  SERVER_INFLIGHT_BYTES_MAX,
  serverBufferBytesMax,
  type NbdLimits,
} from "../src/nbd/limits.js";
import * as P from "../src/nbd/protocol.js";
import { startNbdServer, type NbdServer } from "../src/nbd/server.js";
import { SocketReader } from "../src/nbd/socket-reader.js";
import { MemoryCatalog } from "./support/memory-catalog.js";
import { MemoryVolume } from "./support/memory-volume.js";
import { WireClient } from "./support/nbd-wire-client.js";

const MiB = 1024 * 1024;
/** The smallest budget the server takes: one request of the largest size accepted. */
const BUDGET_BYTES = REQUEST_BYTES_MAX;
const SMALL_LIMITS: Partial<NbdLimits> = { serverInflightBytesMax: BUDGET_BYTES, inflightBytesMax: REQUEST_BYTES_MAX };

const running: NbdServer[] = [];
const openClients: WireClient[] = [];

afterEach(async () => {
  for (const client of openClients.splice(0)) client.close();
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function start(volumes: MemoryVolume[], limits: Partial<NbdLimits> = SMALL_LIMITS): Promise<NbdServer> {
  const catalog = new MemoryCatalog();
  for (const volume of volumes) catalog.add(volume);
  const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 }, limits });
  running.push(server);
  return server;
}

async function open(server: NbdServer, name: string): Promise<WireClient> {
  const { client } = await WireClient.open(server, name, { structured: false });
  openClients.push(client);
  return client;
}

/** Distinct bytes for each (volume, request), cheaply: a xorshift over 32-bit words. */
function pattern(byteLength: number, seed: number): Buffer {
  const out = Buffer.alloc(byteLength);
  const words = new Uint32Array(out.buffer, out.byteOffset, byteLength / 4);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Reads `expected.size` simple replies, in whatever order they come; a READ's data follows
 * its header. Returns each cookie's errno and data (empty for writes).
 */
async function collectReplies(client: WireClient, expected: Map<bigint, number>): Promise<Map<bigint, { errno: number; data: Buffer }>> {
  const replies = new Map<bigint, { errno: number; data: Buffer }>();
  for (let i = 0; i < expected.size; i++) {
    const { cookie, errno } = await client.readSimpleReply();
    const readBytes = expected.get(cookie);
    expect(readBytes, `a reply for cookie ${cookie}, which is in flight`).toBeDefined();
    expect(replies.has(cookie), `one reply for cookie ${cookie}`).toBe(false);
    const data = errno === 0 && readBytes! > 0 ? Buffer.from(await client.read(readBytes!, 20_000)) : Buffer.alloc(0);
    replies.set(cookie, { errno, data });
  }
  return replies;
}

describe("the byte budget", () => {
  const never = new AbortController().signal;

  it("grants in arrival order: a large reservation is not passed by smaller ones behind it", async () => {
    const budget = new ByteBudget(100);
    expect(await budget.acquire(60, never)).toBe(true);
    const order: string[] = [];
    const large = budget.acquire(80, never).then(() => order.push("large"));
    const small = budget.acquire(10, never).then(() => order.push("small"));
    await sleep(10);
    // 10 bytes would fit, but the 80 came first.
    expect(order).toEqual([]);
    expect(budget.report()).toMatchObject({ inUseBytes: 60, waiting: 2 });
    budget.release(60);
    await Promise.all([large, small]);
    expect(order).toEqual(["large", "small"]);
    expect(budget.report()).toMatchObject({ inUseBytes: 90, peakBytes: 90, waiting: 0, waitedCount: 2 });
  });

  it("a cancelled wait holds nothing and lets the ones behind it in", async () => {
    const budget = new ByteBudget(100);
    expect(await budget.acquire(50, never)).toBe(true);
    const stop = new AbortController();
    const cancelled = budget.acquire(100, stop.signal);
    const behind = budget.acquire(30, never);
    stop.abort();
    expect(await cancelled).toBe(false);
    expect(await behind).toBe(true);
    expect(budget.report()).toMatchObject({ inUseBytes: 80, waiting: 0 });
    expect(await budget.acquire(10, stop.signal), "an aborted signal takes nothing").toBe(false);
  });

  it("refuses a reservation larger than the whole budget, which could never be granted", () => {
    expect(() => void new ByteBudget(10).acquire(11, never)).toThrow(AssertionError);
  });
});

describe("the server's in-flight budget", () => {
  it("many connections pipelining large WRITEs and READs never hold more than the budget, and every byte arrives", async () => {
    const connectionCount = 8;
    const requestBytes = 2 * MiB;
    const writesPerConnection = 6;
    const volumeBytes = 16 * MiB;
    const volumes = Array.from({ length: connectionCount }, (_, i) => new MemoryVolume(`v${i}`, volumeBytes));
    const server = await start(volumes);
    const clients = await Promise.all(volumes.map((volume) => open(server, volume.name)));

    // Phase 1: the engine holds every request, so what the server admits piles up. The
    // connections want 8 × 6 × 2 MiB = 96 MiB; each alone is far from its own 64 MiB limit.
    const releases = volumes.map((volume) => volume.hold());
    const written = volumes.map((_, v) => Array.from({ length: writesPerConnection }, (_, i) => pattern(requestBytes, v * 100 + i)));
    const phase1 = clients.map((client, v) => {
      const cookies = new Map<bigint, number>();
      written[v]!.forEach((payload, i) => cookies.set(client.send({ command: P.NBD_CMD_WRITE, offset: i * requestBytes, payload }), 0));
      return cookies;
    });
    const inEngine = () => volumes.reduce((sum, volume) => sum + volume.running, 0);
    const admittedMax = BUDGET_BYTES / requestBytes;
    await until(() => inEngine() === admittedMax, `${admittedMax} writes in the engine`);
    await sleep(150);
    // Exactly the budget's worth was read off the sockets; the rest of the payloads wait
    // in the clients' sockets, and the connections that want more wait their turn.
    expect(inEngine()).toBe(admittedMax);
    expect(volumes.reduce((sum, volume) => sum + volume.calls.length, 0)).toBe(admittedMax);
    expect(server.inflight).toMatchObject({ capacityBytes: BUDGET_BYTES, inUseBytes: BUDGET_BYTES, peakBytes: BUDGET_BYTES });
    expect(server.inflight.waiting).toBeGreaterThan(0);
    for (const release of releases) release();
    const phase1Replies = await Promise.all(clients.map((client, v) => collectReplies(client, phase1[v]!)));
    for (const replies of phase1Replies) for (const { errno } of replies.values()) expect(errno).toBe(0);
    volumes.forEach((volume, v) => {
      written[v]!.forEach((payload, i) => expect(volume.contents(i * requestBytes, requestBytes).equals(payload)).toBe(true));
    });

    // Phase 2, free running: every connection reads back all it wrote while writing the rest
    // of its volume, 8 × 8 × 2 MiB = 128 MiB wanted at once.
    const tailWrites = (volumeBytes - writesPerConnection * requestBytes) / requestBytes;
    const phase2 = clients.map((client, v) => {
      const reads = new Map<bigint, number>();
      const cookies = new Map<bigint, number>();
      for (let i = 0; i < writesPerConnection; i++) {
        const cookie = client.send({ command: P.NBD_CMD_READ, offset: i * requestBytes, length: requestBytes });
        reads.set(cookie, i);
        cookies.set(cookie, requestBytes);
        if (i < tailWrites) {
          const payload = pattern(requestBytes, v * 100 + writesPerConnection + i);
          written[v]!.push(payload);
          cookies.set(client.send({ command: P.NBD_CMD_WRITE, offset: (writesPerConnection + i) * requestBytes, payload }), 0);
        }
      }
      return { reads, cookies };
    });
    const phase2Replies = await Promise.all(clients.map((client, v) => collectReplies(client, phase2[v]!.cookies)));
    phase2Replies.forEach((replies, v) => {
      for (const [cookie, { errno, data }] of replies) {
        expect(errno).toBe(0);
        const index = phase2[v]!.reads.get(cookie);
        if (index !== undefined) expect(data.equals(written[v]![index]!), `read ${index} of v${v}`).toBe(true);
      }
    });
    volumes.forEach((volume, v) => {
      expect(volume.contents(0, volumeBytes).equals(Buffer.concat(written[v]!)), `v${v} afterwards`).toBe(true);
    });

    // The high-water mark covers both phases; every byte came back.
    const { peakBytes, waitedCount } = server.inflight;
    expect(peakBytes).toBeLessThanOrEqual(BUDGET_BYTES);
    expect(waitedCount).toBeGreaterThan(0);
    await until(() => server.inflight.inUseBytes === 0, "every byte released");
  });

  it("one connection gets maximum-size requests through the smallest budget: none waits for itself", async () => {
    const volume = new MemoryVolume("big", 2 * REQUEST_BYTES_MAX);
    const server = await start([volume]);
    const client = await open(server, "big");
    const payload = pattern(REQUEST_BYTES_MAX, 7);
    const cookies = new Map<bigint, number>();
    cookies.set(client.send({ command: P.NBD_CMD_WRITE, offset: REQUEST_BYTES_MAX, payload }), 0);
    const read = client.send({ command: P.NBD_CMD_READ, offset: REQUEST_BYTES_MAX, length: REQUEST_BYTES_MAX });
    cookies.set(read, REQUEST_BYTES_MAX);
    const replies = await collectReplies(client, cookies);
    expect([...replies.values()].map((reply) => reply.errno)).toEqual([0, 0]);
    // The READ was read only after the WRITE's reply went out, so it sees the write.
    expect(replies.get(read)!.data.equals(payload)).toBe(true);
    expect(server.inflight.peakBytes).toBe(REQUEST_BYTES_MAX);
  });

  it("a client that leaves its READ replies unread holds at most its own limit, and its bytes come back when it goes", async () => {
    const stalled = new MemoryVolume("stalled", 64 * MiB);
    const other = new MemoryVolume("other", 1 * MiB);
    other.fill(0, pattern(1 * MiB, 3));
    const server = await start([stalled, other], { serverInflightBytesMax: 2 * REQUEST_BYTES_MAX, inflightBytesMax: REQUEST_BYTES_MAX });
    const reader = await open(server, "stalled");
    reader.socket.pause();
    // Held in the engine until the connection's own limit (four of them) is in flight, so
    // that all four replies then wait for a client that reads none.
    const release = stalled.hold();
    for (let i = 0; i < 8; i++) reader.send({ command: P.NBD_CMD_READ, offset: i * 4 * MiB, length: 16 * MiB });
    await until(() => stalled.running === 4, "four reads in the engine");
    release();
    // The kernel takes a few MiB of the first reply; every reply stays charged until all of it has gone.
    await until(() => server.inflight.waiting === 0 && stalled.running === 0, "the four replies to be queued");
    await sleep(100);
    expect(server.inflight.inUseBytes).toBe(REQUEST_BYTES_MAX);
    expect(stalled.calls.length, "reading paused at the connection's limit").toBe(4);

    // Another connection still has the rest of the budget.
    const client = await open(server, "other");
    const cookie = client.send({ command: P.NBD_CMD_READ, offset: 0, length: 1 * MiB });
    const replies = await collectReplies(client, new Map([[cookie, 1 * MiB]]));
    expect(replies.get(cookie)!.data.equals(other.contents(0, 1 * MiB))).toBe(true);

    reader.close();
    await until(() => server.inflight.inUseBytes === 0, "the vanished client's bytes to come back");
    expect(server.inflight.peakBytes).toBeLessThanOrEqual(2 * REQUEST_BYTES_MAX);
  });

  it("a connection waiting for the budget lets close() finish once the requests in flight are answered", async () => {
    const busy = new MemoryVolume("busy", REQUEST_BYTES_MAX);
    const waiting = new MemoryVolume("waiting", 1 * MiB);
    const server = await start([busy, waiting]);
    const holder = await open(server, "busy");
    const release = busy.hold();
    const held = holder.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: pattern(REQUEST_BYTES_MAX, 1) });
    await until(() => busy.running === 1, "the write holding the whole budget to reach the engine");
    const waiter = await open(server, "waiting");
    waiter.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: pattern(1 * MiB, 2) });
    await until(() => server.inflight.waiting === 1, "the second connection to wait");
    const closed = server.close();
    // The waiting request was never admitted, so it is dropped; the one in flight finishes.
    expect(await waiter.closesWithin()).toBe(true);
    expect(waiting.calls.length).toBe(0);
    release();
    expect(await holder.readSimpleReply()).toEqual({ errno: 0, cookie: held });
    await closed;
    expect(server.inflight).toMatchObject({ inUseBytes: 0, waiting: 0 });
  });

  it("refuses a budget that could not hold one maximum-size request", async () => {
    await expect(start([], { serverInflightBytesMax: REQUEST_BYTES_MAX - 1 })).rejects.toThrow(AssertionError);
  });
});

/** A memory volume that keeps every buffer the server passed to write, to see what became of it. */
class KeepingVolume extends MemoryVolume {
  readonly written: Uint8Array[] = [];
  override async write(offset: number, bytes: Uint8Array): Promise<void> {
    this.written.push(bytes);
    await super.write(offset, bytes);
  }
}

describe("a WRITE payload's memory", () => {
  it("is freed once the WRITE succeeds, while a small or failed one is left to the collector", async () => {
    const volume = new KeepingVolume("keep", 8 * MiB);
    const server = await start([volume]);
    const client = await open(server, "keep");
    const large = pattern(FREED_PAYLOAD_BYTES_MIN, 1);
    const small = pattern(FREED_PAYLOAD_BYTES_MIN / 4, 2);
    const expectReply = async (errno: number) => expect((await client.readSimpleReply()).errno).toBe(errno);
    client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: large });
    await expectReply(0);
    client.send({ command: P.NBD_CMD_WRITE, offset: 2 * MiB, payload: small });
    await expectReply(0);
    volume.failNext("write", new IoError("/dev/test", new Error("EIO")));
    client.send({ command: P.NBD_CMD_WRITE, offset: 4 * MiB, payload: large });
    await expectReply(P.NBD_EIO);
    // Freed: the buffer the engine was given is now empty, and what it wrote is intact.
    expect(volume.written.map((bytes) => bytes.length)).toEqual([0, small.length, large.length]);
    expect(volume.contents(0, large.length).equals(large)).toBe(true);
    expect(volume.contents(2 * MiB, small.length).equals(small)).toBe(true);
  });
});

/** Remembers the buffers its reads return, to see what became of them. */
class ReturningVolume extends MemoryVolume {
  readonly returned: Buffer[] = [];

  override async read(offset: number, length: number): Promise<Buffer> {
    const bytes = await super.read(offset, length);
    this.returned.push(bytes);
    return bytes;
  }
}

describe("a READ reply's memory", () => {
  it("is freed once the kernel has taken the reply, which the client receives whole; a small one is left alone", async () => {
    const volume = new ReturningVolume("give", 8 * MiB);
    const large = pattern(FREED_PAYLOAD_BYTES_MIN, 3);
    volume.fill(0, large);
    const server = await start([volume]);
    const client = await open(server, "give");
    const readBack = async (length: number) => {
      client.send({ command: P.NBD_CMD_READ, offset: 0, length });
      expect((await client.readSimpleReply()).errno).toBe(0);
      return client.read(length);
    };
    expect((await readBack(large.length)).equals(large)).toBe(true);
    expect((await readBack(4096)).equals(large.subarray(0, 4096))).toBe(true);
    // This reply comes after the large one was written out: by then that one is freed.
    await readBack(4096);
    expect(volume.returned.map((bytes) => bytes.length)).toEqual([0, 4096, 4096]);
  });
});

describe("reading a message that has not arrived yet", () => {
  it("copies each chunk into the message as it comes and frees the chunks it used whole", async () => {
    const socket = new PassThrough();
    const reader = new SocketReader(socket, 1024);
    const message = pattern(3 * 4096, 5);
    const reading = reader.readExact(message.length);
    // Chunks of their own memory, as Node's socket delivers them; the last one runs past the message.
    const chunks = [0, 1, 2].map((i) => Buffer.from(message.subarray(i * 4096, (i + 1) * 4096)));
    const tail = Buffer.concat([chunks[2]!, Buffer.from("next")]);
    socket.write(chunks[0]!);
    socket.write(chunks[1]!);
    socket.write(tail);
    expect((await reading).equals(message)).toBe(true);
    expect(chunks[0]!.length, "used whole, so freed").toBe(0);
    expect(chunks[1]!.length).toBe(0);
    expect(tail.length, "partly used, so kept: the rest is the next message").toBe(4096 + 4);
    expect((await reader.readExact(4)).toString()).toBe("next");
  });
});

describe("the documented memory bound", () => {
  it("formats/nbd-protocol.md states the worst case the limits give", () => {
    const text = readFileSync(join(import.meta.dirname, "..", "formats", "nbd-protocol.md"), "utf8").replace(/\s+/g, " ");
    const stated = `${serverBufferBytesMax(DEFAULT_LIMITS)} bytes`;
    expect(text.includes(stated), `formats/nbd-protocol.md says "${stated}"`).toBe(true);
    expect(serverBufferBytesMax(DEFAULT_LIMITS)).toBeLessThanOrEqual(SERVER_BUFFER_BYTES_MAX);
    expect(SERVER_INFLIGHT_BYTES_MAX).toBe(DEFAULT_LIMITS.serverInflightBytesMax);
  });
});
