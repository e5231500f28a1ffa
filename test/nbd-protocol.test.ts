// The NBD server, driven byte by byte by a small client written for the purpose.

import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AssertionError } from "../src/io/assert.js";
import { CorruptBlockError, IoError, MetadataFullError, OutOfRangeError, ReadOnlyError, VolumeBusyError } from "../src/errors.js";
import type { ExportCatalog } from "../src/nbd/catalog.js";
import { errnoForEngineError } from "../src/nbd/errno.js";
import { REQUEST_BYTES_MAX, type NbdLimits } from "../src/nbd/limits.js";
import * as P from "../src/nbd/protocol.js";
import { startNbdServer, type NbdServer } from "../src/nbd/server.js";
import { MemoryCatalog } from "./support/memory-catalog.js";
import { MEMORY_BLOCK_BYTES, MemoryPoolSpace, MemoryVolume } from "./support/memory-volume.js";
import { WireClient, decodeErrorPayload, exportInfo, infoData, metaContextData } from "./support/nbd-wire-client.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BLOCK = MEMORY_BLOCK_BYTES;
const LONG_NAME = "n".repeat(4096);

const READ_WRITE_FLAGS =
  P.NBD_FLAG_HAS_FLAGS |
  P.NBD_FLAG_SEND_FLUSH |
  P.NBD_FLAG_SEND_FUA |
  P.NBD_FLAG_SEND_TRIM |
  P.NBD_FLAG_SEND_WRITE_ZEROES |
  P.NBD_FLAG_CAN_MULTI_CONN |
  P.NBD_FLAG_SEND_CACHE |
  P.NBD_FLAG_SEND_FAST_ZERO;

interface Fixture {
  server: NbdServer;
  catalog: MemoryCatalog;
  disk: MemoryVolume;
  other: MemoryVolume;
  ro: MemoryVolume;
}

const running: NbdServer[] = [];
const openClients: WireClient[] = [];

