// The NBD server against the real clients users will point at it: libnbd's nbdinfo and
// nbdcopy, QEMU's qemu-img and qemu-io, and fio's nbd engine. Every client runs the same
// scenarios over TCP on 127.0.0.1 and over a Unix socket. The tools are Debian packages
// (libnbd-bin, qemu-utils, fio); a missing tool fails the test rather than skipping it.

import { execFile } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNbdServer, type NbdServer } from "../src/nbd/server.js";
import { MemoryCatalog } from "./support/memory-catalog.js";
import { MEMORY_BLOCK_BYTES, MemoryVolume } from "./support/memory-volume.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = MEMORY_BLOCK_BYTES;
const CLIENT_TIMEOUT_MS = 60_000;

interface ClientRun {
  stdout: string;
  stderr: string;
}

/** Runs a client to completion without blocking the event loop the server runs on. */
function runClient(command: string, args: string[]): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: CLIENT_TIMEOUT_MS, maxBuffer: 16 * MiB, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** Mapped and unmapped runs of a memory volume, as block status should report them. */
function expectedRuns(volume: MemoryVolume): { offset: number; length: number; data: boolean }[] {
  const mapped = new Set(volume.mappedBlockIndexes());
  const runs: { offset: number; length: number; data: boolean }[] = [];
  for (let block = 0; block * BLOCK < volume.sizeBytes; block++) {
    const data = mapped.has(block);
    const length = Math.min(BLOCK, volume.sizeBytes - block * BLOCK);
    const last = runs[runs.length - 1];
    if (last !== undefined && last.data === data) last.length += length;
    else runs.push({ offset: block * BLOCK, length, data });
  }
  return runs;
}

