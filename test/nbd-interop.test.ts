// The NBD server against the real clients users will point at it: libnbd's nbdinfo and
// nbdcopy, QEMU's qemu-img and qemu-io, and fio's nbd engine. Every client runs the same
// scenarios over TCP on 127.0.0.1 and over a Unix socket, against the memory fake and
// against a real pool as `thinp serve` wires it. The tools are Debian packages
// (libnbd-bin, qemu-utils, fio); a missing tool fails the test rather than skipping it.

import { execFile } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNbdServer, type NbdServer } from "../src/nbd/server.js";
import type { VolumeHandle } from "../src/thin/api.js";
import { createBackend, type CountingCatalog, type ExportBackend } from "./support/export-backends.js";
import { MEMORY_BLOCK_BYTES } from "./support/memory-volume.js";

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

/** base:allocation flags: 0 owned data, 1 (HOLE) data a write would copy first, 3 (HOLE|ZERO) unmapped. */
type Run = { offset: number; length: number; type: 0 | 1 | 3 };

/** A volume's runs as block status should report them. */
async function allocationRuns(volume: VolumeHandle): Promise<Run[]> {
  const runs: Run[] = [];
  for (const extent of await volume.extents(0, volume.sizeBytes)) {
    const type = !extent.mapped ? 3 : extent.copyOnWrite ? 1 : 0;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.type === type) last.length += extent.length;
    else runs.push({ offset: extent.offset, length: extent.length, type });
  }
  return runs;
}

/** Blocks of [offset, offset + length) that hold data. */
async function mappedBlocksWithin(volume: VolumeHandle, offset: number, length: number): Promise<number> {
  let mappedBytes = 0;
  for (const extent of await volume.extents(offset, length)) if (extent.mapped) mappedBytes += extent.length;
  return mappedBytes / BLOCK;
}

async function contents(volume: VolumeHandle, offset: number, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = offset; at < offset + length; at += 8 * MiB) parts.push(await volume.read(at, Math.min(8 * MiB, offset + length - at)));
  return Buffer.concat(parts);
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

// Transports exercise the server; the pool exercises the engine behind it. Both transports
// on both backends would double the slowest runs without covering anything new.
const setups = [
  { backend: "memory", transport: "tcp" },
  { backend: "memory", transport: "unix" },
  { backend: "pool", transport: "tcp" },
] as const;

