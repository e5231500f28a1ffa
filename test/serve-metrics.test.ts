// `thinp serve --metrics` and `--log-format=json` end to end: the built CLI's server, real
// NBD clients moving bytes, and curl scraping /metrics as Prometheus would.

import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { NbdServer } from "../src/nbd/index.js";
import * as P from "../src/nbd/protocol.js";
import { Pool } from "../src/thin/pool.js";
import { QemuIoSession, runTool, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCliOk } from "./support/cli-run.js";
import { eventually, killAllServers, startServe, type ServeProcess } from "./support/cli-serve-process.js";
import { WireClient } from "./support/nbd-wire-client.js";

const MiB = 1024 * 1024;
const DATA_BLOCK_BYTES = 64 * 1024;
const BASE_BYTES = 64 * MiB;
/** A closed connection is counted once the server has seen the socket close; this only bounds the wait. */
const CONNECTION_GONE_TIMEOUT_MS = 5_000;

let dir: string;
const cwd = () => ({ cwd: dir });
const qemuSessions: QemuIoSession[] = [];
const wireClients: WireClient[] = [];

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  const pool = await Pool.create(path.join(dir, "data.img"), path.join(dir, "meta.img"), { sizeBytes: 256 * MiB });
  await pool.createVolume("base", BASE_BYTES);
  await pool.createVolume("web", 32 * MiB);
  await pool.commit();
  await pool.close();
});
afterEach(async () => {
  for (const session of qemuSessions.splice(0)) session.kill();
  for (const client of wireClients.splice(0)) client.close();
  killAllServers();
  await removeTempDir(dir);
});