afterEach(async () => {
  for (const client of openClients.splice(0)) client.close();
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function start(options: { limits?: Partial<NbdLimits>; readOnly?: boolean; socketPath?: string } = {}): Promise<Fixture> {
  const catalog = new MemoryCatalog();
  const disk = catalog.add(new MemoryVolume("disk", 16 * MiB), "the test disk");
  const other = catalog.add(new MemoryVolume("other", 1 * MiB));
  const ro = catalog.add(new MemoryVolume("ro", 1 * MiB, true), "read-only volume");
  catalog.add(new MemoryVolume(LONG_NAME, BLOCK));
  const server = await startNbdServer({
    catalog,
    ...(options.socketPath ? { socketPath: options.socketPath } : { listen: { host: "127.0.0.1", port: 0 } }),
    readOnly: options.readOnly,
    limits: options.limits,
  });
  running.push(server);
  return { server, catalog, disk, other, ro };
}

function track(client: WireClient): WireClient {
  openClients.push(client);
  return client;
}

async function handshake(server: NbdServer, flags?: number): Promise<WireClient> {
  return track(await WireClient.handshake(server, flags));
}

async function open(server: NbdServer, name = "disk", options?: { structured?: boolean; metaContext?: boolean }) {
  const opened = await WireClient.open(server, name, options);
  track(opened.client);
  return opened;
}

/** After something went wrong on one connection, a fresh client still gets served. */
async function expectStillServing(server: NbdServer): Promise<void> {
  const { client } = await open(server, "disk", { structured: false });
  const cookie = client.send({ command: P.NBD_CMD_READ, offset: 0, length: 4096 });
  const reply = await client.readSimpleReply();
  expect(reply).toEqual({ errno: 0, cookie });
  expect((await client.read(4096)).length).toBe(4096);
  client.send({ command: P.NBD_CMD_DISC });
  expect(await client.closesWithin()).toBe(true);
}

function pattern(byteLength: number, seed: number): Buffer {
  const out = Buffer.alloc(byteLength);
  for (let i = 0; i < byteLength; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return out;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("handshake", () => {
  it("greets with fixed newstyle and NO_ZEROES", async () => {
    const { server } = await start();
    const client = track(await WireClient.connect(server));
    const greeting = await client.read(18);
    expect(greeting.readBigUInt64BE(0)).toBe(P.NBD_INIT_MAGIC);
    expect(greeting.readBigUInt64BE(8)).toBe(P.NBD_OPTS_MAGIC);
    expect(greeting.readUInt16BE(16)).toBe(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
  });

  it("drops a client that sets an unknown client flag, and keeps serving others", async () => {
    const { server } = await start();
    const client = await handshake(server, P.NBD_FLAG_C_FIXED_NEWSTYLE | 0x4);
    expect(await client.closesWithin()).toBe(true);
    await expectStillServing(server);
  });

  it("EXPORT_NAME with NO_ZEROES replies with size and flags only, then serves", async () => {
    const { server, disk } = await start();
    disk.fill(0, Buffer.from("hello"));
    const client = await handshake(server);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("disk"));
    const reply = await client.read(10);
    expect(Number(reply.readBigUInt64BE(0))).toBe(16 * MiB);
    // Structured replies were not negotiated, so no DF.
    expect(reply.readUInt16BE(8)).toBe(READ_WRITE_FLAGS);
    const cookie = client.send({ command: P.NBD_CMD_READ, offset: 0, length: 5 });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie });
    expect((await client.read(5)).toString()).toBe("hello");
  });

  it("EXPORT_NAME without NO_ZEROES sends the 124 zero bytes", async () => {
    const { server } = await start();
    const client = await handshake(server, P.NBD_FLAG_C_FIXED_NEWSTYLE);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("other"));
    const reply = await client.read(134);
    expect(Number(reply.readBigUInt64BE(0))).toBe(1 * MiB);
    expect(reply.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    const cookie = client.send({ command: P.NBD_CMD_FLUSH });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie });
  });

  it("EXPORT_NAME of an unknown export closes the connection (it cannot carry an error)", async () => {
    const { server } = await start();
    const client = await handshake(server);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("nope"));
    expect(await client.closesWithin()).toBe(true);
    expect(client.pendingBytes).toBe(0);
    await expectStillServing(server);
  });

  it("ABORT is acknowledged and the connection closes", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const replies = await client.optionReplies(P.NBD_OPT_ABORT, Buffer.from("ignored"));
    expect(replies.map((r) => r.replyType)).toEqual([P.NBD_REP_ACK]);
    expect(await client.closesWithin()).toBe(true);
  });

  it("LIST names every export with its description", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const replies = await client.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    const servers = replies.slice(0, -1).map((reply) => {
      expect(reply.replyType).toBe(P.NBD_REP_SERVER);
      const nameBytes = reply.data.readUInt32BE(0);
      return { name: reply.data.subarray(4, 4 + nameBytes).toString(), description: reply.data.subarray(4 + nameBytes).toString() };
    });
    expect(servers).toEqual([
      { name: "disk", description: "the test disk" },
      { name: "other", description: "" },
      { name: "ro", description: "read-only volume" },
      { name: LONG_NAME, description: "" },
    ]);
  });

  it("LIST with data is refused as invalid without losing sync", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const replies = await client.optionReplies(P.NBD_OPT_LIST, Buffer.from("x"));
    expect(replies.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
    expect((await client.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0))).length).toBe(5);
  });

  it("INFO reports the real size, flags, block sizes, name and description, and stays in the handshake", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const replies = await client.optionReplies(
      P.NBD_OPT_INFO,
      infoData("disk", [P.NBD_INFO_NAME, P.NBD_INFO_DESCRIPTION, P.NBD_INFO_BLOCK_SIZE]),
    );
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    expect(exportInfo(replies)).toEqual({ exportBytes: 16 * MiB, flags: READ_WRITE_FLAGS });
    const byType = new Map(replies.slice(0, -1).map((reply) => [reply.data.readUInt16BE(0), reply.data]));
    expect(byType.get(P.NBD_INFO_NAME)!.subarray(2).toString()).toBe("disk");
    expect(byType.get(P.NBD_INFO_DESCRIPTION)!.subarray(2).toString()).toBe("the test disk");
    const blockSize = byType.get(P.NBD_INFO_BLOCK_SIZE)!;
    expect([blockSize.readUInt32BE(2), blockSize.readUInt32BE(6), blockSize.readUInt32BE(10)]).toEqual([1, 64 * KiB, 32 * MiB]);
    // Still negotiating: another option is answered.
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
  });

  it("GO sends NBD_INFO_EXPORT even when not asked, and enters transmission", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData("other", []));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    expect(exportInfo(replies).exportBytes).toBe(1 * MiB);
    const cookie = client.send({ command: P.NBD_CMD_FLUSH });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie });
  });

  it("GO and INFO of an unknown export fail with ERR_UNKNOWN and a message, and negotiation continues", async () => {
    const { server } = await start();
    const client = await handshake(server);
    for (const option of [P.NBD_OPT_INFO, P.NBD_OPT_GO]) {
      const replies = await client.optionReplies(option, infoData("missing", []));
      expect(replies.length).toBe(1);
      expect(replies[0]!.replyType).toBe(P.NBD_REP_ERR_UNKNOWN);
      expect(replies[0]!.data.toString()).toContain("missing");
    }
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData("disk", []));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
  });

  it("works with a catalog that answers asynchronously, and refuses an export the engine cannot open", async () => {
    const memory = new MemoryCatalog();
    memory.add(new MemoryVolume("disk", 1 * MiB), "async disk");
    // Like the pool: lookups are asynchronous and may fail with an operating error.
    const catalog: ExportCatalog = {
      list: async () => memory.list(),
      open: async (name) => {
        if (name === "broken") throw new CorruptBlockError(12, "checksum", "bad checksum");
        return memory.open(name);
      },
      flush: () => memory.flush(),
    };
    const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 } });
    running.push(server);
    const client = await handshake(server);
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData("broken", []));
    expect(replies.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_UNKNOWN]);
    expect(replies[0]!.data.toString()).toContain("bad checksum");
    expect((await client.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0))).length).toBe(2);
    const good = await client.optionReplies(P.NBD_OPT_GO, infoData("disk", [P.NBD_INFO_DESCRIPTION]));
    expect(good.map((r) => r.replyType)).toEqual([P.NBD_REP_INFO, P.NBD_REP_INFO, P.NBD_REP_INFO, P.NBD_REP_ACK]);
    expect(good[1]!.data.subarray(2).toString()).toBe("async disk");
    client.send({ command: P.NBD_CMD_FLUSH });
    expect(await client.readSimpleReply()).toMatchObject({ errno: 0 });
    expect(memory.flushCount).toBe(1);
  });

  it("GO with a name length running past the data is refused as invalid", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const data = infoData("disk", []);
    data.writeUInt32BE(200, 0);
    expect((await client.optionReplies(P.NBD_OPT_GO, data)).map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
    const bad = Buffer.concat([infoData("disk", [P.NBD_INFO_NAME]), Buffer.from([0])]);
    expect((await client.optionReplies(P.NBD_OPT_GO, bad)).map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
    const withNul = infoData(Buffer.from("di\0sk"), []);
    expect((await client.optionReplies(P.NBD_OPT_GO, withNul)).map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
  });

  it("accepts a 4096-byte export name and refuses a 4097-byte one without losing sync", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const tooLong = await client.optionReplies(P.NBD_OPT_INFO, infoData("n".repeat(4097), []));
    expect(tooLong.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData(LONG_NAME, []));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    expect(exportInfo(replies).exportBytes).toBe(BLOCK);
  });

  it("EXPORT_NAME with a 4097-byte name closes only that connection", async () => {
    const { server } = await start();
    const client = await handshake(server);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("n".repeat(4097)));
    expect(await client.closesWithin()).toBe(true);
    const good = await handshake(server);
    good.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from(LONG_NAME));
    expect(Number((await good.read(10)).readBigUInt64BE(0))).toBe(BLOCK);
  });

  it("answers unsupported options (STARTTLS, unknown numbers) with ERR_UNSUP and stays in sync", async () => {
    const { server } = await start();
    const client = await handshake(server);
    for (const option of [P.NBD_OPT_STARTTLS, 4, 11, 99, 0xffff_ffff]) {
      const replies = await client.optionReplies(option, Buffer.from("some payload to skip"));
      expect(replies.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_UNSUP]);
    }
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
  });

  it("STRUCTURED_REPLY with data is invalid", async () => {
    const { server } = await start();
    const client = await handshake(server);
    expect((await client.optionReplies(P.NBD_OPT_STRUCTURED_REPLY, Buffer.from("x"))).map((r) => r.replyType)).toEqual([
      P.NBD_REP_ERR_INVALID,
    ]);
  });

  it("LIST_META_CONTEXT lists base:allocation for no query, base: and base:allocation, ignores other namespaces", async () => {
    const { server } = await start();
    const client = await handshake(server);
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    const names = async (queries: string[]) => {
      const replies = await client.optionReplies(P.NBD_OPT_LIST_META_CONTEXT, metaContextData("disk", queries));
      expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
      return replies.slice(0, -1).map((reply) => {
        expect(reply.replyType).toBe(P.NBD_REP_META_CONTEXT);
        expect(reply.data.readUInt32BE(0)).toBe(0);
        return reply.data.subarray(4).toString();
      });
    };
    expect(await names([])).toEqual(["base:allocation"]);
    expect(await names(["base:"])).toEqual(["base:allocation"]);
    expect(await names(["base:allocation", "qemu:dirty-bitmap:x"])).toEqual(["base:allocation"]);
    expect(await names(["x-other:thing", "base:unknown"])).toEqual([]);
  });

  it("LIST_META_CONTEXT refuses a query without a namespace and an unknown export", async () => {
    const { server } = await start();
    const client = await handshake(server);
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    const noColon = await client.optionReplies(P.NBD_OPT_LIST_META_CONTEXT, metaContextData("disk", ["allocation"]));
    expect(noColon.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
    const unknown = await client.optionReplies(P.NBD_OPT_LIST_META_CONTEXT, metaContextData("missing", []));
    expect(unknown.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_UNKNOWN]);
    const truncated = metaContextData("disk", ["base:allocation"]).subarray(0, 20);
    expect((await client.optionReplies(P.NBD_OPT_LIST_META_CONTEXT, truncated)).map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
  });

  it("SET_META_CONTEXT needs structured replies, then selects base:allocation with a nonzero id", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const early = await client.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData("disk", ["base:allocation"]));
    expect(early.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_INVALID]);
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    const wildcard = await client.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData("disk", ["base:"]));
    expect(wildcard.map((r) => r.replyType)).toEqual([P.NBD_REP_ACK]);
    const replies = await client.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData("disk", ["base:allocation"]));
    expect(replies.map((r) => r.replyType)).toEqual([P.NBD_REP_META_CONTEXT, P.NBD_REP_ACK]);
    expect(replies[0]!.data.readUInt32BE(0)).toBe(P.BASE_ALLOCATION_CONTEXT_ID);
    expect(replies[0]!.data.subarray(4).toString()).toBe("base:allocation");
  });

  it("refuses an option with bad magic by closing only that connection", async () => {
    const { server } = await start();
    const client = await handshake(server);
    client.sendOption(P.NBD_OPT_LIST, Buffer.alloc(0), 0x1122334455667788n);
    expect(await client.closesWithin()).toBe(true);
    await expectStillServing(server);
  });

  it("refuses an option longer than OPTION_BYTES_MAX by closing only that connection", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 0);
    header.writeUInt32BE(P.NBD_OPT_GO, 8);
    header.writeUInt32BE(64 * KiB + 1, 12);
    client.sendRaw(header);
    expect(await client.closesWithin()).toBe(true);
    await expectStillServing(server);
  });

  it("survives a client vanishing in the middle of an option", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 0);
    header.writeUInt32BE(P.NBD_OPT_GO, 8);
    header.writeUInt32BE(100, 12);
    client.sendRaw(Buffer.concat([header, Buffer.alloc(10)]));
    client.close();
    await client.closed;
    await expectStillServing(server);
  });

  it("closes a connection that sends more than OPTIONS_PER_HANDSHAKE_MAX options", async () => {
    const { server } = await start({ limits: { optionsPerHandshakeMax: 3 } });
    const client = await handshake(server);
    for (let i = 0; i < 3; i++) await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    client.sendOption(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    expect(await client.closesWithin()).toBe(true);
    expect(client.pendingBytes).toBe(0);
  });

  it("closes a connection that does not finish its handshake within HANDSHAKE_TIMEOUT_MS", async () => {
    const { server } = await start({ limits: { handshakeTimeoutMs: 150 } });
    const client = await handshake(server);
    expect(await client.closesWithin(3_000)).toBe(true);
    await expectStillServing(server);
  });
});

