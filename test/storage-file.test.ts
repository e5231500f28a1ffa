// One conformance suite for every StorageFile implementation.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileExistsError, FileMissingError } from "../src/errors.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { readFromPageCache } from "../src/io/cached-read.js";
import { writesInline } from "../src/io/inline-write.js";
import { INLINE_WRITE_BYTES_MAX } from "../src/io/limits.js";
import { NodeStorageFile } from "../src/io/node-storage-file.js";
import type { StorageFile } from "../src/io/storage-file.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const implementations: [string, () => Promise<StorageFile>][] = [
  ["MemoryStorageFile", async () => new MemoryStorageFile()],
  [
    "NodeStorageFile",
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "thinp-io-"));
      dirs.push(dir);
      return NodeStorageFile.open(join(dir, "file"), "create", "test file");
    },
  ],
];

describe.each(implementations)("%s", (_name, make) => {
  it("reads back what was written, at any offset", async () => {
    const file = await make();
    await file.write(Buffer.from("hello"), 70000);
    const back = Buffer.alloc(5);
    await file.read(back, 70000);
    expect(back.toString()).toBe("hello");
    expect(await file.byteLength()).toBe(70005);
  });

  it("reads zeros past the end and in holes", async () => {
    const file = await make();
    await file.write(Buffer.from([1, 2, 3]), 200000);
    const hole = Buffer.alloc(100, 0xff);
    await file.read(hole, 1000);
    expect(hole.every((b) => b === 0)).toBe(true);
    const tail = Buffer.alloc(10, 0xff);
    await file.read(tail, 200001);
    expect([...tail]).toEqual([2, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("writes whole pages, partial pages and writes above the inline limit byte-exact", async () => {
    const file = await make();
    const cases: [number, number][] = [
      [0, 4096], // one whole page
      [8192, 65536], // a whole data block
      [4096 * 40 + 100, 5000], // not page-aligned: never written on the calling thread
      [1 << 20, 256 * 1024], // above the calling thread's limit
    ];
    for (const [position, length] of cases) {
      const bytes = Buffer.alloc(length);
      for (let i = 0; i < length; i++) bytes[i] = (i * 7 + position) & 0xff;
      // Both ways a file takes a write: on the calling thread where it can, else as usual.
      if (!file.writeNow?.(bytes, position)) await file.write(bytes, position);
      const again = Buffer.from(bytes).reverse();
      await file.write(again, position + (2 << 20));
      const backAgain = Buffer.alloc(length);
      await file.read(backAgain, position + (2 << 20));
      expect(backAgain.equals(again)).toBe(true);
      const back = Buffer.alloc(length);
      await file.read(back, position);
      expect(back.equals(bytes)).toBe(true);
    }
  });

  it("truncates up and down", async () => {
    const file = await make();
    await file.write(Buffer.alloc(100000, 7), 0);
    await file.truncate(10);
    await file.truncate(100);
    const back = Buffer.alloc(20);
    await file.read(back, 0);
    expect([...back.subarray(0, 10)].every((b) => b === 7)).toBe(true);
    expect([...back.subarray(10)].every((b) => b === 0)).toBe(true);
    expect(await file.byteLength()).toBe(100);
    await file.sync();
    await file.close();
  });
});

describe("MemoryStorageFile crash copies", () => {
  it("keep only what the last sync made durable", async () => {
    const file = new MemoryStorageFile();
    await file.write(Buffer.from("durable"), 0);
    await file.sync();
    await file.write(Buffer.from("lost!!!"), 0);
    const crashed = file.durableCopy();
    const back = Buffer.alloc(7);
    await crashed.read(back, 0);
    expect(back.toString()).toBe("durable");
  });
});

describe("NodeStorageFile.open", () => {
  it("names the missing file and refuses to overwrite on create", async () => {
    const dir = await mkdtemp(join(tmpdir(), "thinp-io-"));
    dirs.push(dir);
    await expect(NodeStorageFile.open(join(dir, "nope"), "read-write", "metadata file")).rejects.toThrow(FileMissingError);
    await (await NodeStorageFile.open(join(dir, "f"), "create", "f")).close();
    await expect(NodeStorageFile.open(join(dir, "f"), "create", "f")).rejects.toThrow(FileExistsError);
  });
});

describe("writes done on the calling thread", () => {
  it("are whole pages no larger than the limit", () => {
    expect(writesInline(0, 4096)).toBe(true);
    expect(writesInline(4096, INLINE_WRITE_BYTES_MAX)).toBe(true);
    expect(writesInline(4096, INLINE_WRITE_BYTES_MAX + 4096)).toBe(false);
    expect(writesInline(100, 4096)).toBe(false);
    expect(writesInline(0, 100)).toBe(false);
    expect(writesInline(0, 0)).toBe(false);
  });
});

describe("reads the page cache answers at once", () => {
  it("come from the calling thread, end at the end of the file, and match what the usual path reads", async () => {
    const dir = await mkdtemp(join(tmpdir(), "thinp-io-"));
    dirs.push(dir);
    const file = await NodeStorageFile.open(join(dir, "file"), "create", "test file");
    const bytes = Buffer.alloc(3 * 4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
    await file.write(bytes, 0);
    // Just written, so cached: answered whole, without the thread pool.
    const cached = Buffer.alloc(4096);
    expect(readFromPageCache(file.descriptor, cached, 4096)).toBe(4096);
    expect(cached.equals(bytes.subarray(4096, 8192))).toBe(true);
    // At the end of the file there is nothing to read; a view into a larger buffer is filled in place.
    expect(readFromPageCache(file.descriptor, Buffer.alloc(16), bytes.length)).toBe(0);
    const larger = Buffer.alloc(8192, 0xee);
    expect(readFromPageCache(file.descriptor, larger.subarray(100, 200), 0)).toBe(100);
    expect(larger.subarray(100, 200).equals(bytes.subarray(0, 100))).toBe(true);
    expect(larger[99]).toBe(0xee);
    // Through the file: a read across the end is the data, then zeros.
    const across = Buffer.alloc(8192, 0xee);
    await file.read(across, bytes.length - 4096);
    expect(across.subarray(0, 4096).equals(bytes.subarray(8192))).toBe(true);
    expect(across.subarray(4096).every((byte) => byte === 0)).toBe(true);
    await file.close();
  });
});
