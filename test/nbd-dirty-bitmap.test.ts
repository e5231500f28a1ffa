// Incremental backup over NBD: every export offers qemu:dirty-bitmap:BASE for each other
// volume BASE of the pool, marking the blocks in which the export differs from BASE. First
// byte by byte against a served pool in this process, then through the clients backup tools
// are built on (nbdinfo, qemu-img) against `thinp serve`. The tools are Debian packages
// (libnbd-bin, qemu-utils); a missing tool fails the test rather than skipping it.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ServedPool } from "../src/control/served-pool.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { LISTED_DIRTY_BITMAPS_MAX, META_CONTEXTS_SELECTED_MAX } from "../src/nbd/limits.js";
import { contextsToList } from "../src/nbd/meta-context.js";
import * as P from "../src/nbd/protocol.js";
import { startNbdServer, type NbdServer } from "../src/nbd/server.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCliOk } from "./support/cli-run.js";
import { killAllServers, startServe } from "./support/cli-serve-process.js";
import { WireClient, decodeErrorPayload, infoData, metaContextData, type Chunk } from "./support/nbd-wire-client.js";

const BLOCK = DATA_BLOCK_BYTES;
const KiB = 1024;
const MiB = 1024 * KiB;
const VOLUME_BYTES = 8 * MiB;

/** A run of one status: what nbdinfo --map --json and our decoding of a chunk both give. */
interface StatusRun {
  offset: number;
  length: number;
  type: number;
}

/** Runs of `flags` tiling [0, sizeBytes): DIRTY where `dirty` says, clean elsewhere. */
function bitmapRuns(dirty: readonly { offset: number; length: number }[], sizeBytes: number): StatusRun[] {
  const runs: StatusRun[] = [];
  let cursor = 0;
  for (const range of dirty) {
    if (range.offset > cursor) runs.push({ offset: cursor, length: range.offset - cursor, type: 0 });
    runs.push({ offset: range.offset, length: range.length, type: P.NBD_STATE_DIRTY });
    cursor = range.offset + range.length;
  }
  if (cursor < sizeBytes) runs.push({ offset: cursor, length: sizeBytes - cursor, type: 0 });
  return runs;
}

/** A BLOCK_STATUS chunk's context id and its descriptors as runs from `offset`. */
function decodeStatusChunk(chunk: Chunk, offset: number): { contextId: number; runs: StatusRun[] } {
  expect(chunk.chunkType).toBe(P.NBD_REPLY_TYPE_BLOCK_STATUS);
  const runs: StatusRun[] = [];
  let cursor = offset;
  for (let at = 4; at < chunk.payload.length; at += 8) {
    const length = chunk.payload.readUInt32BE(at);
    runs.push({ offset: cursor, length, type: chunk.payload.readUInt32BE(at + 4) });
    cursor += length;
  }
  return { contextId: chunk.payload.readUInt32BE(0), runs };
}