describe("transmission flags", () => {
  it("advertise DF only with structured replies", async () => {
    const { server } = await start();
    expect((await open(server, "disk")).flags).toBe(READ_WRITE_FLAGS | P.NBD_FLAG_SEND_DF);
    expect((await open(server, "disk", { structured: false })).flags).toBe(READ_WRITE_FLAGS);
  });

  it("mark a read-only volume READ_ONLY and advertise no trim or zeroing on it", async () => {
    const { server } = await start();
    const { flags } = await open(server, "ro", { structured: false });
    expect(flags).toBe(
      P.NBD_FLAG_HAS_FLAGS |
        P.NBD_FLAG_READ_ONLY |
        P.NBD_FLAG_SEND_FLUSH |
        P.NBD_FLAG_SEND_FUA |
        P.NBD_FLAG_CAN_MULTI_CONN |
        P.NBD_FLAG_SEND_CACHE,
    );
  });

  it("mark every export READ_ONLY on a read-only server, and refuse writes with EPERM", async () => {
    const { server, disk } = await start({ readOnly: true });
    const { client, flags } = await open(server, "disk", { structured: false });
    expect(flags & P.NBD_FLAG_READ_ONLY).toBe(P.NBD_FLAG_READ_ONLY);
    const cookie = client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512, 1) });
    expect(await client.readSimpleReply()).toEqual({ errno: P.NBD_EPERM, cookie });
    expect(disk.calls).toEqual([]);
  });
});

