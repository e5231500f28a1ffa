// `thinp serve` end to end: real NBD clients against the built CLI's server, and the
// other thinp commands managing the pool through it while it runs.

import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { NbdServer } from "../src/nbd/index.js";
import * as P from "../src/nbd/protocol.js";
import { Pool } from "../src/thin/pool.js";
import { listedExports, QemuIoSession, runTool, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, seededBytes } from "./support/cli-run.js";
import { eventually, killAllServers, startServe, type ServeProcess } from "./support/cli-serve-process.js";
import { WireClient } from "./support/nbd-wire-client.js";

const MiB = 1024 * 1024;
/** A deferred delete runs as soon as the client's connection closes; this only bounds the wait. */
const DEFERRED_DELETE_TIMEOUT_MS = 5_000;

let dir: string;
const cwd = () => ({ cwd: dir });
const wireClients: WireClient[] = [];
const qemuSessions: QemuIoSession[] = [];

interface PoolStatusJson {
  dataBlocksUsed: number;
  volumeCount: number;
}

async function status(): Promise<PoolStatusJson> {
  return JSON.parse(await runCliOk(["status", "--json"], cwd()));
}

async function listedVolumeNames(): Promise<string[]> {
  const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
  return listed.volumes.map((volume: { name: string }) => volume.name);
}

/** A raw NBD client in transmission on `exportName`: a connection that stays open as long as the test wants. */
async function holdExport(server: ServeProcess, exportName: string): Promise<WireClient> {
  const address = { kind: "tcp", host: "127.0.0.1", port: server.port! } as const;
  const { client } = await WireClient.open({ address } as unknown as NbdServer, exportName);
  wireClients.push(client);
  return client;
}

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  // The engine directly: setting up is not what these tests are about, and it saves three CLI starts each.
  const pool = await Pool.create(path.join(dir, "data.img"), path.join(dir, "meta.img"), { sizeBytes: 256 * MiB });
  await pool.createVolume("base", 64 * MiB);
  await pool.createVolume("web", 32 * MiB);
  await pool.commit();
  await pool.close();
});
afterEach(async () => {
  for (const client of wireClients.splice(0)) client.close();
  for (const session of qemuSessions.splice(0)) session.kill();
  killAllServers();
  await removeTempDir(dir);
});