describe("qemu:dirty-bitmap contexts on the wire", () => {
  const servers: NbdServer[] = [];
  const clients: WireClient[] = [];
  const pools: Pool[] = [];
  let socketDir: string | null = null;

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    for (const pool of pools.splice(0)) await pool.close();
    if (socketDir !== null) rmSync(socketDir, { recursive: true, force: true });
    socketDir = null;
  });

  /**
   * base: blocks 0-3 written, then s1; then block 1 rewritten, block 2 discarded (s1 maps
   * it), block 9 written; then s2. So s2 differs from s1 in blocks 1, 2 and 9.
   */
  async function start(): Promise<{ server: NbdServer; served: ServedPool }> {
    const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), { sizeBytes: 256 * BLOCK });
    pools.push(pool);
    const served = await ServedPool.start(pool);
    await served.createVolume("base", 16 * BLOCK);
    const base = (await served.open("base"))!;
    await base.write(0, Buffer.alloc(4 * BLOCK, 0x11));
    await served.snapshot("base", "s1", { readOnly: true });
    await base.write(BLOCK + 512, Buffer.alloc(512, 0x22));
    await base.discard(2 * BLOCK, BLOCK);
    await base.write(9 * BLOCK, Buffer.alloc(BLOCK, 0x33));
    await served.snapshot("base", "s2", { readOnly: false });
    socketDir = mkdtempSync(path.join(tmpdir(), "thinp-bitmap-"));
    const server = await startNbdServer({ catalog: served, socketPath: path.join(socketDir, "nbd.sock") });
    servers.push(server);
    return { server, served };
  }

  async function handshake(server: NbdServer): Promise<WireClient> {
    const client = await WireClient.handshake(server);
    clients.push(client);
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    return client;
  }

  async function listed(client: WireClient, exportName: string, queries: string[]): Promise<string[]> {
    const replies = await client.optionReplies(P.NBD_OPT_LIST_META_CONTEXT, metaContextData(exportName, queries));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    return replies.slice(0, -1).map((reply) => {
      expect(reply.replyType).toBe(P.NBD_REP_META_CONTEXT);
      expect(reply.data.readUInt32BE(0)).toBe(0);
      return reply.data.subarray(4).toString();
    });
  }

  async function selected(client: WireClient, exportName: string, queries: string[]): Promise<Map<string, number>> {
    const replies = await client.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData(exportName, queries));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    return new Map(replies.slice(0, -1).map((reply) => [reply.data.subarray(4).toString(), reply.data.readUInt32BE(0)]));
  }

  async function go(client: WireClient, exportName: string): Promise<void> {
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData(exportName, []));
    expect(replies[replies.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
  }

  it("LIST_META_CONTEXT offers a bitmap for every other volume: with no query, qemu: and qemu:dirty-bitmap:", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const others = ["qemu:dirty-bitmap:base", "qemu:dirty-bitmap:s1"];
    expect(await listed(client, "s2", [])).toEqual(["base:allocation", ...others]);
    expect(await listed(client, "s2", ["qemu:dirty-bitmap:"])).toEqual(others);
    expect(await listed(client, "s2", ["qemu:"])).toEqual(others);
    expect(await listed(client, "s2", ["base:"])).toEqual(["base:allocation"]);
    expect(await listed(client, "s2", ["qemu:dirty-bitmap:s1", "base:allocation"])).toEqual(["base:allocation", "qemu:dirty-bitmap:s1"]);
    // Itself, a volume that does not exist, and qemu contexts we do not serve: not offered, and no error.
    expect(await listed(client, "s2", ["qemu:dirty-bitmap:s2", "qemu:dirty-bitmap:nope", "qemu:allocation-depth"])).toEqual([]);
    expect(await listed(client, "base", ["qemu:dirty-bitmap:"])).toEqual(["qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"]);
  });

  it("SET_META_CONTEXT selects base:allocation and a bitmap under distinct ids, skipping unknown bitmaps and wildcards", async () => {
    const { server } = await start();
    const client = await handshake(server);
    expect(await selected(client, "s2", ["qemu:dirty-bitmap:", "qemu:", "qemu:dirty-bitmap:nope"])).toEqual(new Map());
    const ids = await selected(client, "s2", ["qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:nope", "base:allocation", "qemu:dirty-bitmap:s1"]);
    expect([...ids.keys()].sort()).toEqual(["base:allocation", "qemu:dirty-bitmap:s1"]);
    expect(ids.get("base:allocation")).not.toBe(ids.get("qemu:dirty-bitmap:s1"));
  });

  it(`SET_META_CONTEXT of more than ${META_CONTEXTS_SELECTED_MAX} contexts is TOO_BIG`, async () => {
    const { server, served } = await start();
    for (let i = 0; i < META_CONTEXTS_SELECTED_MAX; i++) await served.createVolume(`v${i}`, BLOCK);
    const client = await handshake(server);
    const queries = ["base:allocation", ...Array.from({ length: META_CONTEXTS_SELECTED_MAX }, (_, i) => `qemu:dirty-bitmap:v${i}`)];
    const replies = await client.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData("s2", queries));
    expect(replies.map((reply) => reply.replyType)).toEqual([P.NBD_REP_ERR_TOO_BIG]);
    expect((await selected(client, "s2", queries.slice(0, META_CONTEXTS_SELECTED_MAX))).size).toBe(META_CONTEXTS_SELECTED_MAX);
  });

  it("BLOCK_STATUS answers one chunk per selected context: allocation, and the blocks that differ from the base", async () => {
    const { server } = await start();
    const client = await handshake(server);
    const ids = await selected(client, "s2", ["base:allocation", "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:base"]);
    await go(client, "s2");
    const size = 16 * BLOCK;
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: size });
    const chunks = await client.readChunksUntilDone();
    expect(chunks.map((chunk) => chunk.flags & P.NBD_REPLY_FLAG_DONE)).toEqual([0, 0, P.NBD_REPLY_FLAG_DONE]);
    const byId = new Map(chunks.map((chunk) => decodeStatusChunk(chunk, 0)).map((decoded) => [decoded.contextId, decoded.runs]));
    // s2 shares every mapped block with base (written before s2): HOLE (1) for shared, HOLE|ZERO (3) unmapped.
    expect(byId.get(ids.get("base:allocation")!)).toEqual([
      { offset: 0, length: 2 * BLOCK, type: P.NBD_STATE_HOLE },
      { offset: 2 * BLOCK, length: BLOCK, type: P.NBD_STATE_HOLE | P.NBD_STATE_ZERO },
      { offset: 3 * BLOCK, length: BLOCK, type: P.NBD_STATE_HOLE },
      { offset: 4 * BLOCK, length: 5 * BLOCK, type: P.NBD_STATE_HOLE | P.NBD_STATE_ZERO },
      { offset: 9 * BLOCK, length: BLOCK, type: P.NBD_STATE_HOLE },
      { offset: 10 * BLOCK, length: 6 * BLOCK, type: P.NBD_STATE_HOLE | P.NBD_STATE_ZERO },
    ]);
    expect(byId.get(ids.get("qemu:dirty-bitmap:s1")!)).toEqual(
      bitmapRuns(
        [
          { offset: BLOCK, length: 2 * BLOCK },
          { offset: 9 * BLOCK, length: BLOCK },
        ],
        size,
      ),
    );
    expect(byId.get(ids.get("qemu:dirty-bitmap:base")!)).toEqual([{ offset: 0, length: size, type: 0 }]);

    // A range inside the volume, not on block boundaries, with REQ_ONE: one descriptor per context.
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, flags: P.NBD_CMD_FLAG_REQ_ONE, offset: BLOCK + 100, length: 4 * BLOCK });
    const one = (await client.readChunksUntilDone()).map((chunk) => decodeStatusChunk(chunk, BLOCK + 100));
    const oneById = new Map(one.map((decoded) => [decoded.contextId, decoded.runs]));
    expect(oneById.get(ids.get("qemu:dirty-bitmap:s1")!)).toEqual([{ offset: BLOCK + 100, length: 2 * BLOCK - 100, type: 1 }]);
    expect(oneById.get(ids.get("qemu:dirty-bitmap:base")!)).toEqual([{ offset: BLOCK + 100, length: 4 * BLOCK, type: 0 }]);
  });

  it("a bitmap whose base is deleted fails BLOCK_STATUS with EINVAL naming it, and the connection carries on", async () => {
    const { server, served } = await start();
    const client = await handshake(server);
    await selected(client, "s2", ["qemu:dirty-bitmap:s1"]);
    await go(client, "s2");
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: BLOCK });
    expect((await client.readStatus()).errno).toBe(0);

    expect(await served.deleteVolume("s1", { defer: false })).toEqual({ deferred: false });
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: BLOCK });
    const chunks = await client.readChunksUntilDone();
    expect(chunks.map((chunk) => chunk.chunkType)).toEqual([P.NBD_REPLY_TYPE_ERROR]);
    const error = decodeErrorPayload(chunks[0]!.payload);
    expect(error.errno).toBe(P.NBD_EINVAL);
    expect(error.message).toMatch(/'s1'/);
    // A new volume of that name is not the base the client chose.
    await served.snapshot("base", "s1", { readOnly: false });
    client.send({ command: P.NBD_CMD_BLOCK_STATUS, offset: 0, length: BLOCK });
    expect((await client.readStatus()).errno).toBe(P.NBD_EINVAL);

    client.send({ command: P.NBD_CMD_READ, offset: 9 * BLOCK, length: 4096 });
    const read = await client.readStructuredRead(9 * BLOCK, 4096);
    expect(read.errno).toBe(0);
    expect(read.data.equals(Buffer.alloc(4096, 0x33))).toBe(true);
    // And the deleted volume is no longer offered to new selections.
    const fresh = await handshake(server);
    expect(await listed(fresh, "s2", ["qemu:dirty-bitmap:"])).toEqual(["qemu:dirty-bitmap:base", "qemu:dirty-bitmap:s1"]);
  });
});