describe("reads and writes", () => {
  it("write then read back the same bytes at unaligned offsets (simple replies)", async () => {
    const { server, disk } = await start();
    const { client } = await open(server, "disk", { structured: false });
    const data = pattern(200 * KiB + 3, 1);
    const offset = 3 * BLOCK - 1234;
    const w = client.send({ command: P.NBD_CMD_WRITE, offset, payload: data });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: w });
    const r = client.send({ command: P.NBD_CMD_READ, offset, length: data.length });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: r });
    expect((await client.read(data.length)).equals(data)).toBe(true);
    expect(disk.contents(offset, data.length).equals(data)).toBe(true);
  });

  it("a structured read answers unmapped ranges with hole chunks and mapped ranges with data", async () => {
    const { server, disk } = await start();
    disk.fill(1 * BLOCK, pattern(BLOCK, 2));
    disk.fill(3 * BLOCK, pattern(BLOCK, 3));
    const { client } = await open(server);
    const offset = BLOCK / 2;
    const length = 4 * BLOCK;
    const cookie = client.send({ command: P.NBD_CMD_READ, offset, length });
    const { data, chunks, errno } = await client.readStructuredRead(offset, length);
    expect(errno).toBe(0);
    expect(chunks.every((chunk) => chunk.cookie === cookie)).toBe(true);
    expect(chunks.map((c) => [c.chunkType, Number(c.payload.readBigUInt64BE(0)), c.flags])).toEqual([
      [P.NBD_REPLY_TYPE_OFFSET_HOLE, BLOCK / 2, 0],
      [P.NBD_REPLY_TYPE_OFFSET_DATA, BLOCK, 0],
      [P.NBD_REPLY_TYPE_OFFSET_HOLE, 2 * BLOCK, 0],
      [P.NBD_REPLY_TYPE_OFFSET_DATA, 3 * BLOCK, 0],
      [P.NBD_REPLY_TYPE_OFFSET_HOLE, 4 * BLOCK, P.NBD_REPLY_FLAG_DONE],
    ]);
    expect(chunks[0]!.payload.readUInt32BE(8)).toBe(BLOCK / 2);
    expect(data.equals(disk.contents(offset, length))).toBe(true);
  });

  it("a read with DF answers with exactly one data chunk, holes as zeros", async () => {
    const { server, disk } = await start();
    disk.fill(BLOCK, pattern(BLOCK, 4));
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_DF, offset: 0, length: 3 * BLOCK });
    const { data, chunks } = await client.readStructuredRead(0, 3 * BLOCK);
    expect(chunks.length).toBe(1);
    expect(chunks[0]!.chunkType).toBe(P.NBD_REPLY_TYPE_OFFSET_DATA);
    expect(chunks[0]!.flags).toBe(P.NBD_REPLY_FLAG_DONE);
    expect(data.equals(disk.contents(0, 3 * BLOCK))).toBe(true);
  });

  it("zero-length read, write, trim and write-zeroes succeed without touching the engine", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_READ, offset: 100, length: 0 });
    const chunk = await client.readChunk();
    expect([chunk.chunkType, chunk.flags, chunk.payload.length]).toEqual([P.NBD_REPLY_TYPE_NONE, P.NBD_REPLY_FLAG_DONE, 0]);
    for (const command of [P.NBD_CMD_WRITE, P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES]) {
      client.send({ command, offset: 100, length: 0 });
      expect((await client.readStatus()).errno).toBe(0);
    }
    expect(disk.calls).toEqual([]);
  });

  it("answers requests as they complete, not in the order they were sent", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    const release = disk.hold("read");
    const read = client.send({ command: P.NBD_CMD_READ, offset: 0, length: 4096 });
    const write = client.send({ command: P.NBD_CMD_WRITE, offset: 8192, payload: Buffer.alloc(4096, 7) });
    expect(await client.readStatus()).toEqual({ cookie: write, errno: 0 });
    release();
    const { chunks } = await client.readStructuredRead(0, 4096);
    expect(chunks[0]!.cookie).toBe(read);
  });

  it("keeps replies whole when many requests run at once on several connections", async () => {
    const { server, disk } = await start();
    const clients = await Promise.all([0, 1, 2].map(() => open(server)));
    await Promise.all(
      clients.map(async ({ client }, c) => {
        const region = c * 2 * MiB;
        const cookies = new Map<bigint, number>();
        for (let i = 0; i < 32; i++) {
          const offset = region + i * 48 * KiB;
          cookies.set(client.send({ command: P.NBD_CMD_WRITE, offset, payload: pattern(48 * KiB, c * 100 + i) }), offset);
        }
        for (let i = 0; i < 32; i++) {
          const { cookie, errno } = await client.readStatus();
          expect(errno).toBe(0);
          expect(cookies.delete(cookie)).toBe(true);
        }
        for (let i = 0; i < 32; i++) {
          client.send({ command: P.NBD_CMD_READ, offset: region + i * 48 * KiB, length: 48 * KiB });
          const { data } = await client.readStructuredRead(region + i * 48 * KiB, 48 * KiB);
          expect(data.equals(pattern(48 * KiB, c * 100 + i))).toBe(true);
        }
      }),
    );
    expect(disk.calls.filter((call) => call.operation === "write").length).toBe(96);
  });

  it("a second client is served while the first is connected and busy", async () => {
    const { server, disk, other } = await start();
    const first = await open(server, "disk");
    const release = disk.hold();
    first.client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512, 1) });
    const second = await open(server, "other");
    second.client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512, 2) });
    expect((await second.client.readStatus()).errno).toBe(0);
    expect(other.contents(0, 1)[0]).toBe(2);
    release();
    expect((await first.client.readStatus()).errno).toBe(0);
  });
});

