// A full pool under a real file system: ext4 on a volume through nbdfuse and a loop device,
// filled past the pool's space. In `queue` mode the writes are held, `resize-pool` during the
// hold lets them complete, and `e2fsck -fn` is clean afterwards. In `error` mode the file
// system sees write errors, but the pool stays consistent (`check` clean) and what was
// synced before the pool filled is still there.

import { open, readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Pool } from "../src/thin/pool.js";
import { KernelMounts, runTool, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, seededBytes } from "./support/cli-run.js";
import { eventually, killAllServers, startServe } from "./support/cli-serve-process.js";

const MiB = 1024 * 1024;
let dir: string;
let mounts: KernelMounts;
const cwd = () => ({ cwd: dir });

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  mounts = new KernelMounts();
  // Room for the file system's own blocks and a little more: a 32 MiB file does not fit.
  const pool = await Pool.create(path.join(dir, "data.img"), path.join(dir, "meta.img"), { sizeBytes: 16 * MiB });
  await pool.createVolume("fs", 128 * MiB);
  await pool.commit();
  await pool.close();
});
afterEach(async () => {
  mounts.cleanUp();
  killAllServers();
  await removeTempDir(dir);
});

/** Writes `bytes` to `file` and fsyncs it: done only when the pool has taken every block. */
async function writeSynced(file: string, bytes: Buffer): Promise<void> {
  const handle = await open(file, "w");
  try {
    await handle.write(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

describe("a full pool under ext4", () => {
  it("in queue mode holds the file system's writes until resize-pool makes room, and e2fsck is clean", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0", "--when-full=queue:120"], cwd());
    const file = await mounts.attachFile(path.join(dir, "fuse"), server.uri("fs"), "fs");
    await runToolOk("mkfs.ext4", ["-F", "-q", "-E", "lazy_itable_init=1,lazy_journal_init=1", file.path]);
    const mount = await mounts.loopMount(file.path, path.join(dir, "mnt"));
    const big = seededBytes(32 * MiB, 7);
    let written = false;
    const writing = writeSynced(path.join(mount.path, "big.bin"), big).then(() => (written = true));
    // The pool fills, and the writes that need a block wait instead of failing.
    await eventually(
      async () => /the pool is full: holding writes/.test(server.stdout + server.stderr),
      60_000,
      "the server to hold writes",
    );
    expect(written).toBe(false);
    await runCliOk(["resize-pool", "--size", "128M"], cwd());
    await writing;
    expect((await readFile(path.join(mount.path, "big.bin"))).equals(big)).toBe(true);
    await mount.unmount();
    const fsck = await runTool("e2fsck", ["-fn", file.path]);
    expect(fsck.exitCode, fsck.stdout + fsck.stderr).toBe(0);
    await file.detach();
    expect(await server.stop()).toBe(0);
    expect((await runCli(["check"], cwd())).stdout).toMatch(/^clean$/m);
  });

  it("in error mode fails the file system's writes, keeps what was synced, and the pool checks clean", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const file = await mounts.attachFile(path.join(dir, "fuse"), server.uri("fs"), "fs");
    await runToolOk("mkfs.ext4", ["-F", "-q", "-E", "lazy_itable_init=1,lazy_journal_init=1", file.path]);
    const mount = await mounts.loopMount(file.path, path.join(dir, "mnt"));
    const small = seededBytes(MiB, 8);
    await writeSynced(path.join(mount.path, "small.bin"), small);
    const failed = await writeSynced(path.join(mount.path, "big.bin"), seededBytes(32 * MiB, 9)).then(
      () => null,
      (error: NodeJS.ErrnoException) => error.code,
    );
    expect(failed).not.toBeNull();
    await mount.unmount().catch(() => undefined);
    await file.detach();
    expect(await server.stop()).toBe(0);
    const checked = await runCli(["check"], cwd());
    expect(checked.exitCode, checked.stdout + checked.stderr).toBe(0);
    // What was synced before the pool filled reads back through a fresh attach.
    const again = await startServe(["--listen", "127.0.0.1:0", "--read-only"], cwd());
    const reread = await mounts.attachFile(path.join(dir, "fuse2"), again.uri("fs"), "fs");
    const remount = await mounts.loopMount(reread.path, path.join(dir, "mnt2"), { readOnly: true });
    expect((await readFile(path.join(remount.path, "small.bin"))).equals(small)).toBe(true);
    await remount.unmount();
    await reread.detach();
    expect(await again.stop()).toBe(0);
  });
});
