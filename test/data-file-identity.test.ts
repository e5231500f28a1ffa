// The data file's record of its pool: its encoding, where it is kept, and the decision it
// drives on every open, including the states a crash can leave between a commit and the
// record that follows it.

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WrongDataFileError } from "../src/errors.js";
import { NodeStorageFile } from "../src/io/node-storage-file.js";
import {
  claimDataFile,
  DATA_IDENTITY_SIDECAR_SUFFIX,
  DataFileIdentityStore,
  decodeDataFileIdentity,
  encodeDataFileIdentity,
  type AttributeCalls,
} from "../src/thin/data-file-identity.js";
import { Pool } from "../src/thin/pool.js";
import { makeTempDir, removeTempDir } from "./support/cli-run.js";

const MiB = 1024 * 1024;
const UUID = "0f0e0d0c-0b0a-4908-8706-050403020100";
/** A file system without user extended attributes, as some network and FAT file systems are. */
const NO_ATTRIBUTES: AttributeCalls = { read: () => ({ kind: "unsupported" }), write: () => false };

let dir: string;
beforeEach(async () => {
  dir = await makeTempDir();
});
afterEach(async () => removeTempDir(dir));

describe("the identity record", () => {
  it("decodes what it encodes, and nothing malformed", () => {
    const identity = { poolUuid: UUID, commit: 41, metadataPath: "../meta/meta.img" };
    expect(decodeDataFileIdentity(encodeDataFileIdentity(identity))).toEqual(identity);
    for (const bad of [
      "",
      "{",
      "[]",
      '{"format":2,"pool":"' + UUID + '","commit":1,"metadata":"m"}',
      '{"format":1,"pool":"x","commit":1,"metadata":"m"}',
      '{"format":1,"pool":"' + UUID + '","commit":-1,"metadata":"m"}',
      '{"format":1,"pool":"' + UUID + '","commit":1,"metadata":""}',
    ]) {
      expect(decodeDataFileIdentity(Buffer.from(bad)), bad).toBeNull();
    }
  });

  it("lives in a sidecar file where the file system has no extended attributes", async () => {
    const dataPath = join(dir, "data.img");
    const file = await NodeStorageFile.open(dataPath, "create", "data file");
    try {
      const store = new DataFileIdentityStore(file, dataPath, NO_ATTRIBUTES);
      expect(await store.read("meta.img")).toBeNull();
      await store.write({ poolUuid: UUID, commit: 3, metadataPath: "meta.img" });
      expect(JSON.parse(await readFile(`${dataPath}${DATA_IDENTITY_SIDECAR_SUFFIX}`, "utf8"))).toMatchObject({ pool: UUID, commit: 3 });
      const reread = new DataFileIdentityStore(file, dataPath, NO_ATTRIBUTES);
      expect(await reread.read("meta.img")).toEqual({ poolUuid: UUID, commit: 3, metadataPath: "meta.img" });
    } finally {
      await file.close();
    }
  });

  it("names the record and how to remove it when it cannot be read", async () => {
    const dataPath = join(dir, "data.img");
    const file = await NodeStorageFile.open(dataPath, "create", "data file");
    try {
      const garbage: AttributeCalls = { read: () => ({ kind: "value", value: Buffer.from("not json") }), write: () => true };
      const error = await new DataFileIdentityStore(file, dataPath, garbage).read("meta.img").catch((e) => e);
      expect(error).toBeInstanceOf(WrongDataFileError);
      expect(error.message).toContain("setfattr -x user.thinp.pool");
    } finally {
      await file.close();
    }
  });
});

describe("claiming a data file", () => {
  async function withFiles(
    work: (store: DataFileIdentityStore, metaPath: string, metaId: Awaited<ReturnType<NodeStorageFile["fileId"]>>) => Promise<void>,
  ) {
    const dataPath = join(dir, "data.img");
    const metaPath = join(dir, "meta.img");
    const data = await NodeStorageFile.open(dataPath, "create", "data file");
    const meta = await NodeStorageFile.open(metaPath, "create", "metadata file");
    try {
      await work(new DataFileIdentityStore(data, dataPath), metaPath, await meta.fileId());
    } finally {
      await data.close();
      await meta.close();
    }
  }

  it("opens after a crash between a commit and its record, which is then one commit behind", async () => {
    await withFiles(async (store, metaPath, metaId) => {
      await store.write({ poolUuid: UUID, commit: 6, metadataPath: "meta.img" });
      const claim = await claimDataFile(store, metaPath, metaId, { poolUuid: UUID, transactionId: 7, repairedCopy: false }, true);
      expect(claim.identity?.commit).toBe(7);
      expect((await store.read(metaPath))?.commit).toBe(7);
    });
  });

  it("refuses metadata older than the record, and another pool's", async () => {
    await withFiles(async (store, metaPath, metaId) => {
      await store.write({ poolUuid: UUID, commit: 9, metadataPath: "meta.img" });
      await expect(
        claimDataFile(store, metaPath, metaId, { poolUuid: UUID, transactionId: 8, repairedCopy: false }, false),
      ).rejects.toThrow(/older copy/);
      const other = "11111111-2222-4333-8444-555555555555";
      await expect(
        claimDataFile(store, metaPath, metaId, { poolUuid: other, transactionId: 20, repairedCopy: false }, true),
      ).rejects.toThrow(/belongs to pool/);
      expect((await store.read(metaPath))?.commit).toBe(9);
    });
  });

  it("moves the record to a newer copy of the metadata opened under another name", async () => {
    await withFiles(async (store, metaPath, metaId) => {
      await store.write({ poolUuid: UUID, commit: 4, metadataPath: "elsewhere.img" });
      await claimDataFile(store, metaPath, metaId, { poolUuid: UUID, transactionId: 4, repairedCopy: false }, true);
      expect((await store.read(metaPath))?.metadataPath).toBe("meta.img");
    });
  });
});

describe("a pool's commits", () => {
  it("advance the data file's record after the superblock", async () => {
    const pool = await Pool.create(join(dir, "data.img"), join(dir, "meta.img"), { sizeBytes: MiB });
    try {
      await pool.createVolume("v", MiB);
      await pool.commit();
      const data = await NodeStorageFile.open(join(dir, "data.img"), "read-only", "data file");
      try {
        expect((await new DataFileIdentityStore(data, join(dir, "data.img")).read("meta.img"))?.commit).toBe(pool.status().transactionId);
      } finally {
        await data.close();
      }
    } finally {
      await pool.close();
    }
    expect((await stat(join(dir, "data.img"))).size).toBe(MiB);
  });
});