describe("zeroing, trimming, flushing, caching", () => {
  it("WRITE_ZEROES of 4 GiB - 1 bytes zeroes all of it and nothing after", async () => {
    const catalog = new MemoryCatalog();
    const big = catalog.add(new MemoryVolume("big", 5 * GiB));
    const marked = [0, 100 * MiB, 3 * GiB, 4 * GiB - BLOCK, 4 * GiB, 4.5 * GiB];
    for (const offset of marked) big.fill(offset, Buffer.alloc(BLOCK, 0xee));
    const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 } });
    running.push(server);
    const { client } = await open(server, "big");
    client.send({ command: P.NBD_CMD_WRITE_ZEROES, offset: 0, length: 0xffff_ffff });
    expect((await client.readStatus()).errno).toBe(0);
    expect(big.calls.filter((call) => call.operation === "writeZeroes")).toEqual([
      { operation: "writeZeroes", offset: 0, length: 0xffff_ffff },
    ]);
    for (const offset of [0, 100 * MiB, 3 * GiB]) expect(big.contents(offset, BLOCK).equals(Buffer.alloc(BLOCK))).toBe(true);
    const lastInRange = big.contents(4 * GiB - BLOCK, BLOCK);
    expect(lastInRange.subarray(0, BLOCK - 1).equals(Buffer.alloc(BLOCK - 1))).toBe(true);
    expect(lastInRange[BLOCK - 1]).toBe(0xee);
    expect(big.contents(4 * GiB, BLOCK).equals(Buffer.alloc(BLOCK, 0xee))).toBe(true);
    expect(big.mappedBlockIndexes()).toEqual([(4 * GiB) / BLOCK - 1, (4 * GiB) / BLOCK, (4.5 * GiB) / BLOCK]);
  });

  it("WRITE_ZEROES with NO_HOLE keeps the blocks allocated; without it they are unmapped", async () => {
    const { server, disk } = await start();
    disk.fill(0, Buffer.alloc(4 * BLOCK, 9));
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_WRITE_ZEROES, flags: P.NBD_CMD_FLAG_NO_HOLE, offset: 0, length: 2 * BLOCK });
    expect((await client.readStatus()).errno).toBe(0);
    client.send({ command: P.NBD_CMD_WRITE_ZEROES, offset: 2 * BLOCK, length: 2 * BLOCK });
    expect((await client.readStatus()).errno).toBe(0);
    expect(disk.mappedBlockIndexes()).toEqual([0, 1]);
    expect(disk.contents(0, 4 * BLOCK).equals(Buffer.alloc(4 * BLOCK))).toBe(true);
    expect(disk.calls.map((c) => c.operation)).toEqual(["writeZeroes", "writeZeroes"]);
  });

  it("FAST_ZERO succeeds by unmapping, but with NO_HOLE fails fast with ENOTSUP and changes nothing", async () => {
    const { server, disk } = await start();
    disk.fill(0, Buffer.alloc(2 * BLOCK, 5));
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_WRITE_ZEROES, flags: P.NBD_CMD_FLAG_FAST_ZERO | P.NBD_CMD_FLAG_NO_HOLE, offset: 0, length: BLOCK });
    const refused = await client.readStatus();
    expect(refused.errno).toBe(P.NBD_ENOTSUP);
    expect(disk.contents(0, BLOCK).equals(Buffer.alloc(BLOCK, 5))).toBe(true);
    client.send({ command: P.NBD_CMD_WRITE_ZEROES, flags: P.NBD_CMD_FLAG_FAST_ZERO, offset: 0, length: BLOCK });
    expect((await client.readStatus()).errno).toBe(0);
    expect(disk.mappedBlockIndexes()).toEqual([1]);
  });

  it("TRIM discards: the range reads as zeros and whole blocks are unmapped", async () => {
    const { server, disk } = await start();
    disk.fill(0, Buffer.alloc(3 * BLOCK, 4));
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_TRIM, offset: BLOCK / 2, length: 2 * BLOCK });
    expect((await client.readStatus()).errno).toBe(0);
    expect(disk.mappedBlockIndexes()).toEqual([0, 2]);
    expect(disk.contents(BLOCK / 2, 2 * BLOCK).equals(Buffer.alloc(2 * BLOCK))).toBe(true);
    expect(disk.contents(0, BLOCK / 2).equals(Buffer.alloc(BLOCK / 2, 4))).toBe(true);
  });

  it("FLUSH commits the catalog; FUA on a write commits it before the reply", async () => {
    const { server, catalog } = await start();
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_FLUSH });
    expect((await client.readStatus()).errno).toBe(0);
    expect(catalog.flushCount).toBe(1);
    client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(100, 1) });
    await client.readStatus();
    expect(catalog.flushCount).toBe(1);
    for (const command of [P.NBD_CMD_WRITE, P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES]) {
      const before = catalog.flushCount;
      client.send({
        command,
        flags: P.NBD_CMD_FLAG_FUA,
        offset: 0,
        length: 100,
        payload: command === P.NBD_CMD_WRITE ? Buffer.alloc(100, 2) : undefined,
      });
      expect((await client.readStatus()).errno).toBe(0);
      expect(catalog.flushCount).toBe(before + 1);
    }
  });

  it("FUA is accepted on commands that write nothing", async () => {
    const { server } = await start();
    const { client } = await open(server, "disk", { structured: false });
    const cookie = client.send({ command: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_FUA, offset: 0, length: 16 });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie });
    await client.read(16);
  });

  it("FLUSH with a nonzero offset or length is invalid", async () => {
    const { server } = await start();
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_FLUSH, offset: 512 });
    expect((await client.readStatus()).errno).toBe(P.NBD_EINVAL);
    client.send({ command: P.NBD_CMD_FLUSH, length: 512 });
    expect((await client.readStatus()).errno).toBe(P.NBD_EINVAL);
  });

  it("a failed flush is reported as EIO and the connection carries on", async () => {
    const { server, catalog } = await start();
    const { client } = await open(server);
    catalog.flushFailure = new IoError("/pool/meta", new Error("disk on fire"));
    client.send({ command: P.NBD_CMD_FLUSH });
    const failed = await client.readStatus();
    expect(failed.errno).toBe(P.NBD_EIO);
    expect(failed.message).toContain("disk on fire");
    client.send({ command: P.NBD_CMD_FLUSH });
    expect((await client.readStatus()).errno).toBe(0);
  });

  it("CACHE succeeds within the export", async () => {
    const { server } = await start();
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_CACHE, offset: 0, length: 1 * MiB });
    expect((await client.readStatus()).errno).toBe(0);
  });
});