describe("thinp serve", () => {
  it("exports every volume, and a volume created while serving is exported at once", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    expect(server.stdout).toContain(`nbd-client 127.0.0.1 ${server.port} /dev/nbd0 -N base`);
    expect(server.stdout).toContain(`qemu-img info ${server.uri("web")}`);
    expect(server.stdout).toMatch(/nbdfuse \S+\/base nbd:\/\/127\.0\.0\.1:\d+\/base/);
    expect(await listedExports(server.uri(""))).toEqual(["base", "web"]);

    expect(await runCliOk(["create", "web2", "--size", "16M"], cwd())).toBe("created volume web2 (16 MiB)\n");
    expect(await listedExports(server.uri(""))).toEqual(["base", "web", "web2"]);
    await runToolOk("qemu-io", ["-f", "raw", server.uri("web2"), "-c", "write -P 0x5a 0 1M", "-c", "read -P 0x5a 0 1M"]);

    // The management commands reach the server: the pool is locked to anyone opening it.
    expect(await runCliOk(["resize", "web2", "--size", "32M"], cwd())).toBe("resized volume web2 to 32 MiB\n");
    const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
    expect(listed.volumes.find((volume: { name: string }) => volume.name === "web2")).toMatchObject({
      sizeBytes: 32 * MiB,
      mappedBlocks: 16,
      exclusiveBlocks: 16,
    });
    expect(await status()).toMatchObject({ dataBlocksUsed: 16, volumeCount: 3 });
    expect(await runCliOk(["resize-pool", "--size", "512M"], cwd())).toBe("pool is now 512 MiB (8192 data blocks)\n");
    expect(await server.stop()).toBe(0);
  });

  it("a snapshot taken while a client is writing holds what was written before it, not after", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const writer = QemuIoSession.open(server.uri("base"));
    qemuSessions.push(writer);
    await writer.run("write -P 0xaa 0 2M", /wrote 2097152\/2097152 bytes/);

    expect(await runCliOk(["snapshot", "base", "before-b", "--read-only"], cwd())).toBe("created snapshot before-b of base (read-only)\n");
    await writer.run("write -P 0xbb 1M 2M", /wrote 2097152\/2097152 bytes/);
    await writer.run("read -P 0xbb 1M 2M", /read 2097152\/2097152 bytes/);
    await writer.quit();

    expect(await listedExports(server.uri(""))).toContain("before-b");
    const snapshotUri = server.uri("before-b");
    await runToolOk("qemu-io", ["-r", "-f", "raw", snapshotUri, "-c", "read -P 0xaa 0 2M", "-c", "read -P 0 2M 1M"]);
    // And a bulk copy of the snapshot sees the same bytes.
    await runToolOk("nbdcopy", [snapshotUri, path.join(dir, "before-b.raw")]);
    const copied = await readFile(path.join(dir, "before-b.raw"));
    expect(copied.length).toBe(64 * MiB);
    expect(copied.subarray(0, 2 * MiB).equals(Buffer.alloc(2 * MiB, 0xaa))).toBe(true);
    expect(copied.subarray(2 * MiB).every((byte) => byte === 0)).toBe(true);
    expect(await server.stop()).toBe(0);
  });

  it("refuses to delete a volume a client holds, and with --defer deletes it once the client leaves", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    await runToolOk("qemu-io", ["-f", "raw", server.uri("web"), "-c", "write -P 0x77 0 1M"]);
    expect((await status()).dataBlocksUsed).toBe(16);
    const holder = await holdExport(server, "web");

    const refused = await runCli(["delete", "web"], cwd());
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toBe("thinp: volume 'web' is busy: 1 NBD client has it open; disconnect it or use --defer\n");
    expect(await listedVolumeNames()).toEqual(["base", "web"]);

    expect(await runCliOk(["delete", "web", "--defer"], cwd())).toBe(
      "volume web will be deleted when its last NBD client disconnects; it is no longer listed or exported\n",
    );
    expect(await listedVolumeNames()).toEqual(["base"]);
    expect(await listedExports(server.uri(""))).toEqual(["base"]);
    // Hidden, not yet gone: its blocks stay in use while the client may still read them.
    expect(await status()).toMatchObject({ volumeCount: 1, dataBlocksUsed: 16 });
    const reply = await (async () => {
      holder.send({ command: P.NBD_CMD_READ, offset: 0, length: 4096 });
      return holder.readStructuredRead(0, 4096);
    })();
    expect(reply.errno).toBe(0);
    expect(reply.data.equals(Buffer.alloc(4096, 0x77))).toBe(true);

    holder.close();
    await eventually(
      async () => (await status()).dataBlocksUsed === 0,
      DEFERRED_DELETE_TIMEOUT_MS,
      "the deferred delete freed web's blocks",
    );
    // The name is free again.
    await runCliOk(["create", "web", "--size", "1M"], cwd());
    expect(await server.stop()).toBe(0);
    expect((await runCli(["check"], cwd())).exitCode).toBe(0);
  });

  it("SIGTERM lets acknowledged writes finish, commits and exits 0, with a clean pool holding them", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const payload = seededBytes(256 * 1024, 0x5e12e);
    const client = await holdExport(server, "base");
    client.send({ command: P.NBD_CMD_WRITE, offset: 3 * MiB, payload });
    expect((await client.readStatus()).errno).toBe(0);
    // No flush: only the stop's own commit makes this write durable. The client stays connected.
    expect(await server.stop("SIGTERM")).toBe(0);
    expect(server.stderr).toMatch(/SIGTERM: no new connections/);
    expect(server.stderr).toMatch(/stopped; .*meta\.img committed at transaction \d+/);
    expect(existsSync(path.join(dir, "meta.img.sock"))).toBe(false);

    const checked = await runCli(["check"], cwd());
    expect(checked.exitCode, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout).toMatch(/^clean$/m);
    await runCliOk(["export", "base", "base.raw"], cwd());
    const image = await readFile(path.join(dir, "base.raw"));
    expect(image.subarray(3 * MiB, 3 * MiB + payload.length).equals(payload)).toBe(true);
  });

  it("import, export, check and a second serve are refused while serving, and the nbdcopy way round works", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const metaPath = path.join(dir, "meta.img");
    const image = seededBytes(2 * MiB, 0x1a2b);
    await writeFile(path.join(dir, "image.raw"), image);

    const imported = await runCli(["import", "base", "image.raw"], cwd());
    expect(imported.exitCode).toBe(7);
    expect(imported.stderr).toBe(
      `thinp: pool ${metaPath} is served by process ${server.pid}; stop it first, or copy with nbdcopy image.raw ${server.uri("base")}\n`,
    );
    const exported = await runCli(["export", "base", "out.raw"], cwd());
    expect(exported.exitCode).toBe(7);
    expect(exported.stderr).toBe(
      `thinp: pool ${metaPath} is served by process ${server.pid}; stop it first, or copy with nbdcopy ${server.uri("base")} out.raw\n`,
    );
    const checked = await runCli(["check"], cwd());
    expect(checked).toMatchObject({ exitCode: 7, stderr: `thinp: pool ${metaPath} is served by process ${server.pid}; stop it first\n` });
    const second = await runCli(["serve", "--listen", "127.0.0.1:0"], cwd());
    expect(second.exitCode).toBe(7);
    expect(second.stderr).toContain(`thinp: pool ${metaPath} is in use by process ${server.pid} (thinp serve`);

    // Do what the messages say.
    const suggested = (stderr: string) =>
      stderr
        .trim()
        .replace(/^.*, or copy with /, "")
        .split(" ");
    const [importTool, ...importArgs] = suggested(imported.stderr);
    await runToolOk(importTool!, importArgs, cwd());
    const [exportTool, ...exportArgs] = suggested(exported.stderr);
    await runToolOk(exportTool!, exportArgs, cwd());
    const out = await readFile(path.join(dir, "out.raw"));
    expect(out.subarray(0, image.length).equals(image)).toBe(true);
    expect(await server.stop()).toBe(0);
  });

  it("--socket alone serves on that Unix socket only; --read-only refuses writes; SIGINT stops it", async () => {
    const socketPath = path.join(dir, "nbd.sock");
    const server = await startServe(["--socket", "nbd.sock", "--read-only"], cwd());
    expect(server.port).toBeNull();
    expect(server.stdout).toContain(`listening on ${socketPath}`);
    expect(server.stdout).toContain(`nbd-client -unix ${socketPath} /dev/nbd0 -N base`);
    const unixUri = (name: string) => `nbd+unix:///${name}?socket=${socketPath}`;
    expect(await listedExports(unixUri(""))).toEqual(["base", "web"]);
    await runToolOk("qemu-io", ["-r", "-f", "raw", unixUri("base"), "-c", "read -P 0 0 1M"]);
    const written = await runTool("qemu-io", ["-f", "raw", unixUri("base"), "-c", "write -P 1 0 64k"]);
    expect(written.exitCode + written.stdout + written.stderr).toMatch(/read-only|Operation not permitted|Permission denied/i);
    const created = await runCli(["create", "new", "--size", "1M"], cwd());
    expect(created.exitCode).toBe(1);
    expect(created.stderr).toMatch(/^thinp: .*read-only/);

    expect(await server.stop("SIGINT")).toBe(0);
    expect(existsSync(socketPath)).toBe(false);
  });

  it("a --listen that is not HOST:PORT is a usage error", async () => {
    const result = await runCli(["serve", "--listen", "localhost"], cwd());
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^thinp: option '--listen <host:port>' argument 'localhost' is invalid/);
  });
});

describe("thinp start", () => {
  it("creates a 10 GiB pool with a 1 GiB volume 'base' when there is none, then serves it", async () => {
    const fresh = path.join(dir, "fresh");
    await runToolOk("mkdir", [fresh]);
    const server = await startServe(["--listen", "127.0.0.1:0"], { cwd: fresh, command: "start" });
    expect(server.stdout).toMatch(
      /^created pool: 10 GiB of data in .*fresh\/data\.img, metadata in .*fresh\/meta\.img, volume base \(1 GiB\)$/m,
    );
    expect(await listedExports(server.uri(""))).toEqual(["base"]);
    expect(await server.stop()).toBe(0);

    // The second start serves the pool it finds.
    const again = await startServe(["--listen", "127.0.0.1:0"], { cwd: fresh, command: "start" });
    expect(again.stdout).not.toMatch(/created pool/);
    expect(again.stdout).toMatch(/^serving .*meta\.img: 1 volume$/m);
    expect(await again.stop()).toBe(0);
  });
});
