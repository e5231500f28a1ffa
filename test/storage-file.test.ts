// One conformance suite for every StorageFile implementation.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileExistsError, FileMissingError } from "../src/errors.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
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