describe("block status", () => {
  it("reports unmapped ranges as HOLE|ZERO and mapped ones as data", async () => {
    const { server, disk } = await start();
    disk.fill(1 * BLOCK, Buffer.alloc(BLOCK, 1));
    disk.fill(3 * BLOCK, Buffer.alloc(2 * BLOCK, 1));
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: 8 * BLOCK });
    const chunks = await client.readChunksUntilDone();
    expect(chunks.length).toBe(1);
    const chunk = chunks[0]!;
    expect(chunk.chunkType).toBe(P.NBD_REPLY_TYPE_BLOCK_STATUS);
    expect(chunk.flags).toBe(P.NBD_REPLY_FLAG_DONE);
    expect(chunk.payload.readUInt32BE(0)).toBe(P.BASE_ALLOCATION_CONTEXT_ID);
    const descriptors = [];
    for (let at = 4; at < chunk.payload.length; at += 8)
      descriptors.push([chunk.payload.readUInt32BE(at) / BLOCK, chunk.payload.readUInt32BE(at + 4)]);
    const hole = P.NBD_STATE_HOLE | P.NBD_STATE_ZERO;
    expect(descriptors).toEqual([
      [1, hole],
      [1, 0],
      [1, hole],
      [2, 0],
      [3, hole],
    ]);
  });

  it("with REQ_ONE returns exactly one extent, no longer than asked", async () => {
    const { server, disk } = await start();
    disk.fill(BLOCK, Buffer.alloc(BLOCK, 1));
    const { client } = await open(server);
    const one = async (offset: number, length: number) => {
      client.send({ command: P.NBD_CMD_BLOCK_STATUS, flags: P.NBD_CMD_FLAG_REQ_ONE, offset, length });
      const [chunk] = await client.readChunksUntilDone();
      expect(chunk!.payload.length).toBe(12);
      return [chunk!.payload.readUInt32BE(4), chunk!.payload.readUInt32BE(8)];
    };
    expect(await one(0, 8 * BLOCK)).toEqual([BLOCK, P.NBD_STATE_HOLE | P.NBD_STATE_ZERO]);
    expect(await one(BLOCK + 10, 100)).toEqual([100, 0]);
    expect(await one(BLOCK + 10, 8 * BLOCK)).toEqual([BLOCK - 10, 0]);
  });

  it("is refused with EINVAL when no context was selected, or it was selected for another export", async () => {
    const { server } = await start();
    const { client } = await open(server, "disk", { metaContext: false });
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: 4096 });
    expect((await client.readStatus()).errno).toBe(P.NBD_EINVAL);
    const mismatched = await handshake(server);
    await mismatched.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    await mismatched.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData("other", ["base:allocation"]));
    await mismatched.optionReplies(P.NBD_OPT_GO, infoData("disk", []));
    mismatched.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: 4096 });
    expect((await mismatched.readStatus()).errno).toBe(P.NBD_EINVAL);
  });
});