describe.each(setups)("real NBD clients on the $backend backend over $transport", ({ backend: backendKind, transport }) => {
  let server: NbdServer;
  let backend: ExportBackend;
  let catalog: CountingCatalog;
  let workDir: string;
  const volume = async (name: string): Promise<VolumeHandle> => (await catalog.open(name))!;

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), "thinp-nbd-interop-"));
    backend = await createBackend(backendKind, workDir);
    catalog = backend.catalog;
    await backend.createVolume("mapped", 64 * MiB);
    await backend.createVolume("qemu", 16 * MiB);
    await backend.createVolume("copy", 64 * MiB);
    await backend.createVolume("fio", 64 * MiB);
    const mapped = await volume("mapped");
    for (const [offset, byteLength] of [
      [1 * BLOCK, 2 * BLOCK],
      [10 * BLOCK + 100, 100],
      [32 * MiB, 4 * MiB],
      [64 * MiB - BLOCK, BLOCK],
    ] as const) {
      await mapped.write(offset, Buffer.alloc(byteLength, 0x5a));
    }
    // Read-only, and (on the pool) a snapshot sharing every block with "mapped".
    await backend.createReadOnlyCopy("mapped", "archive");
    server = await startNbdServer({
      catalog,
      ...(transport === "tcp" ? { listen: { host: "127.0.0.1", port: 0 } } : { socketPath: join(workDir, "nbd.sock") }),
    });
  });

  afterAll(async () => {
    await server?.close();
    await backend?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  it("nbdinfo --list shows every export with its description, real size and flags", async () => {
    const { stdout } = await runClient("nbdinfo", ["--list", "--json", server.uri("")]);
    const listing = JSON.parse(stdout) as { exports: Record<string, unknown>[] };
    const byName = new Map(listing.exports.map((entry) => [entry["export-name"], entry]));
    const expected = await catalog.list();
    expect([...byName.keys()].sort()).toEqual(["archive", "copy", "fio", "mapped", "qemu"]);
    for (const { name, description } of expected) {
      const entry = byName.get(name)!;
      expect(entry["description"] ?? "").toBe(description);
      expect(entry["export-size"]).toBe((await volume(name)).sizeBytes);
      expect(entry["contexts"]).toEqual(["base:allocation"]);
      expect(entry["can_multi_conn"]).toBe(true);
      expect(entry["block_size_maximum"]).toBe(32 * MiB);
    }
    expect(byName.get("archive")).toMatchObject({ is_read_only: true, can_trim: false, can_zero: false });
    expect(byName.get("mapped")).toMatchObject({ is_read_only: false, can_trim: true, can_zero: true, can_fast_zero: true, can_fua: true });
  });

  it("nbdinfo --map reports unmapped blocks as hole,zero, owned blocks as data, and blocks shared with a snapshot as hole", async () => {
    for (const name of ["mapped", "archive"]) {
      const expected = await allocationRuns(await volume(name));
      expect(expected.length).toBe(8);
      // On the pool, "archive" is a snapshot of "mapped": every mapped block of both is shared.
      expect(expected.filter((run) => run.type !== 3).every((run) => run.type === (backendKind === "pool" ? 1 : 0))).toBe(true);
      const { stdout } = await runClient("nbdinfo", ["--map", "--json", server.uri(name)]);
      const map = (JSON.parse(stdout) as { offset: number; length: number; type: number }[]).map(({ offset, length, type }) => ({
        offset,
        length,
        type,
      }));
      expect(map).toEqual(expected);
    }
  });

  it("qemu-img map agrees with the volume's mapping", async () => {
    for (const name of ["mapped", "fio"]) {
      const { stdout } = await runClient("qemu-img", ["map", "--output=json", "-f", "raw", server.uri(name)]);
      const map = (JSON.parse(stdout) as { start: number; length: number; data: boolean; zero: boolean }[]).map(
        ({ start, length, data, zero }) => ({ start, length, data, zero }),
      );
      const expected = await allocationRuns(await volume(name));
      expect(map).toEqual(expected.map(({ offset, length, type }) => ({ start: offset, length, data: type === 0, zero: type === 3 })));
    }
  });

  it("qemu-io pattern writes, FUA, zeroes, discard and asynchronous I/O read back correctly", async () => {
    const target = await volume("qemu");
    const flushesBefore = catalog.flushes;
    const { stdout } = await runClient("qemu-io", [
      "-f",
      "raw",
      server.uri("qemu"),
      "-c",
      "write -P 0xab 0 1M",
      "-c",
      "read -P 0xab 0 1M",
      "-c",
      "write -f -P 0xcd 1M 64k",
      "-c",
      "write -z 0 512k",
      "-c",
      "read -P 0 0 512k",
      "-c",
      "write -P 0xee 4M 2M",
      "-c",
      "discard 4M 1M",
      "-c",
      "read -P 0 4M 1M",
      "-c",
      "aio_write -P 0x11 8M 4k",
      "-c",
      "aio_write -P 0x22 9M 4k",
      "-c",
      "aio_flush",
      "-c",
      "read -P 0x11 8M 4k",
      "-c",
      "read -P 0x22 9M 4k",
      "-c",
      "flush",
    ]);
    expect(stdout).not.toMatch(/fail|error/i);
    // One completion line per command that moves data; a failed pattern check prints none.
    expect(stdout.match(/^(wrote|read|discard) \d+\/\d+ bytes/gm)?.length).toBe(12);
    expect((await contents(target, 0, 512 * KiB)).equals(Buffer.alloc(512 * KiB))).toBe(true);
    expect((await contents(target, 512 * KiB, 512 * KiB)).equals(Buffer.alloc(512 * KiB, 0xab))).toBe(true);
    expect((await contents(target, 1 * MiB, 64 * KiB)).equals(Buffer.alloc(64 * KiB, 0xcd))).toBe(true);
    expect((await contents(target, 5 * MiB, 1 * MiB)).equals(Buffer.alloc(1 * MiB, 0xee))).toBe(true);
    expect((await contents(target, 8 * MiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 0x11))).toBe(true);
    // The discarded megabyte no longer holds data blocks.
    expect(await mappedBlocksWithin(target, 4 * MiB, 1 * MiB)).toBe(0);
    // write -f (FUA), aio_flush and flush each commit.
    expect(catalog.flushes - flushesBefore).toBeGreaterThanOrEqual(3);
  });

  it("nbdcopy copies a 64 MiB random, partly sparse image in and out byte for byte", async () => {
    const target = await volume("copy");
    // Junk everywhere first, so the image's holes must actively be zeroed.
    for (let at = 0; at < 64 * MiB; at += 8 * MiB) await target.write(at, Buffer.alloc(8 * MiB, 0xff));
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
    const flushesBefore = catalog.flushes;
    await runClient("nbdcopy", ["--flush", imagePath, server.uri("copy")]);
    expect(catalog.flushes).toBeGreaterThan(flushesBefore);
    const image = readFileSync(imagePath);
    expect((await contents(target, 0, 64 * MiB)).equals(image)).toBe(true);
    // The file's hole went over as zeroing that unmapped the junk, not as written zeros.
    expect(await mappedBlocksWithin(target, 24 * MiB, 16 * MiB)).toBe(0);
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
      // fio would otherwise leave a verify-state file in the working directory.
      "--verify_state_save=0",
      "--randseed=1234",
      "--output-format=json",
    ]);
    const report = JSON.parse(stdout.slice(stdout.indexOf("{"))) as {
      jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[];
    };
    const job = report.jobs[0]!;
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(64 * MiB);
    // The verify phase read back everything it wrote.
    expect(job.read.io_bytes).toBe(64 * MiB);
    expect(await mappedBlocksWithin(await volume("fio"), 0, 64 * MiB)).toBe((64 * MiB) / BLOCK);
  });

  it("the server is left with no connections and every export detached", async () => {
    for (let i = 0; i < 100 && server.connectionCount > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.connectionCount).toBe(0);
    expect(catalog.attaches).toBeGreaterThan(0);
    expect(catalog.detaches).toBe(catalog.attaches);
  });
});