function serveWithMetrics(extra: readonly string[] = []): Promise<ServeProcess> {
  return startServe(["--pool", "meta.img", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", ...extra], cwd());
}

/** The address the banner printed: how a test (or a person) learns the port 0 picked. */
function metricsUrl(server: ServeProcess): string {
  const match = /^metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)$/m.exec(server.stdout);
  if (match === null) throw new Error(`no metrics address in the banner:\n${server.stdout}`);
  return match[1]!;
}

/** One scrape, parsed: sample lines keyed as Prometheus prints them, `name{label="value",...}`. */
class Scrape {
  private constructor(private readonly samples: ReadonlyMap<string, number>) {}

  static async of(server: ServeProcess): Promise<Scrape> {
    const text = await runToolOk("curl", ["--silent", "--show-error", "--fail", metricsUrl(server)]);
    const samples = new Map<string, number>();
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const space = line.lastIndexOf(" ");
      samples.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
    return new Scrape(samples);
  }

  /** A sample's value; a labelled counter not yet incremented has no line, and counts 0. */
  value(name: string, labels: Record<string, string> = {}): number {
    const entries = Object.entries(labels);
    const key = entries.length === 0 ? name : `${name}{${entries.map(([label, value]) => `${label}="${value}"`).join(",")}}`;
    return this.samples.get(key) ?? 0;
  }

  has(name: string): boolean {
    return [...this.samples.keys()].some((key) => key === name || key.startsWith(`${name}{`));
  }

  get names(): string[] {
    return [...new Set([...this.samples.keys()].map((key) => key.replace(/\{.*$/, "")))];
  }
}

function moved(before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}): number {
  return after.value(name, labels) - before.value(name, labels);
}

describe("thinp serve --metrics", () => {
  it("prints the metrics address in the banner and answers a scrape with every metric named thinp_", async () => {
    const server = await serveWithMetrics();
    const scrape = await Scrape.of(server);
    for (const name of [
      "thinp_connections",
      "thinp_connections_total",
      "thinp_commits_total",
      "thinp_blocks_copied_on_write_total",
      "thinp_requests_waiting_for_space",
      "thinp_data_blocks_used",
      "thinp_data_blocks_total",
      "thinp_metadata_blocks_used",
      "thinp_metadata_blocks_total",
    ]) {
      expect(scrape.has(name), name).toBe(true);
    }
    for (const name of scrape.names) expect(name).toMatch(/^thinp_/);
    expect(scrape.value("thinp_data_blocks_total")).toBe((256 * MiB) / DATA_BLOCK_BYTES);
    expect(scrape.value("thinp_requests_waiting_for_space")).toBe(0);
    expect(await server.stop()).toBe(0);
  });

  it("counts the bytes and requests of a client's writes and reads on that export, and the blocks they provisioned", async () => {
    const server = await serveWithMetrics();
    const before = await Scrape.of(server);
    await runToolOk("qemu-io", ["-f", "raw", server.uri("base"), "-c", "write -P 0x5a 0 1M", "-c", "read -P 0x5a 0 512k"]);
    const after = await Scrape.of(server);

    expect(moved(before, after, "thinp_write_bytes_total", { export: "base" })).toBe(MiB);
    expect(moved(before, after, "thinp_read_bytes_total", { export: "base" })).toBe(MiB / 2);
    expect(moved(before, after, "thinp_requests_total", { command: "WRITE", export: "base" })).toBe(1);
    expect(moved(before, after, "thinp_requests_total", { command: "READ", export: "base" })).toBe(1);
    expect(moved(before, after, "thinp_request_bytes_total", { command: "WRITE", export: "base" })).toBe(MiB);
    expect(moved(before, after, "thinp_request_duration_seconds_count", { command: "WRITE" })).toBe(1);
    // The other export saw nothing.
    expect(after.value("thinp_requests_total", { command: "WRITE", export: "web" })).toBe(0);
    // 1 MiB at offset 0 is 16 fresh data blocks.
    expect(moved(before, after, "thinp_data_blocks_used")).toBe(MiB / DATA_BLOCK_BYTES);
    expect(moved(before, after, "thinp_connections_total")).toBe(1);
    expect(await server.stop()).toBe(0);
  });

  it("counts what nbdcopy writes, and a commit after the client's flush", async () => {
    const server = await serveWithMetrics();
    const image = path.join(dir, "image.raw");
    await runToolOk("qemu-img", ["create", "-f", "raw", image, "2M"]);
    await runToolOk("qemu-io", ["-f", "raw", image, "-c", "write -P 0x11 0 2M"]);
    const before = await Scrape.of(server);
    await runToolOk("nbdcopy", ["--flush", image, server.uri("web")]);
    const after = await Scrape.of(server);
    expect(moved(before, after, "thinp_write_bytes_total", { export: "web" })).toBe(2 * MiB);
    expect(moved(before, after, "thinp_requests_total", { command: "FLUSH", export: "web" })).toBeGreaterThanOrEqual(1);
    expect(moved(before, after, "thinp_commits_total")).toBeGreaterThanOrEqual(1);
    expect(moved(before, after, "thinp_commit_duration_seconds_count")).toBe(moved(before, after, "thinp_commits_total"));
    expect(await server.stop()).toBe(0);
  });

  it("shows a connection in the gauge while it is open and not after it closes", async () => {
    const server = await serveWithMetrics();
    expect((await Scrape.of(server)).value("thinp_connections")).toBe(0);
    const session = QemuIoSession.open(server.uri("base"));
    qemuSessions.push(session);
    await session.run("read 0 4k", /read 4096\/4096/);
    const during = await Scrape.of(server);
    expect(during.value("thinp_connections")).toBe(1);
    expect(during.value("thinp_connections_total")).toBe(1);
    await session.quit();
    await eventually(
      async () => (await Scrape.of(server)).value("thinp_connections") === 0,
      CONNECTION_GONE_TIMEOUT_MS,
      "connections gauge back to 0",
    );
    expect((await Scrape.of(server)).value("thinp_connections_total")).toBe(1);
    expect(await server.stop()).toBe(0);
  });

  it("counts a partial write to a block shared with a snapshot as one block copied on write", async () => {
    const server = await serveWithMetrics();
    await runToolOk("qemu-io", ["-f", "raw", server.uri("base"), "-c", "write -P 0x22 0 64k"]);
    await runCliOk(["snapshot", "base", "base-snap", "--pool", "meta.img"], cwd());
    const before = await Scrape.of(server);
    // 4 KiB inside the shared block: the rest of the block is copied from the old one.
    await runToolOk("qemu-io", ["-f", "raw", server.uri("base"), "-c", "write -P 0x33 4k 4k"]);
    const after = await Scrape.of(server);
    expect(moved(before, after, "thinp_blocks_copied_on_write_total")).toBe(1);
    expect(moved(before, after, "thinp_data_blocks_used")).toBe(1);
    expect(await server.stop()).toBe(0);
  });

  it("counts a refused request (a write past the end, ENOSPC) by command and errno", async () => {
    const server = await serveWithMetrics();
    const address = { kind: "tcp", host: "127.0.0.1", port: server.port! } as const;
    const { client } = await WireClient.open({ address } as unknown as NbdServer, "base");
    wireClients.push(client);
    client.send({ command: P.NBD_CMD_WRITE, offset: BASE_BYTES, payload: Buffer.alloc(4096) });
    expect((await client.readStatus()).errno).toBe(P.NBD_ENOSPC);
    const scrape = await Scrape.of(server);
    expect(scrape.value("thinp_request_errors_total", { command: "WRITE", errno: "ENOSPC" })).toBe(1);
    expect(scrape.value("thinp_requests_total", { command: "WRITE", export: "base" })).toBe(1);
    expect(scrape.value("thinp_write_bytes_total", { export: "base" })).toBe(0);
    expect(await server.stop()).toBe(0);
  });

  it("answers 404 anywhere but /metrics", async () => {
    const server = await serveWithMetrics();
    const url = metricsUrl(server).replace(/\/metrics$/, "/other");
    const result = await runTool("curl", ["--silent", "--output", "/dev/null", "--write-out", "%{http_code}", url]);
    expect(result.stdout).toBe("404");
    expect(await server.stop()).toBe(0);
  });

  it("opens no metrics listener unless asked", async () => {
    const server = await startServe(["--pool", "meta.img", "--listen", "127.0.0.1:0"], cwd());
    expect(server.stdout).not.toMatch(/metrics on/);
    expect(await server.stop()).toBe(0);
  });
});

describe("thinp serve --log-format=json", () => {
  it("writes every log line as one JSON object with time, level and msg, and a connection's fields", async () => {
    const server = await startServe(["--pool", "meta.img", "--listen", "127.0.0.1:0", "--log-format=json"], cwd());
    await runToolOk("qemu-io", ["-r", "-f", "raw", server.uri("base"), "-c", "read 0 4k"]);
    expect(await server.stop()).toBe(0);
    const lines = server.stderr.split("\n").filter((line) => line !== "");
    expect(lines.length).toBeGreaterThan(0);
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const entry of entries) {
      expect(typeof entry.msg).toBe("string");
      expect(["debug", "info", "warn"]).toContain(entry.level);
      expect(new Date(entry.time as string).toISOString()).toBe(entry.time);
    }
    const serving = entries.find((entry) => /serving 'base'/.test(entry.msg as string));
    expect(serving?.connection).toBe(1);
    expect(serving?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(entries.at(-1)?.transactionId).toEqual(expect.any(Number));
  });

  it("refuses a log format it does not know", async () => {
    await expect(startServe(["--pool", "meta.img", "--listen", "127.0.0.1:0", "--log-format=xml"], cwd())).rejects.toThrow(
      /use text or json/,
    );
  });
});