describe("request errors", () => {
  it("answers an unknown command and unadvertised flags with EINVAL and carries on", async () => {
    const { server } = await start();
    const { client } = await open(server);
    const cases: { command: number; flags?: number; offset?: number; length?: number }[] = [
      { command: 42, length: 512 },
      { command: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_FAST_ZERO, length: 512 },
      { command: P.NBD_CMD_READ, flags: 1 << 15, length: 512 },
      { command: P.NBD_CMD_TRIM, flags: P.NBD_CMD_FLAG_NO_HOLE, length: 512 },
      { command: P.NBD_CMD_FLUSH, flags: P.NBD_CMD_FLAG_REQ_ONE },
      { command: P.NBD_CMD_CACHE, flags: P.NBD_CMD_FLAG_DF, length: 512 },
    ];
    for (const request of cases) {
      const cookie = client.send(request);
      const reply = await client.readStatus();
      expect(reply.cookie).toBe(cookie);
      expect(reply.errno).toBe(P.NBD_EINVAL);
    }
    client.send({ command: P.NBD_CMD_READ, offset: 0, length: 512 });
    expect((await client.readStructuredRead(0, 512)).errno).toBe(0);
  });

  it("answers FAST_ZERO with EINVAL where it was not advertised (read-only export)", async () => {
    const { server } = await start();
    const { client } = await open(server, "ro");
    client.send({ command: P.NBD_CMD_WRITE_ZEROES, flags: P.NBD_CMD_FLAG_FAST_ZERO, offset: 0, length: 512 });
    expect((await client.readStatus()).errno).toBe(P.NBD_EINVAL);
  });

  it("a READ with DF without structured replies is EINVAL with no payload", async () => {
    const { server } = await start();
    const { client } = await open(server, "disk", { structured: false });
    const bad = client.send({ command: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_DF, offset: 0, length: 512 });
    expect(await client.readSimpleReply()).toEqual({ errno: P.NBD_EINVAL, cookie: bad });
    const good = client.send({ command: P.NBD_CMD_FLUSH });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: good });
  });

  it("read, trim, cache and block status past the end are EINVAL; write and write-zeroes are ENOSPC", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    const end = 16 * MiB;
    const expectations: [number, number][] = [
      [P.NBD_CMD_READ, P.NBD_EINVAL],
      [P.NBD_CMD_TRIM, P.NBD_EINVAL],
      [P.NBD_CMD_CACHE, P.NBD_EINVAL],
      [P.NBD_CMD_BLOCK_STATUS, P.NBD_EINVAL],
      [P.NBD_CMD_WRITE_ZEROES, P.NBD_ENOSPC],
      [P.NBD_CMD_WRITE, P.NBD_ENOSPC],
    ];
    for (const [command, errno] of expectations) {
      const payload = command === P.NBD_CMD_WRITE ? Buffer.alloc(1024, 3) : undefined;
      client.send({ command, offset: end - 512, length: 1024, payload });
      if (command === P.NBD_CMD_READ) expect((await client.readStructuredRead(end - 512, 1024)).errno).toBe(errno);
      else expect((await client.readStatus()).errno).toBe(errno);
    }
    // Offsets beyond 2^53 and beyond 2^63 are past the end too, not a crash.
    for (const offset of [2n ** 53n, 2n ** 64n - 1n]) {
      client.send({ command: P.NBD_CMD_TRIM, offset, length: 1 });
      expect((await client.readStatus()).errno).toBe(P.NBD_EINVAL);
    }
    expect(disk.calls).toEqual([]);
    // The refused write's payload was consumed: the next request is understood.
    client.send({ command: P.NBD_CMD_READ, offset: end - 512, length: 512 });
    expect((await client.readStructuredRead(end - 512, 512)).errno).toBe(0);
  });

  it("takes a 64 MiB WRITE and READ, past the advertised 32 MiB, from a client that never negotiated block sizes", async () => {
    const catalog = new MemoryCatalog();
    catalog.add(new MemoryVolume("big", REQUEST_BYTES_MAX));
    const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 } });
    running.push(server);
    const client = await handshake(server);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("big"));
    expect(Number((await client.read(10)).readBigUInt64BE(0))).toBe(REQUEST_BYTES_MAX);
    expect(REQUEST_BYTES_MAX).toBe(64 * MiB);
    const payload = pattern(REQUEST_BYTES_MAX, 9);
    const written = client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: written });
    const read = client.send({ command: P.NBD_CMD_READ, offset: 0, length: REQUEST_BYTES_MAX });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: read });
    expect((await client.read(REQUEST_BYTES_MAX)).equals(payload)).toBe(true);
  });

  it("a READ longer than REQUEST_BYTES_MAX is EINVAL, not a disconnect", async () => {
    const { server } = await start();
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_READ, offset: 0, length: REQUEST_BYTES_MAX + 1 });
    const [chunk] = await client.readChunksUntilDone();
    expect(decodeErrorPayload(chunk!.payload).errno).toBe(P.NBD_EINVAL);
  });

  it("writes to a read-only export are EPERM, and the payload is still consumed", async () => {
    const { server, ro } = await start();
    const { client } = await open(server, "ro");
    client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: pattern(64 * KiB, 5) });
    const refused = await client.readStatus();
    expect(refused.errno).toBe(P.NBD_EPERM);
    expect(refused.message).toContain("read-only");
    for (const command of [P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES]) {
      client.send({ command, offset: 0, length: 512 });
      expect((await client.readStatus()).errno).toBe(P.NBD_EPERM);
    }
    client.send({ command: P.NBD_CMD_READ, offset: 0, length: 512 });
    expect((await client.readStructuredRead(0, 512)).errno).toBe(0);
    expect(ro.calls.map((c) => c.operation)).toEqual(["read"]);
  });

  it("a write with an invalid flag is EINVAL and its payload is consumed", async () => {
    const { server, disk } = await start();
    const { client } = await open(server, "disk", { structured: false });
    const bad = client.send({ command: P.NBD_CMD_WRITE, flags: P.NBD_CMD_FLAG_REQ_ONE, offset: 0, payload: Buffer.alloc(3000, 1) });
    expect(await client.readSimpleReply()).toEqual({ errno: P.NBD_EINVAL, cookie: bad });
    const good = client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(3000, 2) });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: good });
    expect(disk.contents(0, 3000).equals(Buffer.alloc(3000, 2))).toBe(true);
  });

  it("maps engine errors by code and keeps the connection", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    const cases: [Error, number][] = [
      [new MetadataFullError(1000), P.NBD_ENOSPC],
      [new OutOfRangeError("disk", 0, 10, 5), P.NBD_EINVAL],
      [new ReadOnlyError("volume 'disk'"), P.NBD_EPERM],
      [new CorruptBlockError(7, "checksum", "bad checksum"), P.NBD_EIO],
      [new IoError("/data", new Error("EIO")), P.NBD_EIO],
      [new VolumeBusyError("disk", "being deleted"), P.NBD_EIO],
      [new Error("something unexpected"), P.NBD_EIO],
    ];
    for (const [error, errno] of cases) {
      disk.failNext("write", error);
      client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512) });
      const reply = await client.readStatus();
      expect(reply.errno).toBe(errno);
      expect(reply.message).toBe(error.message);
    }
    disk.fill(0, Buffer.alloc(512, 1));
    disk.failNext("read", new CorruptBlockError(9, "checksum", "bad checksum"));
    client.send({ command: P.NBD_CMD_READ, offset: 0, length: 512 });
    expect((await client.readStructuredRead(0, 512)).errno).toBe(P.NBD_EIO);
    client.send({ command: P.NBD_CMD_READ, offset: 0, length: 512 });
    expect((await client.readStructuredRead(0, 512)).errno).toBe(0);
  });

  it("a failed read with simple replies sends the error and no data", async () => {
    const { server, disk } = await start();
    const { client } = await open(server, "disk", { structured: false });
    disk.failNext("read", new CorruptBlockError(9, "checksum", "bad checksum"));
    const bad = client.send({ command: P.NBD_CMD_READ, offset: 0, length: 4096 });
    expect(await client.readSimpleReply()).toEqual({ errno: P.NBD_EIO, cookie: bad });
    const good = client.send({ command: P.NBD_CMD_FLUSH });
    expect(await client.readSimpleReply()).toEqual({ errno: 0, cookie: good });
  });

  it("a full pool makes writes fail with ENOSPC", async () => {
    const catalog = new MemoryCatalog();
    const volume = catalog.add(new MemoryVolume("small", 1 * MiB, false, new MemoryPoolSpace(2)));
    const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 } });
    running.push(server);
    const { client } = await open(server, "small");
    client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(2 * BLOCK, 1) });
    expect((await client.readStatus()).errno).toBe(0);
    client.send({ command: P.NBD_CMD_WRITE, offset: 2 * BLOCK, payload: Buffer.alloc(512, 1) });
    const full = await client.readStatus();
    expect(full.errno).toBe(P.NBD_ENOSPC);
    expect(full.message).toContain("pool is full");
    expect(volume.mappedBlockIndexes()).toEqual([0, 1]);
  });

  it("a failed assertion is not turned into an NBD error", () => {
    expect(() => errnoForEngineError(new AssertionError("broken invariant"))).toThrow(AssertionError);
    expect(errnoForEngineError(new MetadataFullError(1))).toBe(P.NBD_ENOSPC);
  });
});

describe("malformed transmission input", () => {
  it("a bad request magic closes only that connection", async () => {
    const { server } = await start();
    const { client } = await open(server);
    client.sendRaw(Buffer.alloc(28, 0xab));
    expect(await client.closesWithin()).toBe(true);
    await expectStillServing(server);
  });

  it("a WRITE longer than REQUEST_BYTES_MAX closes only that connection", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    client.send({ command: P.NBD_CMD_WRITE, offset: 0, length: REQUEST_BYTES_MAX + 1 });
    expect(await client.closesWithin()).toBe(true);
    expect(disk.calls).toEqual([]);
    await expectStillServing(server);
  });

  it("a client vanishing in the middle of a write payload affects nobody else", async () => {
    const { server, disk, catalog } = await start();
    const { client } = await open(server);
    const header = Buffer.alloc(28);
    header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(P.NBD_CMD_WRITE, 6);
    header.writeUInt32BE(1 * MiB, 24);
    client.sendRaw(Buffer.concat([header, Buffer.alloc(1000, 1)]));
    client.close();
    await until(() => catalog.attached.size === 0, "the connection to detach");
    expect(disk.calls).toEqual([]);
    await expectStillServing(server);
  });
});