function writeSparseImage(path: string, pieces: { offset: number; bytes: Buffer }[], sizeBytes: number): void {
  const fd = openSync(path, "w");
  try {
    for (const piece of pieces) writeSync(fd, piece.bytes, 0, piece.bytes.length, piece.offset);
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
}

describe.each(["tcp", "unix"] as const)("real NBD clients over %s", (transport) => {
  let server: NbdServer;
  let catalog: MemoryCatalog;
  let workDir: string;
  const volumes = {} as Record<"mapped" | "archive" | "qemu" | "copy" | "fio", MemoryVolume>;

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), "thinp-nbd-interop-"));
    catalog = new MemoryCatalog();
    volumes.mapped = catalog.add(new MemoryVolume("mapped", 64 * MiB), "volume with a known mapping");
    volumes.archive = catalog.add(new MemoryVolume("archive", 8 * MiB, true), "read-only snapshot");
    volumes.qemu = catalog.add(new MemoryVolume("qemu", 16 * MiB));
    volumes.copy = catalog.add(new MemoryVolume("copy", 64 * MiB), "nbdcopy target");
    volumes.fio = catalog.add(new MemoryVolume("fio", 64 * MiB));
    for (const [offset, byteLength] of [
      [1 * BLOCK, 2 * BLOCK],
      [10 * BLOCK + 100, 100],
      [32 * MiB, 4 * MiB],
      [64 * MiB - BLOCK, BLOCK],
    ] as const) {
      volumes.mapped.fill(offset, Buffer.alloc(byteLength, 0x5a));
    }
    server = await startNbdServer({
      catalog,
      ...(transport === "tcp" ? { listen: { host: "127.0.0.1", port: 0 } } : { socketPath: join(workDir, "nbd.sock") }),
    });
  });

  afterAll(async () => {
    await server?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  it("nbdinfo --list shows every export with its description, real size and flags", async () => {
    const { stdout } = await runClient("nbdinfo", ["--list", "--json", server.uri("")]);
    const listing = JSON.parse(stdout) as { exports: Record<string, unknown>[] };
    const byName = new Map(listing.exports.map((entry) => [entry["export-name"], entry]));
    expect([...byName.keys()]).toEqual(["mapped", "archive", "qemu", "copy", "fio"]);
    for (const { name, description } of catalog.list()) {
      const entry = byName.get(name)!;
      expect(entry["description"] ?? "").toBe(description);
      expect(entry["export-size"]).toBe(catalog.open(name)!.sizeBytes);
      expect(entry["contexts"]).toEqual(["base:allocation"]);
      expect(entry["can_multi_conn"]).toBe(true);
      expect(entry["block_size_maximum"]).toBe(32 * MiB);
    }
    expect(byName.get("archive")).toMatchObject({ is_read_only: true, can_trim: false, can_zero: false });
    expect(byName.get("mapped")).toMatchObject({ is_read_only: false, can_trim: true, can_zero: true, can_fast_zero: true, can_fua: true });
  });

  it("nbdinfo --map reports exactly the mapped blocks as data and the rest as hole,zero", async () => {
    const { stdout } = await runClient("nbdinfo", ["--map", "--json", server.uri("mapped")]);
    const map = (JSON.parse(stdout) as { offset: number; length: number; type: number }[]).map(({ offset, length, type }) => ({ offset, length, type }));
    expect(map).toEqual(expectedRuns(volumes.mapped).map(({ offset, length, data }) => ({ offset, length, type: data ? 0 : 3 })));
  });

  it("qemu-img map agrees with the volume's mapping", async () => {
    const { stdout } = await runClient("qemu-img", ["map", "--output=json", "-f", "raw", server.uri("mapped")]);
    const map = (JSON.parse(stdout) as { start: number; length: number; data: boolean; zero: boolean }[]).map(({ start, length, data, zero }) => ({ start, length, data, zero }));
    expect(map).toEqual(expectedRuns(volumes.mapped).map(({ offset, length, data }) => ({ start: offset, length, data, zero: !data })));
  });

  it("qemu-io pattern writes, FUA, zeroes, discard and asynchronous I/O read back correctly", async () => {
    const volume = volumes.qemu;
    const flushesBefore = catalog.flushCount;
    const { stdout } = await runClient("qemu-io", [
      "-f", "raw", server.uri("qemu"),
      "-c", "write -P 0xab 0 1M",
      "-c", "read -P 0xab 0 1M",
      "-c", "write -f -P 0xcd 1M 64k",
      "-c", "write -z 0 512k",
      "-c", "read -P 0 0 512k",
      "-c", "write -P 0xee 4M 2M",
      "-c", "discard 4M 1M",
      "-c", "read -P 0 4M 1M",
      "-c", "aio_write -P 0x11 8M 4k",
      "-c", "aio_write -P 0x22 9M 4k",
      "-c", "aio_flush",
      "-c", "read -P 0x11 8M 4k",
      "-c", "read -P 0x22 9M 4k",
      "-c", "flush",
    ]);
    expect(stdout).not.toMatch(/fail|error/i);
    // One completion line per command that moves data; a failed pattern check prints none.
    expect(stdout.match(/^(wrote|read|discard) \d+\/\d+ bytes/gm)?.length).toBe(12);
    expect(volume.contents(0, 512 * KiB).equals(Buffer.alloc(512 * KiB))).toBe(true);
    expect(volume.contents(512 * KiB, 512 * KiB).equals(Buffer.alloc(512 * KiB, 0xab))).toBe(true);
    expect(volume.contents(1 * MiB, 64 * KiB).equals(Buffer.alloc(64 * KiB, 0xcd))).toBe(true);
    expect(volume.contents(5 * MiB, 1 * MiB).equals(Buffer.alloc(1 * MiB, 0xee))).toBe(true);
    expect(volume.contents(8 * MiB, 4 * KiB).equals(Buffer.alloc(4 * KiB, 0x11))).toBe(true);
    const mapped = new Set(volume.mappedBlockIndexes());
    // The discarded megabyte no longer holds data blocks.
    for (let block = (4 * MiB) / BLOCK; block < (5 * MiB) / BLOCK; block++) expect(mapped.has(block)).toBe(false);
    // write -f (FUA), aio_flush and flush each commit.
    expect(catalog.flushCount - flushesBefore).toBeGreaterThanOrEqual(3);
  });

  it("nbdcopy copies a 64 MiB random, partly sparse image in and out byte for byte", async () => {
    const volume = volumes.copy;
    // Junk everywhere first, so the image's holes must actively be zeroed.
    volume.fill(0, Buffer.alloc(64 * MiB, 0xff));
    const imagePath = join(workDir, "image.raw");
    const exportedPath = join(workDir, "exported.raw");
    const random = (byteLength: number) => randomFillSync(Buffer.alloc(byteLength));
    writeSparseImage(
      imagePath,
      [
        { offset: 0, bytes: random(24 * MiB) },
        // 24..40 MiB stays a hole in the file.
        { offset: 40 * MiB, bytes: random(16 * MiB) },
        { offset: 56 * MiB, bytes: Buffer.alloc(4 * MiB) },
        { offset: 60 * MiB + 12345, bytes: random(1 * MiB) },
      ],
      64 * MiB,
    );
    const flushesBefore = catalog.flushCount;
    await runClient("nbdcopy", ["--flush", imagePath, server.uri("copy")]);
    expect(catalog.flushCount).toBeGreaterThan(flushesBefore);
    const image = readFileSync(imagePath);
    expect(volume.contents(0, 64 * MiB).equals(image)).toBe(true);
    // The file's hole went over as zeroing that unmapped the junk, not as written zeros.
    const mapped = new Set(volume.mappedBlockIndexes());
    for (let block = (24 * MiB) / BLOCK; block < (40 * MiB) / BLOCK; block++) expect(mapped.has(block)).toBe(false);
    await runClient("nbdcopy", [server.uri("copy"), exportedPath]);
    expect(readFileSync(exportedPath).equals(image)).toBe(true);
  });

  it("fio random writes through the nbd engine verify with crc32c", async () => {
    const { stdout } = await runClient("fio", [
      "--name=verify",
      "--ioengine=nbd",
      `--uri=${server.uri("fio")}`,
      "--rw=randwrite",
      "--bs=4k",
      "--size=64M",
      "--iodepth=16",
      "--verify=crc32c",
      "--verify_fatal=1",
      "--randseed=1234",
      "--output-format=json",
    ]);
    const report = JSON.parse(stdout.slice(stdout.indexOf("{"))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] };
    const job = report.jobs[0]!;
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(64 * MiB);
    // The verify phase read back everything it wrote.
    expect(job.read.io_bytes).toBe(64 * MiB);
    expect(volumes.fio.mappedBlockIndexes().length).toBe((64 * MiB) / BLOCK);
  });

  it("the server is left with no connections and every export detached", async () => {
    for (let i = 0; i < 100 && server.connectionCount > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.connectionCount).toBe(0);
    expect(catalog.attached.size).toBe(0);
    expect(catalog.attachCount).toBe(catalog.detachCount);
  });
});
