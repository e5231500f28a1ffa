// Shrinking a volume under an NBD client cuts off the end of a disk the client believes it
// has: refused as busy, as delete is, unless `--force`, which says what the client will see.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { NbdServer } from "../src/nbd/index.js";
import * as P from "../src/nbd/protocol.js";
import { runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";
import { killAllServers, startServe, type ServeProcess } from "./support/cli-serve-process.js";
import { WireClient } from "./support/nbd-wire-client.js";

const MiB = 1024 * 1024;

let dir: string;
const cwd = () => ({ cwd: dir });
const wireClients: WireClient[] = [];

async function holdExport(server: ServeProcess, exportName: string): Promise<WireClient> {
  const address = { kind: "tcp", host: "127.0.0.1", port: server.port! } as const;
  const { client } = await WireClient.open({ address } as unknown as NbdServer, exportName);
  wireClients.push(client);
  return client;
}

async function sizeOf(name: string): Promise<number> {
  const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
  return listed.volumes.find((volume: { name: string }) => volume.name === name).sizeBytes;
}

async function read(client: WireClient, offset: number, length: number): Promise<{ errno: number; data: Buffer }> {
  client.send({ command: P.NBD_CMD_READ, offset, length });
  return client.readStructuredRead(offset, length);
}

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", "64M"], cwd());
  await runCliOk(["create", "web", "--size", "32M"], cwd());
  await writeFile(path.join(dir, "head.raw"), Buffer.alloc(MiB, 0x77));
  await runCliOk(["import", "web", "head.raw"], cwd());
});
afterEach(async () => {
  for (const client of wireClients.splice(0)) client.close();
  killAllServers();
  await removeTempDir(dir);
});

describe("thinp resize of a volume NBD clients have open", () => {
  it("a shrink is refused as busy, exit 1, and the volume keeps its size; growing is allowed", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    await holdExport(server, "web");
    const refused = await runCli(["resize", "web", "--size", "16M"], cwd());
    expect(refused.exitCode).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toBe(
      "thinp: volume 'web' is busy: 1 NBD client has it open and would see errors past the new end; disconnect it or use --force\n",
    );
    expect(await sizeOf("web")).toBe(32 * MiB);
    // Growing takes nothing a client can see away from it.
    expect(await runCliOk(["resize", "web", "--size", "40M"], cwd())).toBe("resized volume web to 40 MiB\n");
    expect(await sizeOf("web")).toBe(40 * MiB);
    expect(await server.stop()).toBe(0);
  });

  it("with --force it shrinks, saying on stderr that the clients will see errors past the new end, which they do", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const holder = await holdExport(server, "web");
    const forced = await runCli(["resize", "web", "--size", "16M", "--force"], cwd());
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(forced.stdout).toBe("resized volume web to 16 MiB\n");
    expect(forced.stderr).toBe(
      `thinp: warning: 1 NBD client has 'web' open; its reads and writes past the new end (byte ${16 * MiB}) will fail\n`,
    );
    expect(await sizeOf("web")).toBe(16 * MiB);

    const head = await read(holder, 0, 4096);
    expect(head.errno).toBe(0);
    expect(head.data.equals(Buffer.alloc(4096, 0x77))).toBe(true);
    const past = await read(holder, 20 * MiB, 4096);
    expect(past.errno).toBe(P.NBD_EINVAL);
    // A new client sees the new size.
    const info = JSON.parse(await runToolOk("nbdinfo", ["--json", server.uri("web")]));
    expect(info.exports[0]["export-size"]).toBe(16 * MiB);
    expect(await server.stop()).toBe(0);
    expect(await runCliOk(["check"], cwd())).toMatch(/^clean$/m);
  });

  it("with no client, a shrink needs no --force, served or not", async () => {
    expect(await runCliOk(["resize", "web", "--size", "24M"], cwd())).toBe("resized volume web to 24 MiB\n");
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const result = await runCli(["resize", "web", "--size", "16M"], cwd());
    expect(result).toMatchObject({ exitCode: 0, stdout: "resized volume web to 16 MiB\n", stderr: "" });
    // --force without clients changes nothing about the outcome, and warns of nothing.
    expect(await runCli(["resize", "web", "--size", "8M", "--force"], cwd())).toMatchObject({ exitCode: 0, stderr: "" });
    expect(await server.stop()).toBe(0);
    expect(await sizeOf("web")).toBe(8 * MiB);
  });
});