describe("connections", () => {
  it("DISC answers outstanding requests before closing", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    const release = disk.hold();
    const cookie = client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(4096, 1) });
    client.send({ command: P.NBD_CMD_DISC });
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    expect(await client.readStatus()).toEqual({ cookie, errno: 0 });
    expect(await client.closesWithin()).toBe(true);
  });

  it("attaches each transmission connection to its export and detaches it once", async () => {
    const { server, catalog } = await start();
    const a = await open(server, "disk");
    await open(server, "disk");
    await open(server, "other");
    expect(Object.fromEntries(catalog.attached)).toEqual({ disk: 2, other: 1 });
    a.client.send({ command: P.NBD_CMD_DISC });
    await until(() => catalog.attached.get("disk") === 1, "one detach");
    for (const client of openClients) client.close();
    await until(() => catalog.attached.size === 0, "all detached");
    expect(catalog.attachCount).toBe(3);
    expect(catalog.detachCount).toBe(3);
  });

  it("a busy export refuses GO with a message and EXPORT_NAME by closing; nothing stays attached", async () => {
    const { server, catalog } = await start();
    catalog.busy.add("disk");
    const client = await handshake(server);
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData("disk", []));
    expect(replies.map((r) => r.replyType)).toEqual([P.NBD_REP_ERR_UNKNOWN]);
    expect(replies[0]!.data.toString()).toContain("being deleted");
    // INFO does not attach, so it still answers.
    const info = await client.optionReplies(P.NBD_OPT_INFO, infoData("disk", []));
    expect(info[info.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("disk"));
    expect(await client.closesWithin()).toBe(true);
    expect(catalog.attachCount).toBe(0);
    expect(catalog.detachCount).toBe(0);
  });

  it("stops reading at INFLIGHT_REQUESTS_MAX and resumes as requests complete", async () => {
    const { server, disk } = await start({ limits: { inflightRequestsMax: 2 } });
    const { client } = await open(server);
    const release = disk.hold();
    for (let i = 0; i < 6; i++) client.send({ command: P.NBD_CMD_WRITE, offset: i * 4096, payload: Buffer.alloc(4096, i) });
    await until(() => disk.running === 2, "two requests in the engine");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(disk.calls.length).toBe(2);
    release();
    for (let i = 0; i < 6; i++) expect((await client.readStatus()).errno).toBe(0);
    expect(disk.runningMax).toBe(2);
  });

  it("stops reading when the in-flight byte budget is spent", async () => {
    // The smallest budget the server takes: one request of the largest size accepted.
    const { server, disk } = await start({ limits: { inflightBytesMax: REQUEST_BYTES_MAX } });
    const { client } = await open(server);
    const release = disk.hold();
    const readBytes = REQUEST_BYTES_MAX / 4;
    for (let i = 0; i < 6; i++) client.send({ command: P.NBD_CMD_READ, offset: 0, length: readBytes });
    await until(() => disk.running === 4, "four reads in the engine");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(disk.calls.length).toBe(4);
    release();
    for (let i = 0; i < 6; i++) expect((await client.readStructuredRead(0, readBytes)).errno).toBe(0);
  });

  it("stops reading while the client does not take its replies", async () => {
    const { server, disk } = await start({ limits: { replyBufferBytesMax: 1 } });
    disk.fill(0, pattern(1 * MiB, 6));
    const { client } = await open(server, "disk", { structured: false });
    client.socket.pause();
    const requests = 48;
    for (let i = 0; i < requests; i++) client.send({ command: P.NBD_CMD_READ, offset: 0, length: 1 * MiB });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(disk.calls.length).toBeLessThan(requests);
    client.socket.resume();
    for (let i = 0; i < requests; i++) {
      expect((await client.readSimpleReply()).errno).toBe(0);
      expect((await client.read(1 * MiB)).equals(disk.contents(0, 1 * MiB))).toBe(true);
    }
    expect(disk.calls.length).toBe(requests);
  });

  it("refuses connections beyond CONNECTIONS_MAX and accepts again when one leaves", async () => {
    const { server } = await start({ limits: { connectionsMax: 2 } });
    const a = await open(server);
    await open(server);
    const refused = track(await WireClient.connect(server));
    expect(await refused.closesWithin()).toBe(true);
    expect(refused.pendingBytes).toBe(0);
    a.client.send({ command: P.NBD_CMD_DISC });
    await a.client.closed;
    await until(() => server.connectionCount === 1, "the connection count to drop");
    await open(server);
  });

  it("close() lets in-flight requests finish, closes connections and stops accepting", async () => {
    const { server, disk } = await start();
    const { client } = await open(server);
    const idle = await handshake(server);
    const release = disk.hold();
    const cookie = client.send({ command: P.NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(4096, 8) });
    await until(() => disk.running === 1, "the write to start");
    const closing = server.close();
    expect(await idle.closesWithin()).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    expect(await client.readStatus()).toEqual({ cookie, errno: 0 });
    expect(await client.closesWithin()).toBe(true);
    await closing;
    expect(disk.contents(0, 1)[0]).toBe(8);
    const address = server.address;
    if (address.kind !== "tcp") throw new Error("tcp expected");
    await expect(
      new Promise((resolve, reject) => net.connect({ host: address.host, port: address.port }).on("connect", resolve).on("error", reject)),
    ).rejects.toThrow(/ECONNREFUSED/);
  });

  it("serves over a Unix socket and names it in its URI", async () => {
    const dir = mkdtempSync(join(tmpdir(), "thinp-nbd-"));
    try {
      const socketPath = join(dir, "nbd.sock");
      const { server } = await start({ socketPath });
      expect(server.address).toEqual({ kind: "unix", socketPath });
      expect(server.uri("disk")).toBe(`nbd+unix:///disk?socket=${encodeURIComponent(socketPath)}`);
      await expectStillServing(server);
    } finally {
      await Promise.all(running.splice(0).map((server) => server.close()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names TCP exports in nbd:// URIs", async () => {
    const { server } = await start();
    const address = server.address;
    expect(address.kind).toBe("tcp");
    if (address.kind === "tcp") expect(server.uri("my disk")).toBe(`nbd://127.0.0.1:${address.port}/my%20disk`);
  });
});