describe("listing many bitmaps", () => {
  it(`past ${LISTED_DIRTY_BITMAPS_MAX} bitmaps a wildcard lists qemu:dirty-bitmap: itself, and full names are still answered`, () => {
    const many = Array.from({ length: LISTED_DIRTY_BITMAPS_MAX + 1 }, (_, i) => `v${i}`);
    expect(contextsToList([], many)).toEqual({ ok: true, contexts: ["base:allocation", "qemu:dirty-bitmap:"] });
    expect(contextsToList(["qemu:"], many)).toEqual({ ok: true, contexts: ["qemu:dirty-bitmap:"] });
    expect(contextsToList(["qemu:dirty-bitmap:v7"], many)).toEqual({ ok: true, contexts: ["qemu:dirty-bitmap:v7"] });
    const enough = many.slice(0, LISTED_DIRTY_BITMAPS_MAX);
    expect((contextsToList(["qemu:dirty-bitmap:"], enough) as { contexts: string[] }).contexts).toHaveLength(LISTED_DIRTY_BITMAPS_MAX);
  });
});

describe("qemu:dirty-bitmap through nbdinfo and qemu-img against thinp serve", () => {
  let dir: string;
  beforeAll(() => assertCliBuilt());
  afterEach(async () => {
    killAllServers();
    await removeTempDir(dir);
  });

  it("maps exactly the blocks written or discarded between two snapshots", async () => {
    dir = await makeTempDir();
    const cwd = { cwd: dir };
    const pool = await Pool.create(path.join(dir, "data.img"), path.join(dir, "meta.img"), { sizeBytes: 256 * MiB });
    await pool.createVolume("base", VOLUME_BYTES);
    const base = await pool.volume("base");
    await base.write(0, Buffer.alloc(8 * BLOCK, 0x11));
    await base.write(20 * BLOCK, Buffer.alloc(BLOCK, 0x22));
    await base.write(40 * BLOCK, Buffer.alloc(2 * BLOCK, 0x22));
    await pool.snapshot("base", "s1");
    await pool.commit();
    await pool.close();

    const server = await startServe(["--socket", "nbd.sock"], cwd);
    const socketPath = path.join(dir, "nbd.sock");
    const uri = (name: string) => `nbd+unix:///${name}?socket=${socketPath}`;
    await runToolOk("qemu-io", [
      "-f",
      "raw",
      uri("base"),
      "-c",
      "write -P 0x33 64k 4k", // block 1: a partial write copies the shared block
      "-c",
      "discard 1280k 64k", // block 20, mapped in s1: unmapped now, reads zeros
      "-c",
      "write -z 2560k 64k", // block 40, mapped in s1: zeroed by unmapping
      "-c",
      "write -P 0x44 3M 128k", // blocks 48-49: new
      "-c",
      "write -P 0x55 6400k 64k", // block 100, written and then discarded: as in s1
      "-c",
      "discard 6400k 64k",
    ]);
    expect(await runCliOk(["snapshot", "base", "s2"], cwd)).toBe("created snapshot s2 of base\n");
    const dirty = [
      { offset: 1 * BLOCK, length: BLOCK },
      { offset: 20 * BLOCK, length: BLOCK },
      { offset: 40 * BLOCK, length: BLOCK },
      { offset: 48 * BLOCK, length: 2 * BLOCK },
    ];

    const map = async (exportName: string, context: string) =>
      (JSON.parse(await runToolOk("nbdinfo", [`--map=${context}`, "--json", uri(exportName)])) as StatusRun[]).map(
        ({ offset, length, type }) => ({ offset, length, type }),
      );
    expect(await map("s2", "qemu:dirty-bitmap:s1")).toEqual(bitmapRuns(dirty, VOLUME_BYTES));
    // The difference is symmetric, and s2 is base as it is now.
    expect(await map("s1", "qemu:dirty-bitmap:s2")).toEqual(bitmapRuns(dirty, VOLUME_BYTES));
    expect(await map("s2", "qemu:dirty-bitmap:base")).toEqual(bitmapRuns([], VOLUME_BYTES));

    // QEMU reads a bitmap through block status too, inverted: a dirty extent is reported as
    // not present and not data, a clean one as present data.
    const qemuMap = JSON.parse(
      await runToolOk("qemu-img", [
        "map",
        "--output=json",
        "--image-opts",
        `driver=nbd,server.type=unix,server.path=${socketPath},export=s2,x-dirty-bitmap=qemu:dirty-bitmap:s1`,
      ]),
    ) as { start: number; length: number; present: boolean; data: boolean; zero: boolean }[];
    expect(qemuMap.map(({ start, length, present, data, zero }) => ({ start, length, present, data, zero }))).toEqual(
      bitmapRuns(dirty, VOLUME_BYTES).map((run) => ({
        start: run.offset,
        length: run.length,
        present: run.type === 0,
        data: run.type === 0,
        zero: false,
      })),
    );

    const listing = JSON.parse(await runToolOk("nbdinfo", ["--list", "--content", "--json", uri("")])) as {
      exports: { "export-name": string; contexts: string[] }[];
    };
    const contexts = new Map(listing.exports.map((entry) => [entry["export-name"], [...entry.contexts].sort()]));
    expect(contexts.get("s2")).toEqual(["base:allocation", "qemu:dirty-bitmap:base", "qemu:dirty-bitmap:s1"]);
    expect(contexts.get("base")).toEqual(["base:allocation", "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"]);
    expect(await server.stop()).toBe(0);

    // thinp diff, which needs the pool at rest, finds the same blocks: the bitmap is its ranges, kinds merged.
    const diff = JSON.parse(await runCliOk(["diff", "s1", "s2", "--json"], cwd)) as { ranges: { offset: number; length: number }[] };
    const merged: { offset: number; length: number }[] = [];
    for (const { offset, length } of diff.ranges) {
      const last = merged[merged.length - 1];
      if (last !== undefined && last.offset + last.length === offset) last.length += length;
      else merged.push({ offset, length });
    }
    expect(merged).toEqual(dirty);
  });
});
