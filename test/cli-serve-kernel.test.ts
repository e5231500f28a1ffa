// The kernel as a client of `thinp serve`: an ext4 file system made, mounted and changed
// through nbdfuse and a loop device (these machines have no nbd module for nbd-client),
// and a snapshot taken through the control socket while the server runs.

import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Pool } from "../src/thin/pool.js";
import { KernelMounts, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, seededBytes } from "./support/cli-run.js";
import { killAllServers, startServe, type ServeProcess } from "./support/cli-serve-process.js";

const MiB = 1024 * 1024;

let dir: string;
let mounts: KernelMounts;
const cwd = () => ({ cwd: dir });

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  mounts = new KernelMounts();
  const pool = await Pool.create(path.join(dir, "data.img"), path.join(dir, "meta.img"), { sizeBytes: 512 * MiB });
  await pool.createVolume("base", 128 * MiB);
  await pool.commit();
  await pool.close();
});
afterEach(async () => {
  mounts.cleanUp();
  killAllServers();
  await removeTempDir(dir);
});

/** Attaches `volume` through nbdfuse, loop-mounts it, runs `work` on the mount point, and undoes both. */
async function withMountedVolume(
  server: ServeProcess,
  volume: string,
  options: { readOnly?: boolean },
  work: (mountPoint: string) => Promise<void>,
): Promise<void> {
  const file = await mounts.attachFile(path.join(dir, `fuse-${volume}`), server.uri(volume), volume);
  const mount = await mounts.loopMount(file.path, path.join(dir, `mnt-${volume}`), options);
  await work(mount.path);
  await mount.unmount();
  await file.detach();
}

describe("the kernel through nbdfuse and a loop device", () => {
  it("an ext4 file system on a volume keeps its files in a live snapshot after the origin changes", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], cwd());
    const photo = seededBytes(3 * MiB, 0xf11e);

    const baseFile = await mounts.attachFile(path.join(dir, "fuse-base"), server.uri("base"), "base");
    await runToolOk("mkfs.ext4", ["-F", "-q", baseFile.path]);
    const baseMount = await mounts.loopMount(baseFile.path, path.join(dir, "mnt-base"));
    await writeFile(path.join(baseMount.path, "notes.txt"), "written before the snapshot\n");
    await writeFile(path.join(baseMount.path, "photo.bin"), photo);
    await baseMount.unmount();
    await baseFile.detach();

    expect(await runCliOk(["snapshot", "base", "snap1"], cwd())).toBe("created snapshot snap1 of base\n");

    await withMountedVolume(server, "snap1", { readOnly: true }, async (mountPoint) => {
      expect(await readFile(path.join(mountPoint, "notes.txt"), "utf8")).toBe("written before the snapshot\n");
      expect((await readFile(path.join(mountPoint, "photo.bin"))).equals(photo)).toBe(true);
    });

    await withMountedVolume(server, "base", {}, async (mountPoint) => {
      await writeFile(path.join(mountPoint, "notes.txt"), "changed after the snapshot\n");
      await rm(path.join(mountPoint, "photo.bin"));
      await writeFile(path.join(mountPoint, "new.txt"), "only in base\n");
    });

    await withMountedVolume(server, "snap1", { readOnly: true }, async (mountPoint) => {
      expect((await readdir(mountPoint)).sort()).toEqual(["lost+found", "notes.txt", "photo.bin"]);
      expect(await readFile(path.join(mountPoint, "notes.txt"), "utf8")).toBe("written before the snapshot\n");
      expect((await readFile(path.join(mountPoint, "photo.bin"))).equals(photo)).toBe(true);
    });
    await withMountedVolume(server, "base", { readOnly: true }, async (mountPoint) => {
      expect((await readdir(mountPoint)).sort()).toEqual(["lost+found", "new.txt", "notes.txt"]);
      expect(await readFile(path.join(mountPoint, "notes.txt"), "utf8")).toBe("changed after the snapshot\n");
    });

    expect(await server.stop()).toBe(0);
    const checked = await runCli(["check"], cwd());
    expect(checked.exitCode, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout).toMatch(/^clean$/m);
    // The two volumes share most of the file system and each owns what changed.
    const listed = JSON.parse(await runCliOk(["list", "--json"], cwd()));
    for (const volume of listed.volumes) {
      expect(volume.sharedBlocks, volume.name).toBeGreaterThan(0);
      expect(volume.exclusiveBlocks, volume.name).toBeGreaterThan(0);
    }
  });
});
